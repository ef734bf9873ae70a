"""The verdict cache in the server: every verdict, score and per-line probability the
same with and without it, its counters on /metrics, and a reload starting empty."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import generate_latest

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.forward import LogRecord, RecordBatch
from logsieve.agent_plugin.pipeline import StreamingPipeline
from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.agent_plugin.served_model import served_model
from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.engine.windows import LocalWindowEngine
from logsieve.errors import ConfigError
from logsieve.export.data.synth import generate_hdfs

from .served import hdfs_events, odd_block, received, replay, settings

DAY = 86_400.0
N_BLOCKS = 30
Events = list[tuple[float, dict[str, Any]]]


def two_days(seed: int) -> tuple[Events, Events]:
    """Generated HDFS blocks (some anomalous, one of lines no template matches) ending
    with a line two days later that closes their windows; then the same blocks again
    under new block ids, three days later: the second day's windows repeat the first's."""
    first = hdfs_events(generate_hdfs(N_BLOCKS, anomaly_rate=0.2, seed=seed).lines)
    first += odd_block(first[-1][0] + 1)
    tick = (first[-1][0] + 2 * DAY, {"log": "Verification succeeded for blk_777"})
    second = []
    for t, rec in first:
        log = re.sub(r"blk_(-?\d+)", r"blk_\g<1>0", rec["log"])  # a new id, the same template
        second.append((t + 3 * DAY, {"log": log, "raw": log}))
    return [*first, tick], second


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def serve_two_days(
    bundle: Bundle, engine: Engine, **pipeline: Any
) -> tuple[dict[str, dict[Any, Any]], dict[str, float], str]:
    """Every verdict by window key, the cache's metrics and the /metrics text."""
    first, second = two_days(seed=7)
    rx = FlagReceiver()
    await rx.start()
    try:
        cfg = settings(rx.port, every_verdict=True, top_k=1000, **pipeline)
        service = Service(cfg, bundle, engine)
        await service.start()
        try:
            pipe = service.pipeline
            await asyncio.to_thread(replay, service.port, first)
            assert await received(service, len(first))
            # The first day's windows are scored (and cached) before the second comes.
            await wait_until(lambda: pipe.queue_depth == 0 and pipe.model.pending == 0)
            await asyncio.to_thread(replay, service.port, second)
            assert await received(service, len(first) + len(second))
        finally:
            await service.stop()
        registry = service.metrics.registry
        cache = {
            name: registry.get_sample_value(f"logsieve_pipeline_cache_{name}") or 0.0
            for name in (
                "hits_total",
                "misses_total",
                "batch_duplicates_total",
                "evictions_total",
                "entries",
                "bytes",
            )
        }
        text = generate_latest(registry).decode()
        verdicts = {r["key"]: r for r in rx.flags()}
    finally:
        await rx.stop()
    return verdicts, cache, text


@pytest.mark.asyncio
async def test_verdicts_scores_and_probabilities_are_the_same_with_and_without_the_cache(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    with_cache, cache, text = await serve_two_days(tiny_bundle, tiny_engine)
    without, off, _ = await serve_two_days(tiny_bundle, tiny_engine, verdict_cache_entries=0)
    windows = 2 * (N_BLOCKS + 1) + 1  # two days of blocks and odd blocks, the tick's
    assert len(with_cache) == len(without) == windows
    # Whole records: verdict, score, reasons, and every line's probability (top_k
    # covers the window), bit for bit.
    assert with_cache == without
    assert {r["verdict"] for r in with_cache.values()} == {"normal", "anomaly"}
    assert all(len(r["evidence"]) == r["lines"] for r in with_cache.values())
    # The second day's windows came from the cache; nothing else was scored twice.
    assert cache["hits_total"] >= N_BLOCKS + 1
    assert cache["hits_total"] + cache["misses_total"] + cache["batch_duplicates_total"] == windows
    assert off["hits_total"] == 0 and off["misses_total"] + off["batch_duplicates_total"] == windows
    assert cache["misses_total"] <= windows - cache["hits_total"]
    assert off["entries"] == off["bytes"] == 0
    # stop() closed the engine of the model serving; its cache is empty, not evicted.
    assert cache["evictions_total"] == 0
    for name in ("hits_total", "misses_total", "evictions_total", "entries", "bytes"):
        assert f"logsieve_pipeline_cache_{name} " in text


class Collect:
    """The pipeline's upstream: keeps what it is handed."""

    def __init__(self) -> None:
        self.sent: list[dict[Any, Any]] = []

    async def send(self, tag: str, record: dict[Any, Any], time: float | None = None) -> bool:
        self.sent.append(record)
        return True


def batch(events: Events) -> RecordBatch:
    recs = [LogRecord("hdfs", t, int(t * 1e9), rec) for t, rec in events]
    return RecordBatch("hdfs", recs, None, "forward", 100)


@pytest.mark.asyncio
async def test_a_reload_starts_with_an_empty_cache_and_the_counters_keep_counting(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    cfg = PipelineConfig(every_verdict=True, advance_interval=0, max_wait_ms=1.0)
    first, second = two_days(seed=9)
    pipe = StreamingPipeline(
        cfg, tiny_bundle, LocalWindowEngine.for_bundle(tiny_engine, tiny_bundle), Collect()
    )
    await pipe.start()
    await pipe.put(batch(first))
    old = pipe.model
    await wait_until(lambda: pipe.queue_depth == 0 and old.pending == 0)
    assert old.cache_stats.entries > 0 and old.cache_stats.hits == 0
    # The same bundle again (as a SIGHUP with no change on disk would not, but a new
    # version would): a new model, a new cache.
    pipe.swap_model(
        served_model(tiny_bundle, LocalWindowEngine.for_bundle(tiny_engine, tiny_bundle), cfg)
    )
    new = pipe.model
    assert new is not old and new.engine is not old.engine
    await pipe.put(batch(second))
    await pipe.close()
    # The old model's cache was emptied when its engine closed; the new one scored the
    # second day's windows itself, though the old cache held every one of them.
    assert old.closed and old.cache_stats.entries == old.cache_stats.bytes == 0
    assert new.cache_stats.hits == 0 and new.cache_stats.misses > 0
    registry = pipe.metrics.registry
    misses = registry.get_sample_value("logsieve_pipeline_cache_misses_total")
    assert misses == old.cache_stats.misses + new.cache_stats.misses


def test_the_cache_settings_are_validated() -> None:
    assert PipelineConfig().verdict_cache_entries > 0 and PipelineConfig().verdict_cache_bytes > 0
    for name, value in (("verdict_cache_entries", -1), ("verdict_cache_bytes", 1.5)):
        with pytest.raises(ConfigError, match=name):
            PipelineConfig.from_dict({name: value})
    assert PipelineConfig.from_dict({"verdict_cache_entries": 0}).verdict_cache_entries == 0
