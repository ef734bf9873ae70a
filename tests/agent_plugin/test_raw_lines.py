"""Raw lines through ``serve``: Fluent Bit ``tail`` without a parser puts the whole line in
``log``; the bundle's own line parser must turn it into the same templates and windows
as already-parsed content (fluent-logger → Forward server → pipeline → upstream)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.bundle import Bundle
from logsieve.config import LineFormat
from logsieve.engine import Engine
from logsieve.export.data.synth import generate_hdfs, write_synth

from .served import hdfs_events, replay, settings
from .test_pipeline import received

pytestmark = pytest.mark.asyncio

# When a tail input read every line: one instant for the whole file, years after the
# lines' own times (Forward records always carry a time). In the past: a time ahead of
# the wall clock is not trusted (pipeline.max_future_skew).
READ_TIME = 1_750_000_000.0


async def _serve(
    bundle: Bundle, engine: Engine, events: list[tuple[float, dict[str, Any]]], **pipeline: Any
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    rx = FlagReceiver()
    await rx.start()
    try:
        svc = Service(settings(rx.port, every_verdict=True, **pipeline), bundle, engine)
        await svc.start()
        try:
            await asyncio.to_thread(replay, svc.port, events)
            assert await received(svc, len(events))
        finally:
            await svc.stop()
        flags = {f["key"]: f for f in rx.flags()}
    finally:
        await rx.stop()
    return flags, svc.pipeline.stats()


def _view(flag: dict[str, Any]) -> tuple[Any, ...]:
    return (
        flag["window_start"], flag["window_end"], flag["lines"], flag["verdict"], flag["score"],
        [(e["line"], e["template_id"]) for e in flag["evidence"]],
    )  # fmt: skip


async def test_raw_lines_in_log_window_and_score_as_parsed_content(
    tiny_bundle: Bundle, tiny_engine: Engine, tmp_path: Path
) -> None:
    assert tiny_bundle.line_format == LineFormat("hdfs")
    log = generate_hdfs(40, anomaly_rate=0.2, seed=3)
    path = tmp_path / "test.log"
    write_synth(log, path)
    raw_lines = path.read_text().splitlines()
    parsed = hdfs_events(raw_lines)  # a parser upstream: content in log, the line's time
    raw = [(READ_TIME + i * 1e-3, {"log": line + "\n"}) for i, line in enumerate(raw_lines)]

    by_content, content_stats = await _serve(tiny_bundle, tiny_engine, parsed)
    by_raw, raw_stats = await _serve(tiny_bundle, tiny_engine, raw)

    assert set(by_raw) == set(by_content) == set(log.labels)
    for key, flag in by_content.items():
        assert _view(by_raw[key]) == _view(flag), key
    # The windows are dated by the lines' own times, not by when they were read.
    assert max(f["window_end"] for f in by_raw.values()) < READ_TIME - 1e8
    assert (raw_stats["raw_parsed"], raw_stats["raw_as_is"]) == (len(raw_lines), 0)
    assert (content_stats["raw_parsed"], content_stats["raw_as_is"]) == (0, len(raw_lines))


async def test_raw_lines_off_takes_every_text_as_it_is(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    line = (
        "081109 203615 148 INFO dfs.DataNode$PacketResponder: "
        "PacketResponder 1 for block blk_38865049064139660 terminating"
    )
    flags, stats = await _serve(
        tiny_bundle, tiny_engine, [(READ_TIME, {"log": line})], raw_lines=False
    )
    assert (stats["raw_parsed"], stats["raw_as_is"]) == (0, 0)  # not counted when off
    (flag,) = flags.values()
    # The whole line was the text: no training template matched it (a new pattern).
    assert flag["evidence"][0]["line"] == line and flag["evidence"][0]["template_id"] < 0
    assert flag["reasons"] == ["rare_new_template"]
    assert flag["window_start"] == pytest.approx(READ_TIME)
