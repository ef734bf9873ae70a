"""The verdict cache (logsieve.engine.cache): the same numbers as the engine, each
distinct window scored once per batch and never again while cached, bounds kept."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.engine.base import FloatArray, IdArray
from logsieve.engine.cache import ENTRY_OVERHEAD, CachedWindowEngine, CacheStats, VerdictCache
from logsieve.engine.windows import LocalWindowEngine, Scored
from logsieve.engine.worker import EngineWorker
from logsieve.errors import ConfigError, LogsieveError


class CountingEngine:
    """A real engine that counts its calls and the windows (rows) it scored."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.info = engine, engine.info
        self.calls = self.rows = 0

    def score(self, ids: IdArray, lengths: IdArray) -> tuple[FloatArray, FloatArray]:
        self.calls += 1
        self.rows += len(ids)
        return self.engine.score(ids, lengths)


def counted(bundle: Bundle, engine: Engine, **log: Any) -> tuple[CountingEngine, LocalWindowEngine]:
    shim = CountingEngine(engine)
    assert bundle.vocab is not None
    return shim, LocalWindowEngine(shim, bundle.vocab, replace(bundle.log_config, **log))


def cached(inner: LocalWindowEngine, entries: int = 1000, size: int = 10**7) -> CachedWindowEngine:
    config = inner.config
    return CachedWindowEngine(
        inner,
        VerdictCache(entries, size),
        n_templates=inner.vocab.n_templates,
        max_len=config.max_len,
        truncate=config.truncate,
    )


def random_windows(bundle: Bundle, n: int, seed: int, repeat: float = 0.5) -> list[list[int]]:
    """Windows of 1-40 known template ids, about ``repeat`` of them a copy of an earlier one."""
    assert bundle.vocab is not None
    rng, k = random.Random(seed), bundle.vocab.n_templates
    out: list[list[int]] = []
    for _ in range(n):
        if out and rng.random() < repeat:
            out.append(list(rng.choice(out)))
        else:
            out.append([rng.randrange(k) for _ in range(rng.randint(1, 40))])
    return out


