"""End to end on 127.0.0.1: fluent-logger → Forward server → pipeline → engine → upstream.

A real :class:`Service` (server, streaming pipeline, ONNX Runtime engine, upstream
client) with a tiny trained bundle, the real ``fluent-logger`` client sending
generated HDFS-like logs, and a :class:`FlagReceiver` as the upstream ``in_forward``.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.forward import LogRecord, RecordBatch
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.pipeline import PipelineClosedError, StreamingPipeline
from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.agent_plugin.serve_config import ServeSettings
from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.engine.windows import LocalWindowEngine
from logsieve.export.data.synth import generate_hdfs, write_synth
from logsieve.export.fastlogad.scoring import score_file

from .served import ODD_BLOCK, ODD_LINES, hdfs_events, odd_block, received, replay, settings

pytestmark = pytest.mark.asyncio

DAY = 86_400.0


class FakeClock:
    """A monotonic clock the test moves (the pipeline's idle watermark reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def serving(
    cfg: ServeSettings, bundle: Bundle, engine: Engine, clock: Any = None
) -> AsyncIterator[Service]:
    service = Service(cfg, bundle, engine, **({"clock": clock} if clock else {}))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_flags_arrive_upstream_with_evidence_when_windows_flush_at_shutdown(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    log = generate_hdfs(40, anomaly_rate=0.25, seed=21)
    events = hdfs_events(log.lines)
    events[len(events) // 2 : len(events) // 2] = odd_block(events[len(events) // 2][0])
    rx = FlagReceiver()
    await rx.start()
    try:
        async with serving(settings(rx.port), tiny_bundle, tiny_engine) as svc:
            await asyncio.to_thread(replay, svc.port, events)
            # HDFS sessions idle out after a day of event time: all still open here.
            assert await received(svc, len(events))
            assert svc.pipeline.lines.windower.open_windows == len(log.labels) + 1
            assert rx.flags() == []
        # stop() flushed every open window through the engine and waited for the acks.
        flags = {f["key"]: f for f in rx.flags("logsieve.flag")}
        stats = svc.upstream.stats
    finally:
        await rx.stop()
    assert ODD_BLOCK in flags and set(flags) <= set(log.labels) | {ODD_BLOCK}
    assert stats.records_acked >= len(flags) and stats.dropped_records == 0
    odd = flags[ODD_BLOCK]
    assert {e["line"] for e in odd["evidence"]} == set(ODD_LINES)
    # New templates: named by their masked pattern, and the reason says so.
    assert all(e["template"].startswith("[NEW] ") for e in odd["evidence"])
    assert odd["reasons"] == ["rare_new_template"]
    texts = {r["log"] for _, r in events}
    for key, flag in flags.items():
        assert flag["model_id"] == tiny_bundle.model_id
        assert flag["threshold"] == pytest.approx(tiny_bundle.threshold)
        assert flag["verdict"] == "anomaly"
        assert "rare_new_template" in flag["reasons"] or flag["score"] > flag["threshold"]
        json.dumps(flag, allow_nan=False)  # valid JSON: no inf/NaN reaches upstream
        assert flag["lines"] == sum(1 for _, r in events if key in r["log"])
        assert flag["window_start"] <= flag["window_end"] and len(flag["flag_id"]) == 32
        assert 1 <= len(flag["evidence"]) <= 5
        assert all(e["line"] in texts and key in e["line"] for e in flag["evidence"])
        # The documented order: lines of rare new templates first (a window holding
        # one is flagged by that), then by replaced-token probability.
        order = [(e["template_id"] >= 0, -e["prob"]) for e in flag["evidence"]]
        assert order == sorted(order)
        if any(e["template_id"] < 0 for e in flag["evidence"]):
            assert "rare_new_template" in flag["reasons"] and flag["score"] is not None


async def test_idle_windows_close_on_the_clock_and_metrics_show_it(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    log = generate_hdfs(12, anomaly_rate=0.5, seed=3)
    events = hdfs_events(log.lines)
    events.append((events[-1][0], {"message": 42}))  # no usable text: counted, skipped
    clock = FakeClock()
    rx = FlagReceiver()
    await rx.start()
    try:
        cfg = settings(rx.port, every_verdict=True, advance_interval=0.05)
        async with serving(cfg, tiny_bundle, tiny_engine, clock) as svc:
            await asyncio.to_thread(replay, svc.port, events)
            assert await received(svc, len(events))
            assert rx.flags() == []
            clock.now += DAY + 1  # a quiet day: event time moves with the wall clock
            assert await rx.wait_for(lambda: len(rx.flags()) == len(log.labels), 10.0)
            assert svc.pipeline.lines.windower.open_windows == 0
            body = await http_get(svc.metrics_port, "/metrics")
    finally:
        await rx.stop()
    assert 'logsieve_pipeline_windows_closed_total{reason="idle"} 12' in body
    assert 'logsieve_pipeline_records_total{outcome="no_text"} 1' in body
    assert "logsieve_pipeline_engine_seconds_count" in body
    assert "logsieve_pipeline_batch_windows_bucket" in body
    assert "logsieve_pipeline_unknown_template_rate" in body
    assert "logsieve_upstream_records_acked" in body
    assert "logsieve_pipeline_queue_depth 0" in body


async def test_train_serve_parity_offline_score_file_and_server_agree(
    tiny_bundle: Bundle, tiny_engine: Engine, tmp_path: Path
) -> None:
    log = generate_hdfs(60, anomaly_rate=0.2, seed=8)
    path = tmp_path / "test.log"
    write_synth(log, path)
    offline = {sw.key: sw for sw in score_file(tiny_bundle, path, "hdfs", backend="onnxruntime")}
    rx = FlagReceiver()
    await rx.start()
    try:
        events = hdfs_events(path.read_text().splitlines())
        async with serving(settings(rx.port, every_verdict=True), tiny_bundle, tiny_engine) as svc:
            await asyncio.to_thread(replay, svc.port, events)
            # fluent-logger has no acks: wait until the server has read everything.
            assert await received(svc, len(events))
        served = {f["key"]: f for f in rx.flags()}
    finally:
        await rx.stop()
    assert set(served) == set(offline)
    top_k = PipelineConfig().top_k
    for key, sw in offline.items():
        flag = served[key]
        if math.isfinite(sw.score):
            assert flag["score"] == pytest.approx(sw.score, rel=1e-4, abs=1e-5), key
        else:  # JSON has no inf: sent as null with the reason
            assert flag["score"] is None and flag["score_reason"] == "unseen_template", key
        assert flag["verdict"] == ("anomaly" if sw.anomaly else "normal"), key
        # The same evidence, in the same order (logsieve.verdict.evidence_order).
        assert [e["line"] for e in flag["evidence"]] == [sw.lines[i] for i in sw.evidence(top_k)], (
            key
        )


async def test_upstream_down_then_up_delivers_every_flag_once(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    log = generate_hdfs(15, anomaly_rate=0.3, seed=5)
    port = free_port()  # nothing listens here yet
    clock = FakeClock()
    cfg = settings(port, every_verdict=True, advance_interval=0.05)
    rx = FlagReceiver(port=port)
    async with serving(cfg, tiny_bundle, tiny_engine, clock) as svc:
        await asyncio.to_thread(replay, svc.port, hdfs_events(log.lines))
        assert await received(svc, len(log.lines))
        clock.now += DAY + 1
        verdicts = svc.pipeline_metrics.verdicts
        for _ in range(400):  # 20 s: a window left open must fail here, not hang
            scored = sample_value(verdicts, verdict="normal")
            if scored + sample_value(verdicts, verdict="anomaly") >= len(log.labels):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{svc.pipeline.stats()} after the clock moved a day")
        await asyncio.sleep(0.3)  # the client is failing to connect and backing off
        assert svc.upstream.stats.connect_failures >= 1
        assert svc.upstream.stats.records_acked == 0
        await rx.start()
        delivered = await rx.wait_for(lambda: len(rx.flags()) == len(log.labels), 10.0)
    await rx.stop()
    assert delivered
    assert {f["key"] for f in rx.flags()} == set(log.labels)


async def test_pass_through_records_are_enriched_with_their_windows_verdict(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    log = generate_hdfs(8, anomaly_rate=0.25, seed=9)
    events = hdfs_events(log.lines)
    rx = FlagReceiver()
    await rx.start()
    try:
        cfg = settings(rx.port, every_verdict=True, pass_through=True)
        async with serving(cfg, tiny_bundle, tiny_engine) as svc:
            await asyncio.to_thread(replay, svc.port, events)
            assert await received(svc, len(events))
            assert svc.pipeline.held_records == len(events)
            assert rx.records("logsieve.record") == []  # held until their window closes
    finally:
        await rx.stop()
    passed = rx.records("logsieve.record")
    assert sorted(r["raw"] for r in passed) == sorted(r["raw"] for _, r in events)
    by_key = {f["key"]: f for f in rx.flags()}
    for r in passed:
        (key,) = [k for k in by_key if k in r["log"]]
        assert r["logsieve_verdict"] == by_key[key]["verdict"]
        assert r["logsieve_flag_id"] == by_key[key]["flag_id"]


class GatedEngine:
    """The real engine behind a gate the test opens (a slow inference stage)."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.info, self.gate = engine, engine.info, threading.Event()

    def score(self, ids: Any, lengths: Any) -> Any:
        self.gate.wait(10.0)
        return self.engine.score(ids, lengths)


class ListSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[Any, Any]]] = []

    async def send(self, tag: str, record: dict[Any, Any], time: float | None = None) -> bool:
        self.sent.append((tag, record))
        return True


def batch(records: list[tuple[float, str]]) -> RecordBatch:
    recs = [LogRecord("hdfs", t, int(t * 1e9), {"log": text}) for t, text in records]
    return RecordBatch("hdfs", recs, None, "forward", 100)


async def test_put_waits_when_the_inference_queue_is_full_and_nothing_is_dropped(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    engine = GatedEngine(tiny_engine)
    out = ListSender()
    cfg = PipelineConfig(
        batch_size=1, batch_windows=1, queue_size=1, max_wait_ms=0, advance_interval=0
    )
    window_engine = LocalWindowEngine.for_bundle(engine, tiny_bundle)
    pipe = StreamingPipeline(cfg, tiny_bundle, window_engine, out)  # type: ignore[arg-type]
    await pipe.start()
    t0 = 1_226_262_918.0
    blocks = [f"blk_{i}" for i in range(5)]
    await pipe.put(batch([(t0, f"Receiving block {b} src: /10.0.0.1:1 dest: /10.0.0.2:2")
                          for b in blocks]))  # fmt: skip
    # One record a day later closes all five windows: 1 in the engine, 1 queued, 3 waiting.
    closer = asyncio.create_task(pipe.put(batch([(t0 + 2 * DAY, "Receiving block blk_99")])))
    await asyncio.sleep(0.3)
    assert not closer.done() and pipe.queue_depth == 1
    engine.gate.set()
    await asyncio.wait_for(closer, 10.0)
    await pipe.close()
    scored = pipe.metrics.verdicts
    total = sample_value(scored, verdict="anomaly") + sample_value(scored, verdict="normal")
    assert total == 6  # five closed by the late record, blk_99 flushed at close
    with pytest.raises(PipelineClosedError):
        await pipe.put(batch([(t0, "x blk_1")]))


async def http_get(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data.decode()
