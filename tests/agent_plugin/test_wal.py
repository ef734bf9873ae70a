"""The write-ahead log on its own: framing, a torn tail, truncation, and a disk that
refuses writes (a real ``logsieve serve`` whose file-size limit is lowered, then raised)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from logsieve.agent_plugin.ledger import ReplayPlan
from logsieve.agent_plugin.upstream import UpstreamClient
from logsieve.agent_plugin.upstream_config import UpstreamConfig
from logsieve.agent_plugin.wal import (
    Closure,
    Recovered,
    WriteAheadLog,
    decode_entries,
    encode_entry,
)
from logsieve.agent_plugin.wal_config import DurabilityConfig
from logsieve.bundle import Bundle
from logsieve.errors import ConfigError

from .test_pipeline import free_port

MIB = 1024 * 1024


def rows(n: int, start: int = 0) -> list[tuple[int, Any, Any]]:
    return [(10**18 + i, {"log": f"line {start + i}"}, None) for i in range(n)]


def test_entries_round_trip_and_reading_stops_at_a_torn_or_corrupt_entry() -> None:
    a, b = encode_entry([0, 0, "t", rows(2), None]), encode_entry([2, 7])
    entries, used = decode_entries(a + b)
    assert used == len(a) + len(b) and entries[1] == [2, 7]
    assert decode_entries(a + b[:-1]) == ([entries[0]], len(a))  # torn tail
    flipped = bytearray(a + b)
    flipped[-1] ^= 0xFF  # a bit flipped in the last entry: its CRC no longer matches
    assert decode_entries(bytes(flipped)) == ([entries[0]], len(a))


def test_config_names_the_bad_key() -> None:
    with pytest.raises(ConfigError, match=r"durability\.fsync"):
        DurabilityConfig(dir=Path("/tmp/x"), fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"durability\.max_bytes"):
        DurabilityConfig(segment_bytes=64 * MIB, max_bytes=100 * MIB)
    assert DurabilityConfig.from_dict({"dir": "/var/lib/x"}).dir == Path("/var/lib/x")


@pytest.mark.asyncio
async def test_recover_reads_records_closures_and_done_and_cuts_a_torn_tail(
    tmp_path: Path,
) -> None:
    wal = WriteAheadLog(DurabilityConfig(dir=tmp_path, fsync="always"))
    assert wal.recover().records == []
    await wal.start()
    assert await wal.append_records("hdfs", rows(3), b"chunk-1") == 0
    assert await wal.append_records("hdfs", rows(2, 3), None) == 3
    wal.note_closure(1, "blk_1", 1.0, 2.0, "idle", [0, 1])
    wal.note_done(1)
    wal.note_closure(2, "blk_2", 1.0, 3.0, "idle_wall", [2, 3, 4])
    await wal.sync()
    await wal.close()
    (segment,) = tmp_path.glob("*.wal")
    with open(segment, "ab") as f:
        f.write(encode_entry([0, 5, "hdfs", rows(1), None])[:-3])  # killed mid-append

    again = WriteAheadLog(DurabilityConfig(dir=tmp_path))
    got = again.recover()
    assert [r.lsn for r in got.records] == [0, 1, 2, 3, 4] and got.torn_bytes > 0
    assert got.records[3].record == {"log": "line 3"} and got.records[0].time_ns == 10**18
    assert got.chunks == [b"chunk-1"] and got.done == 1 and got.next_lsn == 5
    assert got.next_serial == 3
    plan = ReplayPlan.of(got)
    assert plan.keys_for(0, ("blk_1",)) == ()  # done: not windowed again
    assert plan.keys_for(2, ("blk_2",)) == ("blk_2",)
    assert plan.completes(2, ("blk_2",)) == [] and plan.completes(3, ("blk_2",)) == []
    (closure,) = plan.completes(4, ("blk_2",))  # the last of its records: close it now
    assert closure.key == "blk_2" and closure.reason == "idle_wall"


def test_a_window_logged_twice_is_done_if_either_entry_is() -> None:
    # A restart formed the window again (serial 5); the first (serial 2) was done.
    rec = Recovered(
        closures=[
            Closure(2, "k", 0.0, 1.0, "idle", (1, 2)),
            Closure(5, "k", 0.0, 1.0, "idle", (2, 1)),
        ],
        done=3,
    )
    plan = ReplayPlan.of(rec)
    assert plan.closures == [] and plan.keys_for(1, ("k",)) == ()


@pytest.mark.asyncio
async def test_truncate_deletes_only_segments_nothing_needs(tmp_path: Path) -> None:
    wal = WriteAheadLog(DurabilityConfig(dir=tmp_path, segment_bytes=MIB, max_bytes=64 * MIB))
    wal.recover()
    await wal.start()
    big = [(1, {"log": "x" * 300_000}, None)]
    for _ in range(4):  # one segment each: every append passes segment_bytes
        await wal.append_records("t", big)
        await wal.append_records("t", big)
        await wal.append_records("t", big)
        await wal.append_records("t", big)
    wal.note_closure(1, "k", 0.0, 1.0, "idle", [0])
    await wal.sync()
    n = wal.segment_count
    assert n >= 4
    assert wal.truncate(min_live_lsn=0, done_serial=10) == 0  # record 0 still needed
    assert wal.truncate(min_live_lsn=8, done_serial=0) == 2  # records 0-7: two segments
    assert wal.segment_count == n - 2 and len(list(tmp_path.glob("*.wal"))) == n - 2
    await wal.close()


SERVER_TOML = """\
[server]
udp_heartbeat = false