def test_results_are_the_engines_own_numbers_and_repeats_cost_no_row(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    windows = random_windows(tiny_bundle, 300, seed=1)
    windows.append([])  # no line to score: (0.0, []) as the engine gives it
    _, plain = counted(tiny_bundle, tiny_engine)
    expected = plain.score_ids(windows)
    shim, inner = counted(tiny_bundle, tiny_engine)
    engine = cached(inner)
    got = engine.score_ids(windows)
    assert got == expected  # scores and every per-line probability, bit for bit
    distinct = {tuple(w) for w in windows if w}
    assert shim.rows == len(distinct) < len(windows) - 100  # one row per distinct window
    st = engine.stats
    assert (st.hits, st.misses, st.duplicates) == (
        0,
        len(distinct) + 1,
        len(windows) - 1 - len(distinct),
    )
    # Again, in another order: all from the cache, no engine call at all.
    calls = shim.calls
    order = list(range(len(windows)))
    random.Random(2).shuffle(order)
    assert engine.score_ids([windows[i] for i in order]) == [expected[i] for i in order]
    assert shim.calls == calls and st.hits == len(windows)
    assert st.hit_rate == pytest.approx((len(windows) + st.duplicates) / (2 * len(windows)))
    # A hit hands out its own list: changing it does not change the cache.
    got[0][1].append(9.0)
    assert engine.score_ids([windows[0]]) == [expected[0]]


def test_the_event_loop_form_and_the_engine_process_give_the_same_results(
    tiny_bundle: Bundle,
) -> None:
    windows = random_windows(tiny_bundle, 60, seed=3)
    worker = EngineWorker(tiny_bundle.path, "onnxruntime", threads=1)
    try:
        expected = worker.score_ids(windows)
        engine = CachedWindowEngine.for_bundle(worker, tiny_bundle, 100, 10**6)
        assert engine.info == worker.info and engine.restarts == 0
        first = asyncio.run(engine.score_ids_async(windows))
        second = asyncio.run(engine.score_ids_async(windows))
    finally:
        worker.close()
    assert first == second == expected
    assert engine.stats.hits == len(windows) and engine.stats.misses == len(
        {tuple(w) for w in windows}
    )


def test_ids_the_vocabulary_lacks_share_one_entry_as_they_share_unk(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    assert tiny_bundle.vocab is not None
    n = tiny_bundle.vocab.n_templates
    windows = [[0, -1, 2], [0, -7, 2], [0, n + 5, 2], [0, 1, 2]]
    _, plain = counted(tiny_bundle, tiny_engine)
    shim, inner = counted(tiny_bundle, tiny_engine)
    engine = cached(inner)
    assert engine.score_ids(windows) == plain.score_ids(windows)
    assert shim.rows == 2


def test_recent_truncation_keys_on_the_lines_the_model_sees_and_the_length(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    # max_len 6: the model sees [CLS] + the last 5 lines; the rest get probability 0.
    tail = [1, 2, 3, 4, 5]
    windows = [[0, *tail], [6, *tail], [0, 0, *tail], [*tail], [7, *tail]]
    _, plain = counted(tiny_bundle, tiny_engine, max_len=6, truncate="recent")
    shim, inner = counted(tiny_bundle, tiny_engine, max_len=6, truncate="recent")
    engine = cached(inner)
    expected = plain.score_ids(windows)
    assert expected[0][1][0] == 0.0 and len(expected[2][1]) == 7
    assert engine.score_ids(windows) == expected
    # [0, *tail], [6, *tail] and [7, *tail] are one model input; the others two more.
    assert shim.rows == 3
    # Split windows (the default) are keyed whole: a different first line is a miss.
    shim, inner = counted(tiny_bundle, tiny_engine, max_len=6)
    engine = cached(inner)
    assert engine.score_ids(windows[:2]) == counted(tiny_bundle, tiny_engine, max_len=6)[
        1
    ].score_ids(windows[:2])
    assert engine.stats.misses == 2


def test_off_stores_nothing_but_still_scores_a_batchs_repeats_once(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    for entries, size in ((0, 10**6), (100, 0)):
        shim, inner = counted(tiny_bundle, tiny_engine)
        engine = cached(inner, entries, size)
        assert not engine.cache.enabled
        engine.score_ids([[1, 2], [1, 2], [3]])
        engine.score_ids([[1, 2], [1, 2], [3]])
        assert shim.rows == 4 and len(engine.cache) == 0 and engine.stats.bytes == 0
        assert (engine.stats.hits, engine.stats.misses, engine.stats.duplicates) == (0, 4, 2)


def key(i: int) -> bytes:
    return i.to_bytes(4, "little")


def test_the_entries_bound_evicts_the_least_recently_used_and_counts_it() -> None:
    cache = VerdictCache(3, 10**6)
    for i in range(3):
        cache.put(key(i), float(i), [0.5])
    assert cache.get(key(0)) == (0.0, [0.5])  # 0 is now the most recently used
    cache.put(key(3), 3.0, [0.25])
    cache.put(key(4), 4.0, [0.25])
    assert len(cache) == 3 and cache.stats.evictions == 2
    assert cache.get(key(1)) is None and cache.get(key(2)) is None
    assert [cache.get(key(i)) is not None for i in (0, 3, 4)] == [True, True, True]
    assert cache.stats.entries == 3


def test_the_bytes_bound_is_kept_and_an_oversized_entry_is_not_stored() -> None:
    one = ENTRY_OVERHEAD + 4 + 4 * 10  # a 4-byte key, ten float32 probabilities
    cache = VerdictCache(1000, 2 * one + one // 2)
    for i in range(5):
        cache.put(key(i), 1.0, [0.5] * 10)
        assert cache.size_bytes <= cache.max_bytes
    assert len(cache) == 2 and cache.size_bytes == 2 * one and cache.stats.evictions == 3
    cache.put(key(9), 1.0, [0.5] * 1000)  # larger than the whole cache
    assert cache.get(key(9)) is None and len(cache) == 2 and cache.stats.evictions == 3


def test_probabilities_that_are_not_float32_are_kept_exactly() -> None:
    cache = VerdictCache(10, 10**6)
    probs = [0.1, 1 / 3, 0.0]  # float64 values: float32 storage would round them
    cache.put(key(1), float("inf"), probs)
    cache.put(key(2), 2.0, [0.5, 0.25])
    assert cache.get(key(1)) == (float("inf"), probs)
    assert cache.size_bytes == 2 * ENTRY_OVERHEAD + 8 + 8 * 3 + 4 * 2


def test_shared_stats_sum_the_caches_and_clearing_one_removes_its_size() -> None:
    stats = CacheStats()
    a, b = VerdictCache(10, 10**6, stats), VerdictCache(10, 10**6, stats)
    a.put(key(1), 1.0, [0.5])
    b.put(key(1), 1.0, [0.5])
    b.put(key(2), 1.0, [0.5])
    assert stats.entries == 3 and stats.bytes == a.size_bytes + b.size_bytes
    b.clear()
    assert stats.entries == 1 and stats.bytes == a.size_bytes and stats.evictions == 0


def test_bad_bounds_and_a_reply_that_does_not_fit_are_errors(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    with pytest.raises(ConfigError, match="max_entries"):
        VerdictCache(-1, 10)
    with pytest.raises(ConfigError, match="max_bytes"):
        VerdictCache(1, True)  # type: ignore[arg-type]
    _, inner = counted(tiny_bundle, tiny_engine)

    class Short(LocalWindowEngine):
        """Drops the last result once ``short`` is set (a broken engine)."""

        short = False

        def score_ids(self, windows: Sequence[Sequence[int]]) -> Scored:
            scored = super().score_ids(windows)
            return scored[:-1] if self.short else scored

    broken = Short(inner.engine, inner.vocab, inner.config)
    engine = cached(broken)
    engine.score_ids([[1]])
    broken.short = True
    with pytest.raises(LogsieveError, match="0 result"):
        engine.score_ids([[1], [2], [2]])  # a hit, a miss and its repeat
    # Only the first batch counted; the failed one stored and counted nothing.
    assert len(engine.cache) == 1 and engine.stats == CacheStats(
        misses=1, entries=1, bytes=ENTRY_OVERHEAD + 4 + 4
    )
