"""Event times the windows may trust (issue 16, item 3 and reproduction 3).

Reproduction 3: one record stamped 2100-01-01 moved the event-time watermark for good:
every open HDFS session closed at once and every block was split in two. Now a time
beyond the wall clock plus ``pipeline.max_future_skew`` (or at/before 1970, or not
finite) is windowed at the current event time and counted by reason; the clock's
watermark is capped at the wall clock plus the skew. Replays of old logs (HDFS, 2008)
are served as before: only the future is suspicious.
"""

from __future__ import annotations

import asyncio
import collections
import math
from pathlib import Path
from typing import Any

import pytest

from logsieve.agent_plugin.forward import LogRecord, RecordBatch
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.pipeline import StreamingPipeline
from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.agent_plugin.serve_config import load_serve_settings
from logsieve.agent_plugin.timecheck import untrusted_time
from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.engine.windows import LocalWindowEngine
from logsieve.errors import ConfigError
from logsieve.export.data.synth import generate_hdfs

from .served import hdfs_events, received, replay, settings
from .test_pipeline import FakeClock, ListSender, http_get, serving

Y2100 = 4_102_444_800.0  # 2100-01-01T00:00:00Z: an EventTime carries it, a clock never will


@pytest.mark.asyncio
async def test_one_record_stamped_2100_does_not_close_every_session_reproduction_3(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    log = generate_hdfs(20, anomaly_rate=0.0, seed=5)
    events = hdfs_events(log.lines)
    half = len(events) // 2
    # A line of the first block again, stamped 2100-01-01, in the middle of the replay.
    stream = [*events[:half], (Y2100, dict(events[0][1])), *events[half:]]
    rx = FlagReceiver()
    await rx.start()
    try:
        async with serving(settings(rx.port, every_verdict=True), tiny_bundle, tiny_engine) as svc:
            await asyncio.to_thread(replay, svc.port, stream)
            assert await received(svc, len(stream))
            watermark = svc.pipeline.lines.windower.watermark
            body = await http_get(svc.metrics_port, "/metrics")
    finally:
        await rx.stop()
    # Every block is one window, flagged or not: one verdict record each, none split.
    keys = collections.Counter(r["key"] for r in rx.records("logsieve.flag"))
    assert keys == dict.fromkeys(log.labels, 1), keys
    assert watermark is not None and watermark < events[-1][0] + 60.0  # 2008 still
    assert 'logsieve_pipeline_retimed_records_total{reason="future"} 1.0' in body
    assert 'reason="idle"}' not in body  # no session closed on event time


def record(t: float, text: str) -> LogRecord:
    ns = int(t * 1e9) if math.isfinite(t) else 0
    return LogRecord("hdfs", t, ns, {"log": text})


def line(block: str) -> str:
    return f"Receiving block {block} src: /10.0.0.1:1 dest: /10.0.0.2:50010"


@pytest.mark.asyncio
async def test_untrusted_times_are_retimed_counted_and_the_watermark_is_bounded(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    now = 1_800_000_000.0  # this host's wall clock, as the pipeline reads it
    clock = FakeClock()
    cfg = PipelineConfig(advance_interval=0, max_future_skew=60.0, every_verdict=True)
    engine = LocalWindowEngine.for_bundle(tiny_engine, tiny_bundle)
    out = ListSender()
    pipe = StreamingPipeline(cfg, tiny_bundle, engine, out, clock=clock, wall_clock=lambda: now)  # type: ignore[arg-type]
    await pipe.start()
    try:
        raw_2099 = "991231 235959 148 INFO dfs.DataNode: PacketResponder for block blk_3"
        records = [
            record(now - 10.0, line("blk_1")),  # the past: trusted
            record(now + 30.0, line("blk_1")),  # ahead by less than the skew: trusted
            record(now + 3600.0, line("blk_2")),  # an hour ahead: not trusted
            record(Y2100, line("blk_2")),
            record(float("nan"), line("blk_2")),
            record(-5.0, line("blk_2")),
            record(now - 5.0, raw_2099),  # a whole raw line whose own time is 2099
        ]
        await pipe.put(RecordBatch("hdfs", records, None, "forward", 100))
        windower = pipe.lines.windower
        assert windower.watermark == now + 30.0  # the untrusted times moved nothing
        assert pipe.watermark() == now + 30.0
        clock.now += 1000.0  # quiet for 1000 s of the monotonic clock, the wall still `now`
        assert pipe.watermark() == now + 60.0  # capped at the wall clock plus the skew
        retimed = {
            reason: sample_value(pipe.metrics.retimed, reason=reason)
            for reason in ("future", "before_epoch", "not_finite")
        }
        await pipe.close()
    finally:
        engine.close()
    assert retimed == {"future": 3, "before_epoch": 1, "not_finite": 1}
    windows = {r["key"]: r for tag, r in out.sent if tag == cfg.flag_tag}
    assert set(windows) == {"blk_1", "blk_2", "blk_3"}  # nothing dropped: all windowed
    assert windows["blk_2"]["lines"] == 4
    # Retimed lines sit at the event time of the moment: blk_2's window is `now + 30`.
    assert windows["blk_2"]["window_start"] == windows["blk_2"]["window_end"] == now + 30.0
    assert windows["blk_1"]["window_end"] == now + 30.0


def test_untrusted_time_reasons() -> None:
    limit = 1_800_000_060.0
    assert untrusted_time(1_226_262_918.0, limit) is None  # HDFS, 2008: fine
    assert untrusted_time(limit, limit) is None
    assert untrusted_time(limit + 0.001, limit) == "future"
    assert untrusted_time(0.0, limit) == "before_epoch"
    assert untrusted_time(-1.0, limit) == "before_epoch"
    assert untrusted_time(float("inf"), limit) == "not_finite"
    assert untrusted_time(float("nan"), limit) == "not_finite"


def test_max_future_skew_is_a_validated_serving_setting(tmp_path: Path) -> None:
    assert PipelineConfig().max_future_skew == 60.0
    path = tmp_path / "serve.toml"
    path.write_text("[upstream]\nport = 24230\n[pipeline]\nmax_future_skew = 300\n")
    assert load_serve_settings(path, {}).pipeline.max_future_skew == 300
    env = {"LOGSIEVE_PIPELINE_MAX_FUTURE_SKEW": "5.5"}
    assert load_serve_settings(path, env).pipeline.max_future_skew == 5.5
    bad: Any
    for bad in (0, -1.0, float("inf"), "a day"):
        with pytest.raises(ConfigError) as info:
            PipelineConfig(max_future_skew=bad)
        assert info.value.field == "pipeline.max_future_skew"