[upstream]
self_hostname = "logsieve.test"

[pipeline]
max_wait_ms = 5

[durability]
dir = "{wal}"
fsync = "always"
"""


def _limit_file_size() -> None:
    # The server may write at most this much to any one file; SIGXFSZ would kill it.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, resource.RLIM_INFINITY))


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.asyncio
async def test_a_disk_that_refuses_writes_stops_acks_and_health_says_so(
    tiny_bundle: Bundle, tmp_path: Path
) -> None:
    port, metrics = free_port(), free_port()
    config = tmp_path / "serve.toml"
    config.write_text(SERVER_TOML.format(wal=tmp_path / "wal"))
    logsieve = Path(sys.executable).with_name("logsieve")
    proc = await asyncio.create_subprocess_exec(
        str(logsieve), "serve", "--bundle", str(tiny_bundle.path), "--config", str(config),
        "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{free_port()}",
        "--metrics", f"127.0.0.1:{metrics}",
        stderr=subprocess.PIPE, preexec_fn=_limit_file_size,
    )  # fmt: skip
    client = UpstreamClient(
        UpstreamConfig(
            host="127.0.0.1",
            port=port,
            self_hostname="agent.test",
            ack_timeout=30.0,
            max_batch_records=50,
        )
    )
    try:
        assert proc.stderr is not None
        while b"logsieve serving" not in await asyncio.wait_for(proc.stderr.readline(), 60.0):
            pass
        await client.start()
        record = {"log": "INFO dfs.DataNode: Receiving block blk_1", "pad": "y" * 1000}
        for _ in range(600):  # ~620 KB: past the 400 KB the file may hold
            await client.send("hdfs", record, time=1_226_262_918.0)
        await client.flush(5.0)
        acked = client.stats.records_acked
        assert 0 < acked < 600  # the frames that fit were acked, the rest wait
        url = f"http://127.0.0.1:{metrics}"
        status, body = await asyncio.to_thread(_get, url + "/health")
        assert status == 503 and "write-ahead log" in body, body
        text = (await asyncio.to_thread(_get, url + "/metrics"))[1]
        assert "logsieve_wal_writable 0.0" in text
        await asyncio.sleep(1.5)
        assert client.stats.records_acked == acked  # nothing acked that is not written
        # The operator frees space (here: lifts the limit): the waiting frames go in.
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        assert await client.flush(20.0)
        assert client.stats.records_acked == 600
        status, _ = await asyncio.to_thread(_get, url + "/health")
        assert status == 200
    finally:
        await client.stop(timeout=1.0)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    # Every record is in the log exactly once: the file never kept half an entry.
    wal = WriteAheadLog(DurabilityConfig(dir=tmp_path / "wal"))
    got = wal.recover()
    assert got.torn_bytes == 0
    assert json.dumps(sorted({r.lsn for r in got.records})) == json.dumps(list(range(600))) or (
        not got.records  # a clean stop with every verdict delivered empties the log
    )
    assert os.path.isdir(tmp_path / "wal")
