"""Train/serve parity of the whole line path: the windows training builds from a file
equal the windows a server builds from the same records arriving one by one, with
clock-driven advance() calls in between."""

from __future__ import annotations

import dataclasses
import random

import pytest

from logsieve.config import LogConfig
from logsieve.export.data.formats import default_log_config
from logsieve.export.data.synth import generate_bgl, generate_hdfs
from logsieve.logs.novelty import is_novel
from logsieve.logs.pipeline import Event, LinePipeline, mine_templates, windows_of
from logsieve.logs.records import LogRecord
from logsieve.logs.templates import UNKNOWN, TemplateMatcher, TemplateMiner
from logsieve.logs.windows import Window

Flat = tuple[str, float, float, str, tuple[tuple[int, str], ...]]


def _flat(windows: list[Window[Event]]) -> list[Flat]:
    return sorted(
        (w.key, w.start, w.end, w.closed_by, tuple((e.template_id, e.text) for e in w.items))
        for w in windows
    )


def _streamed(
    records: list[LogRecord], config: LogConfig, pipe: LinePipeline, seed: int
) -> list[Window[Event]]:
    rng = random.Random(seed)
    out: list[Window[Event]] = []
    seen = float("-inf")
    for r in records:
        out += pipe.feed(r)
        if r.time is not None:
            seen = max(seen, r.time)
        if rng.random() < 0.2:  # a clock tick that is never ahead of the data
            out += pipe.advance(seen)
    return out + pipe.flush()


@pytest.mark.parametrize("fmt", ["hdfs", "bgl"])
def test_offline_windows_equal_streaming_windows(fmt: str) -> None:
    log = (
        generate_hdfs(120, anomaly_rate=0.1, seed=4)
        if fmt == "hdfs"
        else generate_bgl(6, 1800.0, anomaly_rate=0.2, seed=4)
    )
    records = list(log.records())
    config = default_log_config(fmt)
    state = mine_templates((r.text for r in records[: len(records) // 2]), config)
    offline = list(windows_of(records, config, TemplateMatcher.from_state(state)))
    online = _streamed(
        records, config, LinePipeline(config, TemplateMatcher.from_state(state)), seed=1
    )
    assert offline, "no windows at all"
    assert _flat(offline) == _flat(online)


def test_serving_ids_equal_training_ids_on_generated_logs() -> None:
    records = list(generate_hdfs(200, anomaly_rate=0.1, seed=7).records())
    config = default_log_config("hdfs")
    miner = TemplateMiner(config.masking, config.templates)
    mined = [miner.add(r.text) for r in records]
    matcher = TemplateMatcher.from_state(mine_templates((r.text for r in records), config))
    assert [matcher.match(r.text) for r in records] == mined
    assert matcher.unknown == 0


def test_unseen_lines_are_unknown_and_counted() -> None:
    config = default_log_config("hdfs")
    state = mine_templates((r.text for r in generate_hdfs(50, seed=1).records()), config)
    matcher = TemplateMatcher.from_state(state)
    pipe = LinePipeline(config, matcher)
    pipe.feed(LogRecord(1.0, None, "completely novel text about blk_42"))
    (window,) = pipe.flush()
    # Matched no template (counted as unknown); the novelty tracker named its pattern.
    assert window.key == "blk_42" and is_novel(window.items[0].template_id)
    assert window.items[0].unknown
    stats = pipe.stats()
    assert stats["unknown_lines"] == 1 and stats["unknown_rate"] == 1.0
    assert stats["novelty"]["patterns"] == 1
    flag = dataclasses.replace(config, unseen_templates="flag")
    pipe = LinePipeline(flag, matcher)
    pipe.feed(LogRecord(1.0, None, "completely novel text about blk_42"))
    (window,) = pipe.flush()
    assert window.items[0].template_id == UNKNOWN and pipe.novelty is None
