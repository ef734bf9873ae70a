"""Acked means kept: ``logsieve serve`` killed with SIGKILL at exact steps, restarted.

A real ``logsieve serve`` subprocess with a write-ahead log and ``every_verdict``; the
sender is the project's acking Forward client (:class:`UpstreamClient`: chunk ids,
``require_ack``, resends a chunk until it is acked, as Fluent Bit's ``out_forward``
does); the verdicts go to a :class:`FlagReceiver`. ``LOGSIEVE_FAILPOINT`` makes the
server SIGKILL itself at one step (:mod:`logsieve.agent_plugin.failpoints`), or the test
sends the SIGKILL itself at a given time into the stream; the test
restarts it on the same port and log directory and lets the client finish.

The check, per crash point: every record the client got acked is in exactly one
verdict, each block has exactly one verdict after dropping repeats by ``flag_id``, and
the verdicts are the very ones (same ids, lines and labels) a run without a crash gives.
The same comparison runs for per-host sliding windows (generated BGL-like raw lines,
a tiny bundle trained on them, windows closed by event time only).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.agent_plugin.upstream import UpstreamClient
from logsieve.agent_plugin.upstream_config import UpstreamConfig
from logsieve.bundle import Bundle
from logsieve.export.data.synth import generate_hdfs, write_synth
from logsieve.export.data.synth_bgl import generate_bgl

from .served import hdfs_events
from .test_pipeline import free_port

pytestmark = pytest.mark.asyncio

N_BLOCKS = 24
_LOGS: dict[int, Path] = {}  # a server's pid -> its log file


def blocks() -> list[tuple[str, list[tuple[float, dict[str, Any]]]]]:
    """Generated HDFS blocks, each as its (time, record) events."""
    log = generate_hdfs(N_BLOCKS, anomaly_rate=0.25, seed=17)
    by_block: dict[str, list[tuple[float, dict[str, Any]]]] = {k: [] for k in log.labels}
    for t, rec in hdfs_events(log.lines):
        (key,) = [k for k in by_block if k in rec["log"]]
        # Padded so a block's frame (~100 KB) takes several reads: a crash can then
        # come with half a frame received.
        by_block[key].append((t, {**rec, "pad": "x" * 10_000}))
    return list(by_block.items())


Chunk = list[tuple[float, dict[str, Any]]]
# Session windows close on 0.5 s of wall-clock quiet, so blocks close mid-stream.
SESSIONS = "idle_close = 0.5\nadvance_interval = 0.1\n"
# Sliding windows close on event time only (no clock tick): the same stream gives the
# same windows in every run, so a crash run can be compared with one without.
SLIDING = "advance_interval = 0\n"


def bgl_chunks() -> list[Chunk]:
    """Generated BGL-like raw lines of 6 hosts over 30 minutes (20% anomalous
    episodes), as Fluent Bit tail without a parser sends them, 100 lines a chunk."""
    log = generate_bgl(6, 1800, anomaly_rate=0.2, seed=4)
    events = [(float(line.split()[1]), {"log": line}) for line in log.lines]
    return [events[i : i + 100] for i in range(0, len(events), 100)]


def write_config(path: Path, wal: Path, pipeline: str) -> None:
    path.write_text(
        "[server]\nudp_heartbeat = false\n\n"
        "[upstream]\nself_hostname = 'logsieve.test'\nflush_interval = 0.02\n"
        "backoff_initial = 0.05\nbackoff_max = 0.2\n\n"
        f"[pipeline]\nmax_wait_ms = 5\nevery_verdict = true\n{pipeline}\n"
        f"[durability]\ndir = '{wal}'\n"
    )


async def start_server(
    bundle: Bundle, config: Path, port: int, upstream: int, failpoint: str | None
) -> asyncio.subprocess.Process:
    logsieve = Path(sys.executable).with_name("logsieve")
    env = {k: v for k, v in os.environ.items() if k != "LOGSIEVE_FAILPOINT"}
    if failpoint and not failpoint.startswith("after "):
        env["LOGSIEVE_FAILPOINT"] = failpoint
    # Its log goes to a file, not a pipe: nobody reads a pipe after the banner, and a
    # full one would block the server (and an orphaned engine child would hold it open).
    log = config.with_name(f"serve-{len(list(config.parent.glob('serve-*.log')))}.log")
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            str(logsieve), "serve", "--bundle", str(bundle.path), "--config", str(config),
            "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream}",
            "--metrics", "127.0.0.1:0",
            stdout=subprocess.DEVNULL, stderr=err, env=env,
        )  # fmt: skip
    _LOGS[proc.pid] = log
    deadline = time.monotonic() + 60.0
    while b"logsieve serving" not in log.read_bytes():  # after the replay's log lines
        assert proc.returncode is None and time.monotonic() < deadline, await _stderr(proc)
        await asyncio.sleep(0.05)
    return proc


async def run(
    bundle: Bundle,
    tmp: Path,
    failpoint: str | None,
    chunks: list[Chunk] | None = None,
    pipeline: str = SESSIONS,
) -> tuple[FlagReceiver, int]:
    """Send every chunk (default: each HDFS block), one acked frame each; with
    ``failpoint``, the server dies there and is started again. Returns the receiver
    and how many times the server started."""
    if chunks is None:
        chunks = [events for _key, events in blocks()]
    rx = FlagReceiver()
    await rx.start()
    port = free_port()
    config = tmp / "serve.toml"
    write_config(config, tmp / "wal", pipeline)
    client = UpstreamClient(
        UpstreamConfig(
            host="127.0.0.1", port=port, self_hostname="agent.test", ack_timeout=2.0,
            connect_timeout=1.0, flush_interval=0.01, backoff_initial=0.05, backoff_max=0.3,
            max_batch_records=1000,
        )
    )  # fmt: skip
    proc = await start_server(bundle, config, port, rx.port, failpoint)
    starts = 1
    if failpoint and failpoint.startswith("after "):  # from outside, at no chosen step
        asyncio.get_running_loop().call_later(float(failpoint.split()[1]), proc.kill)
    await client.start()
    try:
        for events in chunks:
            for t, record in events:
                await client.send("hdfs", record, time=t)
            await client.flush(0.0)  # seal: one chunk (one frame)
            await asyncio.sleep(0.05)
            if proc.returncode is not None or (failpoint and starts == 1 and _died(proc)):
                await proc.wait()
                assert proc.returncode == -signal.SIGKILL, await _stderr(proc)
                proc = await start_server(bundle, config, port, rx.port, None)
                starts += 1
        assert await client.flush(60.0), client.last_error  # every record acked
        if failpoint and starts == 1:
            # The point is reached late (flags, scoring): wait for the crash.
            await asyncio.wait_for(proc.wait(), 30.0)
            assert proc.returncode == -signal.SIGKILL, await _stderr(proc)
            proc = await start_server(bundle, config, port, rx.port, None)
            starts += 1
        await asyncio.sleep(1.0)  # idle_close: the last windows close
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30.0) == 0, await _stderr(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await client.stop(timeout=1.0)
        await rx.stop()
    return rx, starts


def _died(proc: asyncio.subprocess.Process) -> bool:
    return proc.returncode is not None


async def _stderr(proc: asyncio.subprocess.Process) -> str:
    return _LOGS[proc.pid].read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def reference(tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The verdicts of the same stream without a crash, by flag_id."""
    rx, starts = asyncio.run(run(tiny_bundle, tmp_path_factory.mktemp("ref"), None))
    assert starts == 1 and rx.duplicates == 0
    return {f["flag_id"]: f for f in rx.flags()}


