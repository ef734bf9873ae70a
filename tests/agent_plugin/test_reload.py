"""Reloading the served bundle (SIGHUP): every window scored exactly once, by the model
current when it closed; open windows re-matched; a bad bundle keeps the old one serving."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from logsieve.agent_plugin.app import Service, run_service
from logsieve.agent_plugin.forward import LogRecord, RecordBatch
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.pipeline import StreamingPipeline
from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.agent_plugin.served_model import served_model
from logsieve.bundle import open_bundle
from logsieve.bundle_versions import rollback, set_current
from logsieve.engine import load_engine
from logsieve.engine.windows import LocalWindowEngine
from logsieve.logs.novelty import is_novel

from .served import hdfs_events, replay, settings, update_lines
from .test_app import free_port

pytestmark = pytest.mark.asyncio

DAY = 86_400.0


class Collect:
    """The pipeline's upstream: keeps what it is handed (the network path is tested
    with a real server below)."""

    def __init__(self) -> None:
        self.sent: list[dict[Any, Any]] = []

    async def send(self, tag: str, record: dict[Any, Any], time: float | None = None) -> bool:
        self.sent.append(record)
        return True


def batch(events: list[tuple[float, dict[str, Any]]]) -> RecordBatch:
    recs = [LogRecord("hdfs", t, int(t * 1e9), rec) for t, rec in events]
    return RecordBatch("hdfs", recs, None, "forward", 100)


def two_parts(n_blocks: int, seed: int) -> tuple[list[Any], list[Any]]:
    """Two runs of generated blocks (each with a snapshot line only the updated bundle
    knows). The first ends with a line two days later that closes its windows; the
    second (other blocks) starts three days later."""
    first = hdfs_events(update_lines(n_blocks, seed))
    tick = (max(t for t, _ in first) + 2 * DAY, {"log": "Verification succeeded for blk_777"})
    second = [(t + 3 * DAY, rec) for t, rec in hdfs_events(update_lines(n_blocks, seed + 100))]
    return [*first, tick], second


def window_ids(records: list[dict[Any, Any]]) -> Counter[tuple[str, float, float]]:
    return Counter((r["key"], r["window_start"], r["window_end"]) for r in records)


async def test_a_swap_scores_queued_windows_by_the_old_model_and_open_ones_by_the_new(
    tiny_home: Path,
) -> None:
    parent, new = open_bundle(tiny_home, follow_current=False), open_bundle(tiny_home)
    cfg = PipelineConfig(
        every_verdict=True, pass_through=True, advance_interval=0, top_k=100, max_wait_ms=1.0
    )
    up = Collect()
    engine = LocalWindowEngine.for_bundle(load_engine(parent, "auto"), parent)
    pipe = StreamingPipeline(cfg, parent, engine, up)
    await pipe.start()
    first, second = two_parts(16, seed=21)
    # put() does not yield while the queue has room, so the batcher has not run yet:
    # the windows these records closed are queued, unscored, when the swap comes.
    await pipe.put(batch(first))
    await pipe.put(batch(second[: len(second) // 2]))
    queued, open_at_swap = pipe.queue_depth, pipe.lines.windower.open_windows
    assert queued > 0 and open_at_swap > 0 and up.sent == []
    old = pipe.model
    new_engine = LocalWindowEngine.for_bundle(load_engine(new, "auto"), new)
    pipe.swap_model(served_model(new, new_engine, cfg))
    await pipe.put(batch(second[len(second) // 2 :]))
    await pipe.close()
    new_engine.close()

    # Every record went through once, enriched with its window's verdict (the records
    # held for windows re-matched at the swap were found again under their new event).
    passed = [r for r in up.sent if "log" in r]
    assert len(passed) == len(first) + len(second)
    flags = [r for r in up.sent if "flag_id" in r]
    assert {r["logsieve_flag_id"] for r in passed} == {f["flag_id"] for f in flags}
    up.sent = flags
    assert max(window_ids(up.sent).values()) == 1  # never scored twice
    closed = sum(sample_value(pipe.metrics.windows_closed, reason=r) for r in ("idle", "flush"))
    assert len(up.sent) == closed  # never lost
    by_model = Counter(r["model_id"] for r in up.sent)
    assert by_model[parent.model_id] == queued
    assert by_model[new.model_id] == closed - queued >= open_at_swap
    assert old.closed and old.pending == 0  # the old engine closed once drained
    # The snapshot lines are unknown to the parent, known to the new model; the windows
    # open at the swap were re-matched, so none scored by the new model holds [UNK].
    n_old = parent.vocab.n_templates  # type: ignore[union-attr]
    snapshot_ids: dict[str, list[int]] = {parent.model_id: [], new.model_id: []}
    for r in up.sent:
        for e in r["evidence"]:
            if "Scheduled snapshot" in e["line"]:
                snapshot_ids[r["model_id"]].append(e["template_id"])
    # Unknown to the parent: each a new pattern's id (logsieve.logs.novelty).
    old_ids = set(snapshot_ids[parent.model_id])
    assert old_ids and all(is_novel(t) for t in old_ids)
    assert snapshot_ids[new.model_id] and min(snapshot_ids[new.model_id]) >= n_old


def block_keys(events: list[tuple[float, dict[str, Any]]]) -> set[str]:
    return {m for _, rec in events for m in re.findall(r"blk_-?\d+", rec["log"])}


async def test_sighup_mid_stream_every_window_gets_one_verdict(
    tiny_home: Path, tmp_path: Path
) -> None:
    home = tmp_path / "B"
    shutil.copytree(tiny_home, home, symlinks=True)
    new_id = open_bundle(home).model_id
    parent = rollback(home)  # serve the parent first
    first, second = two_parts(12, seed=22)
    rx = FlagReceiver()
    await rx.start()
    cfg = settings(rx.port, every_verdict=True, engine_process=False, top_k=100)
    started: asyncio.Future[Service] = asyncio.get_running_loop().create_future()
    before = signal.getsignal(signal.SIGHUP)
    task = asyncio.create_task(run_service(cfg, open_bundle(home), ready=started.set_result))
    try:
        service = await asyncio.wait_for(started, 20.0)
        await asyncio.to_thread(replay, service.port, first)
        # The tick (last of the first part) closed every other window of it.
        n_first = len(block_keys(first)) - 1
        assert await rx.wait_for(lambda: len(rx.flags()) == n_first, 20.0)
        set_current(home, new_id)  # what `logsieve update` does at its end
        os.kill(os.getpid(), signal.SIGHUP)
        reloads = service.pipeline_metrics.reloads
        while sample_value(reloads, result="ok") < 1:
            assert sample_value(reloads, result="failed") == 0
            await asyncio.sleep(0.02)
        assert service.pipeline.model.model_id == new_id
        await asyncio.to_thread(replay, service.port, second)
        while sample_value(service.metrics.records_received, mode="message") < len(first) + len(
            second
        ):
            await asyncio.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 20.0) == 0
        metrics = service.pipeline_metrics
    finally:
        if not task.done():
            task.cancel()
        await rx.stop()
    assert signal.getsignal(signal.SIGHUP) is before
    flags = rx.flags()
    assert rx.duplicates == 0 and max(window_ids(flags).values()) == 1
    verdicts = sum(sample_value(metrics.verdicts, verdict=v) for v in ("anomaly", "normal"))
    assert len(flags) == verdicts and sample_value(metrics.windows_failed) == 0
    closed = sum(sample_value(metrics.windows_closed, reason=r) for r in ("idle", "flush"))
    assert verdicts == closed  # every window closed got exactly one verdict
    by_model = Counter(f["model_id"] for f in flags)
    assert by_model[parent.model_id] == n_first and by_model[new_id] == len(flags) - n_first > 0


async def test_a_corrupt_or_missing_bundle_on_reload_keeps_the_old_model_serving(
    tiny_home: Path, tmp_path: Path
) -> None:
    home = tmp_path / "B"
    shutil.copytree(tiny_home, home, symlinks=True)
    serving = rollback(home)
    rx = FlagReceiver()
    await rx.start()
    cfg = settings(rx.port, every_verdict=True, engine_process=False)
    service = Service(cfg, open_bundle(home))
    await service.start()
    try:
        reloads = service.pipeline_metrics.reloads
        engine = service.engine
        assert await service.reload()  # nothing changed: the same engine keeps serving
        assert service.engine is engine and sample_value(reloads, result="ok") == 1
        assert not await service.reload(tmp_path / "missing")
        # The new version, made current, then damaged (a truncated model file).
        version = home / "versions" / os.listdir(home / "versions")[0]
        set_current(home, open_bundle(version).model_id)
        onnx = version / "model.onnx"
        onnx.write_bytes(onnx.read_bytes()[:100])
        assert not await service.reload()
        assert sample_value(reloads, result="failed") == 2
        assert sample_value(reloads, result="ok") == 1
        assert service.pipeline.model.model_id == serving.model_id
        body = generate_latest(service.metrics.registry).decode()
        assert f'model_id="{serving.model_id}"' in body
        assert 'logsieve_model_reloads_total{result="failed"} 2.0' in body
        await asyncio.to_thread(replay, service.port, hdfs_events(update_lines(3, seed=23)))
        while sample_value(service.metrics.records_received, mode="message") < 1:
            await asyncio.sleep(0.02)
    finally:
        await service.stop()
        await rx.stop()
    flags = rx.flags()
    assert flags and {f["model_id"] for f in flags} == {serving.model_id}


async def test_logsieve_serve_subprocess_reloads_on_sighup(tiny_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "B"
    shutil.copytree(tiny_home, home, symlinks=True)
    new_id = open_bundle(home).model_id
    parent = rollback(home)
    first, second = two_parts(6, seed=24)
    rx = FlagReceiver()
    await rx.start()
    port = free_port()
    config = tmp_path / "serve.toml"
    config.write_text(
        "[server]\nudp_heartbeat = false\n\n"
        "[upstream]\nself_hostname = 'logsieve.test'\nflush_interval = 0.05\n\n"
        "[pipeline]\nmax_wait_ms = 5\nevery_verdict = true\n"
    )
    logsieve = Path(sys.executable).with_name("logsieve")
    proc = await asyncio.create_subprocess_exec(
        str(logsieve), "serve", "--bundle", str(home), "--config", str(config),
        "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{rx.port}",
        "--metrics", "127.0.0.1:0",
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        banner = await asyncio.wait_for(proc.stderr.readline(), 60.0)
        assert b"logsieve serving" in banner, banner
        await asyncio.to_thread(replay, port, first)
        n_first = len(block_keys(first)) - 1
        assert await rx.wait_for(lambda: len(rx.flags()) == n_first, 30.0)
        set_current(home, new_id)
        proc.send_signal(signal.SIGHUP)
        lines = []
        while not any(b"reloaded" in line for line in lines):
            lines.append(await asyncio.wait_for(proc.stderr.readline(), 60.0))
            assert lines[-1], b"".join(lines)
        await asyncio.to_thread(replay, port, second)
        await asyncio.sleep(0.5)  # no ack in Message mode: let the server read it
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), 30.0)
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await rx.stop()
    assert code == 0, rest.decode()
    flags = rx.flags()
    assert max(window_ids(flags).values()) == 1
    by_model = Counter(f["model_id"] for f in flags)
    assert by_model[parent.model_id] == n_first
    # The tick's window and every block of the second run: scored by the new model.
    assert by_model[new_id] == 1 + len(block_keys(second))
