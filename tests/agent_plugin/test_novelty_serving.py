"""New templates through a real server: drift is not flagged, an incident is, each new
pattern is reported once on its own tag, and admitted patterns survive a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.agent_plugin.serve_config import ServeSettings
from logsieve.bundle import Bundle
from logsieve.engine import Engine, load_engine
from logsieve.errors import ConfigError
from logsieve.export.data.synth import generate_hdfs

from .served import hdfs_events, received, replay, settings

pytestmark = pytest.mark.asyncio

DRIFT = "Scrubber verified replica {b} on volume /data/7 checksum ok"
INCIDENT = "Unexpected error trying to delete block {b}. BlockInfo not found in volumeMap."


@asynccontextmanager
async def serving(cfg: ServeSettings, bundle: Bundle, engine: Engine) -> AsyncIterator[Service]:
    service = Service(cfg, bundle, engine)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def stream() -> tuple[list[tuple[float, dict[str, object]]], list[str], str]:
    """Generated normal blocks, every one given a new "Scrubber verified" line (drift); one
    of them also a new error line (an incident)."""
    log = generate_hdfs(30, anomaly_rate=0.0, seed=5)
    events = hdfs_events(log.lines)
    blocks = sorted(log.labels)
    t = max(e[0] for e in events) + 1.0
    for i, b in enumerate(blocks):
        events.append((t + i, {"log": DRIFT.format(b=b)}))
    events.append((t + len(blocks), {"log": INCIDENT.format(b=blocks[7])}))
    return events, blocks, blocks[7]


async def test_drift_is_reported_not_flagged_and_an_incident_is_flagged(
    tiny_bundle: Bundle, tiny_engine: Engine, tmp_path: Path
) -> None:
    events, blocks, bad = stream()
    state = tmp_path / "novelty.json"
    rx = FlagReceiver()
    await rx.start()
    try:
        cfg = settings(rx.port, novelty_state=str(state))
        async with serving(cfg, tiny_bundle, tiny_engine) as svc:
            await asyncio.to_thread(replay, svc.port, events)
            assert await received(svc, len(events))
        metrics = svc.pipeline.metrics
        flags = rx.flags("logsieve.flag")
        patterns = rx.records("logsieve.pattern")
    finally:
        await rx.stop()
    new_flags = [f for f in flags if "rare_new_template" in f["reasons"]]
    assert [f["key"] for f in new_flags] == [bad]
    assert new_flags[0]["evidence"][0]["line"] == INCIDENT.format(b=bad)
    assert new_flags[0]["evidence"][0]["template"].startswith("[NEW] Unexpected error")
    by_status = {(p["pattern"].split()[0], p["status"]) for p in patterns}
    assert ("Scrubber", "admitted") in by_status and ("Unexpected", "new") in by_status
    assert ("Unexpected", "admitted") not in by_status
    deleting = [p for p in patterns if p["pattern"].startswith("Scrubber")]
    assert len(deleting) <= 2  # once new (if judged before admission), once admitted
    assert deleting[-1]["keys"] == len(blocks) and deleting[-1]["first_line"].startswith("Scrub")
    for p in patterns:
        json.dumps(p, allow_nan=False)
    decisions = metrics.novelty
    assert sample_value(decisions, decision="windows_rare") == 1
    assert sample_value(decisions, decision="patterns_admitted") == 1
    assert sample_value(decisions, decision="lines_admitted") == len(blocks)
    assert sample_value(metrics.sent, kind="pattern") == len(patterns)
    saved = json.loads(state.read_text())
    assert {p["admitted"] for p in saved["patterns"] if p["tokens"][0] == "Scrubber"} == {True}


async def test_admitted_patterns_survive_a_restart(
    tiny_bundle: Bundle, tiny_engine: Engine, tmp_path: Path
) -> None:
    events, _, _ = stream()
    state = tmp_path / "novelty.json"
    rx = FlagReceiver()
    await rx.start()
    try:
        cfg = settings(rx.port, novelty_state=str(state))
        async with serving(cfg, tiny_bundle, tiny_engine) as svc:
            await asyncio.to_thread(replay, svc.port, events)
            assert await received(svc, len(events))
        saved = json.loads(state.read_text())
        assert [p["admitted"] for p in saved["patterns"]] == [True, False], saved
        # After a restart, one new block with the drift line alone: not an incident.
        lone = "blk_-777000777"
        again = [(2e9, {"log": f"Receiving block {lone} src: /10.0.0.1:1 dest: /10.0.0.2:2"}),
                 (2e9 + 1, {"log": DRIFT.format(b=lone)})]  # fmt: skip
        async with serving(cfg, tiny_bundle, tiny_engine) as svc:
            assert svc.pipeline.lines.novelty is not None
            assert svc.pipeline.lines.novelty.stats()["admitted"] == 1
            await asyncio.to_thread(replay, svc.port, again)
            assert await received(svc, len(again))
        flags = rx.flags("logsieve.flag")
    finally:
        await rx.stop()
    assert not [f for f in flags if f["key"] == lone and "rare_new_template" in f["reasons"]]


async def test_a_corrupt_state_file_is_a_clear_error(tiny_bundle: Bundle, tmp_path: Path) -> None:
    state = tmp_path / "novelty.json"
    state.write_text("{not json")
    cfg = settings(1, novelty_state=str(state))
    # Its own engine: a Service that fails to start closes the engine it was given.
    with pytest.raises(ConfigError, match="novelty_state"):
        Service(cfg, tiny_bundle, load_engine(tiny_bundle, "onnxruntime"))
