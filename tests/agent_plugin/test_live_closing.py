"""Live serving on 127.0.0.1: wall-clock idle closing, and one flag per incident.

A real :class:`Service` (Forward server, pipeline, ONNX Runtime engine, upstream
client) fed by the real ``fluent-logger`` client, flags read by a :class:`FlagReceiver`
as the upstream ``in_forward``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.agent_plugin.serve_config import load_serve_settings
from logsieve.bundle import Bundle
from logsieve.config import WindowConfig
from logsieve.engine import Engine
from logsieve.errors import ConfigError
from logsieve.export.data.synth import generate_hdfs, write_synth
from logsieve.export.fastlogad.scoring import score_file, score_incidents

from .served import ODD_BLOCK, ODD_LINES, hdfs_events, odd_block, replay, settings
from .test_pipeline import http_get, received, serving


def test_idle_close_is_a_serving_setting(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text("[upstream]\nport = 24230\n[pipeline]\nidle_close = 30.0\n")
    assert load_serve_settings(path, {}).pipeline.idle_close == 30.0
    env = {"LOGSIEVE_PIPELINE_IDLE_CLOSE": "0"}
    assert load_serve_settings(path, env).pipeline.idle_close == 0.0  # off: event time only
    assert PipelineConfig().idle_close == 60.0
    for bad in (-1.0, float("inf"), "soon"):
        with pytest.raises(ConfigError) as info:
            PipelineConfig(idle_close=bad)  # type: ignore[arg-type]
        assert info.value.field == "pipeline.idle_close"


@pytest.mark.asyncio
async def test_a_quiet_block_closes_on_wall_clock_idle_and_its_flag_arrives_in_seconds(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    log = generate_hdfs(3, anomaly_rate=0.0, seed=4)
    events = hdfs_events(log.lines)
    events += odd_block(events[-1][0])  # [UNK] lines: a flag either way
    rx = FlagReceiver()
    await rx.start()
    try:
        # The real monotonic clock; HDFS sessions idle out after a day of event time.
        cfg = settings(rx.port, every_verdict=True, advance_interval=0.1, idle_close=0.5)
        async with serving(cfg, tiny_bundle, tiny_engine) as svc:
            assert tiny_bundle.log_config.windows.idle_timeout == 86_400.0
            await asyncio.to_thread(replay, svc.port, events)
            assert await received(svc, len(events))
            quiet_since = time.monotonic()
            everything = len(log.labels) + 1
            assert await rx.wait_for(lambda: len(rx.flags()) == everything, 5.0)
            waited = time.monotonic() - quiet_since
            assert svc.pipeline.lines.windower.open_windows == 0
            watermark = svc.pipeline.lines.windower.watermark
            body = await http_get(svc.metrics_port, "/metrics")
    finally:
        await rx.stop()
    assert waited < 2.5, waited  # idle_close 0.5 s + a tick + scoring + delivery
    assert watermark is not None and watermark < events[-1][0] + 60.0  # event time stood still
    flags = {f["key"]: f for f in rx.flags()}
    assert set(flags) == set(log.labels) | {ODD_BLOCK}
    assert flags[ODD_BLOCK]["verdict"] == "anomaly"
    assert {e["line"] for e in flags[ODD_BLOCK]["evidence"]} == set(ODD_LINES)
    assert f'logsieve_pipeline_windows_closed_total{{reason="idle_wall"}} {everything}' in body
    assert 'reason="idle"}' not in body and 'reason="flush"}' not in body


@pytest.mark.asyncio
async def test_idle_close_off_keeps_event_time_only_closing(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    events = odd_block(1_226_262_918.0)
    rx = FlagReceiver()
    await rx.start()
    try:
        cfg = settings(rx.port, advance_interval=0.05, idle_close=0.0)
        async with serving(cfg, tiny_bundle, tiny_engine) as svc:
            await asyncio.to_thread(replay, svc.port, events)
            assert await received(svc, len(events))
            await asyncio.sleep(0.5)  # ten ticks: nothing closes on the wall clock
            assert svc.pipeline.lines.windower.open_windows == 1 and rx.flags() == []
    finally:
        await rx.stop()
    assert [f["key"] for f in rx.flags()] == [ODD_BLOCK]  # flushed at shutdown


def sliding_variant(bundle: Bundle, threshold: float) -> Bundle:
    """The bundle's model and templates over per-host sliding windows (60 s every 15 s),
    with its threshold set by the test: a sliding-window bundle in no training time."""
    windows = WindowConfig(kind="sliding", key_regex=None, size=60.0, step=15.0,
                           allowed_lateness=10.0)  # fmt: skip
    manifest = {**bundle.manifest, "threshold": {**bundle.manifest["threshold"],
                                                 "value": threshold}}  # fmt: skip
    return replace(
        bundle, log_config=replace(bundle.log_config, windows=windows), manifest=manifest
    )


@pytest.mark.asyncio
async def test_overlapping_sliding_windows_give_one_flag_per_incident_offline_and_served(
    tiny_bundle: Bundle, tiny_engine: Engine, tmp_path: Path
) -> None:
    log = generate_hdfs(30, anomaly_rate=0.2, seed=8)
    path = tmp_path / "test.log"
    write_synth(log, path)
    probe = sliding_variant(tiny_bundle, 0.0)
    scores = sorted(sw.score for sw in score_file(probe, path, "hdfs", backend="onnxruntime"))
    # A threshold that flags about a third of the windows, whatever the tiny model learnt.
    bundle = sliding_variant(tiny_bundle, scores[len(scores) * 2 // 3])
    anomalous = sum(sw.anomaly for sw in score_file(bundle, path, "hdfs", backend="onnxruntime"))
    offline = list(score_incidents(bundle, path, "hdfs", backend="onnxruntime"))
    again = list(score_incidents(bundle, path, "hdfs", backend="onnxruntime"))
    assert [i.flag_id for i in offline] == [i.flag_id for i in again]  # a replay: same ids
    assert len({i.flag_id for i in offline}) == len(offline)
    assert sum(i.windows for i in offline) == anomalous
    assert len(offline) < anomalous and max(i.windows for i in offline) > 1
    times = [t for t, _ in hdfs_events(log.lines)]
    for incident in offline:  # each line of the span once (one host: every line)
        sw = incident.window
        assert len(sw.lines) == sum(sw.start <= t < sw.end for t in times)
    rx = FlagReceiver()
    await rx.start()
    try:
        async with serving(settings(rx.port, pass_through=True), bundle, tiny_engine) as svc:
            events = hdfs_events(path.read_text().splitlines())
            await asyncio.to_thread(replay, svc.port, events)
            assert await received(svc, len(events))
    finally:
        await rx.stop()
    served = {f["flag_id"]: f for f in rx.flags("logsieve.flag")}
    # Pass-through records of an anomalous window carry its incident's id: a flag sent.
    passed = rx.records("logsieve.record")
    assert len(passed) == len(events)
    marked = {r["logsieve_flag_id"] for r in passed if r["logsieve_verdict"] == "anomaly"}
    assert marked and marked <= set(served)
    assert len(served) == len(rx.flags("logsieve.flag"))  # one flag per incident
    assert set(served) == {i.flag_id for i in offline}
    for incident in offline:
        flag = served[incident.flag_id]
        sw = incident.window
        assert (flag["window_start"], flag["window_end"]) == (sw.start, sw.end)
        assert flag["lines"] == len(sw.lines) and flag["verdict"] == "anomaly"
        evidence = [e["line"] for e in flag["evidence"]]
        assert evidence == [sw.lines[i] for i in sw.evidence(5)]