@pytest.mark.parametrize(
    "failpoint",
    [
        "forward.partial@3",  # mid-frame
        "wal.appended@4",  # on disk, before windowing and ack
        "forward.acked@6",  # after the ack
        "pipeline.scoring@2",  # mid-batch: scored, no verdict sent
        "upstream.sent@3",  # during flag delivery: sent, ack not read
        "after 0.6",  # SIGKILL from outside, wherever the server is then
        "after 1.3",
    ],
)
async def test_sigkill_then_restart_gives_every_acked_record_exactly_one_verdict(
    failpoint: str, tiny_bundle: Bundle, tmp_path: Path, reference: dict[str, Any]
) -> None:
    rx, starts = await run(tiny_bundle, tmp_path, failpoint)
    assert starts == 2  # the failpoint fired: the server was killed and restarted
    flags = rx.flags()  # repeats dropped by flag_id, as the README tells receivers to
    per_block = Counter(f["key"] for f in flags)
    sizes = {key: len(events) for key, events in blocks()}
    assert set(per_block) == set(sizes) and set(per_block.values()) == {1}
    for f in flags:
        assert f["lines"] == sizes[f["key"]]  # each acked record once, none lost
    got = {f["flag_id"]: (f["key"], f["lines"], f["verdict"]) for f in flags}
    want = {i: (f["key"], f["lines"], f["verdict"]) for i, f in reference.items()}
    assert got == want


@pytest.fixture(scope="module")
def bgl_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A tiny bundle with per-host sliding windows (300 s every 60 s), trained on
    generated normal BGL-like lines."""
    from logsieve.export.data.prepare import prepare

    from .served import train_small_bundle

    root = tmp_path_factory.mktemp("bgl")
    write_synth(generate_bgl(8, 6 * 3600, seed=3), root / "train.log")
    return train_small_bundle(prepare("bgl", root / "train.log"), root / "bundle")


@pytest.fixture(scope="module")
def bgl_reference(bgl_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sliding-window verdicts of the BGL stream without a crash, by flag_id."""
    tmp = tmp_path_factory.mktemp("bgl-ref")
    rx, starts = asyncio.run(run(bgl_bundle, tmp, None, bgl_chunks(), SLIDING))
    assert starts == 1 and rx.duplicates == 0
    return {f["flag_id"]: (f["key"], f["lines"], f["verdict"]) for f in rx.flags()}


@pytest.mark.parametrize("failpoint", ["pipeline.scoring@3", "upstream.sent@4", "after 0.8"])
async def test_sliding_windows_after_sigkill_are_the_ones_a_run_without_it_gives(
    failpoint: str, bgl_bundle: Bundle, tmp_path: Path, bgl_reference: dict[str, Any]
) -> None:
    assert len(bgl_reference) > 50
    rx, starts = await run(bgl_bundle, tmp_path, failpoint, bgl_chunks(), SLIDING)
    assert starts == 2
    got = {f["flag_id"]: (f["key"], f["lines"], f["verdict"]) for f in rx.flags()}
    assert got == bgl_reference
