"""An exact verdict cache in front of a :class:`~logsieve.engine.windows.WindowEngine`.

Windows repeat: most HDFS sessions of a day's traffic are, line for line, sessions
seen before, and about 60% of BGL windows repeat one. A window's score and per-line
probabilities are a pure function of the model and of what the engine is given, so a
window already scored needs no second engine call. :class:`CachedWindowEngine` wraps
any window engine (in this process or the engine process) and, per batch:

* looks each window up in a bounded LRU (:class:`VerdictCache`) by its *model input*:
  the template ids as the engine encodes them (ids outside the vocabulary are one
  ``[UNK]``; under ``truncate = "recent"`` only the lines the model sees, plus the
  window's length, which sets the zeros in front of the probabilities);
* sends the misses to the engine in **one** call, each distinct window **once**
  (identical windows inside one batch share one engine row);
* stores what the engine returned and hands every window its result, in order.

A hit returns the very numbers the engine returned for that input (probabilities are
kept as float32 when that is exact, which it is for every backend here, else as
float64), so verdicts, scores and evidence are the same with and without the cache.
Engines here are batch-invariant (a window scores the same bits alone or in any
batch; tested), which is what makes the stored result the one a new call would give.

Each served model gets its own cache (:mod:`logsieve.agent_plugin.served_model`), so
a bundle reload starts empty and no result of one model can answer for another. The
cache is bounded by entries and by bytes (an estimate: the key's and value's payload
plus :data:`ENTRY_OVERHEAD` for the Python objects and the dictionary slot); either
bound at 0 turns storing off, while identical windows in one batch are still scored
once. Counters (hits, misses, in-batch duplicates, evictions) and the size go to a
:class:`CacheStats` that the server exports as metrics.

Not pre-warmed from the training windows: a bundle stores their ids
(``known_windows.json``) but not their scores, and such a window is judged normal by
:func:`logsieve.verdict.seen_in_training` whatever it scores; scoring them at load
would delay every start and reload by the time to score the training set.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from logsieve.bundle import Bundle
from logsieve.config import not_int
from logsieve.errors import BundleError, ConfigError, LogsieveError

from .base import EngineInfo
from .windows import Scored, WindowEngine

__all__ = ["ENTRY_OVERHEAD", "CacheStats", "CachedWindowEngine", "VerdictCache"]

# Bytes of Python objects per entry beyond the payload: the OrderedDict's slot and
# link node, the key's bytes header, the value tuple, its float and the array header
# (tracemalloc over 100k entries of 3 to 100 lines: 274 bytes each).
ENTRY_OVERHEAD = 280

_Key = bytes | tuple[int, bytes]
_Value = tuple[float, "array[float]"]


@dataclass(slots=True)
class CacheStats:
    """What the caches did: counters only grow; ``entries``/``bytes`` are their size now.

    One instance may be shared by several caches: its size is then the sum of the
    caches alive. (The server gives each served model its own and exports their sum,
    so the counters keep counting over a reload.)

    Counted per batch once the engine answered it (a failed batch counts nothing).

    Attributes:
        hits: Windows answered from the cache.
        misses: Windows the engine scored (one per distinct window of a batch).
        duplicates: Windows identical to a miss in the same batch (scored once with it).
        evictions: Entries dropped, least recently used first, to stay within a bound.
        entries: Entries held now.
        bytes: Estimated bytes held now.
    """

    hits: int = 0
    misses: int = 0
    duplicates: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0

    @property
    def hit_rate(self) -> float:
        """Share of windows that needed no engine row (hits and in-batch duplicates)."""
        total = self.hits + self.misses + self.duplicates
        return (self.hits + self.duplicates) / total if total else 0.0


class VerdictCache:
    """A least-recently-used map from a window's model input to its engine result.

    Bounded by ``max_entries`` and by ``max_bytes`` (estimated, see the module
    docstring); a bound of 0 stores nothing. Not thread-safe: a
    :class:`~logsieve.engine.windows.WindowEngine` runs one call at a time.
    """

    def __init__(self, max_entries: int, max_bytes: int, stats: CacheStats | None = None) -> None:
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if not_int(value) or value < 0:
                raise ConfigError(f"verdict cache {name}", value, "an integer >= 0 (0: off)")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.stats = stats if stats is not None else CacheStats()
        self._data: OrderedDict[_Key, _Value] = OrderedDict()
        self._bytes = 0

    @property
    def enabled(self) -> bool:
        """Whether anything is stored (both bounds above 0)."""
        return self.max_entries > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size_bytes(self) -> int:
        """Estimated bytes this cache holds."""
        return self._bytes

    def get(self, key: _Key) -> tuple[float, list[float]] | None:
        """The stored ``(score, per-line probabilities)`` (a fresh list), or None."""
        value = self._data.get(key)
        if value is None:
            return None
        self._data.move_to_end(key)
        return value[0], value[1].tolist()

    def put(self, key: _Key, score: float, per_line: Sequence[float]) -> None:
        """Store one result, evicting the least recently used entries to make room.

        An entry larger than ``max_bytes`` by itself is not stored.
        """
        if not self.enabled or key in self._data:
            return
        probs = array("f", per_line)
        if probs.tolist() != list(per_line):  # not float32 values: keep them exact
            probs = array("d", per_line)
        size = _size(key, probs)
        if size > self.max_bytes:
            return
        while self._data and (
            len(self._data) >= self.max_entries or self._bytes + size > self.max_bytes
        ):
            old_key, old = self._data.popitem(last=False)
            self._account(-1, -_size(old_key, old[1]))
            self.stats.evictions += 1
        self._data[key] = (score, probs)
        self._account(1, size)

    def clear(self) -> None:
        """Drop every entry (not counted as evictions)."""
        self._account(-len(self._data), -self._bytes)
        self._data.clear()

    def _account(self, entries: int, size: int) -> None:
        self._bytes += size
        self.stats.entries += entries
        self.stats.bytes += size


def _size(key: _Key, probs: array[float]) -> int:
    raw = key if isinstance(key, bytes) else key[1]
    return ENTRY_OVERHEAD + len(raw) + probs.itemsize * len(probs)


class _Plan:
    """One batch split into cache hits and the distinct windows the engine must score."""

    __slots__ = ("duplicates", "hits", "keys", "out", "rows", "todo", "where")

    def __init__(self, n: int) -> None:
        self.hits = self.duplicates = 0  # counted once the engine answered
        self.out: list[tuple[float, list[float]] | None] = [None] * n
        self.todo: list[Sequence[int]] = []  # distinct misses, in first-seen order
        self.keys: list[_Key] = []  # the key of each entry of ``todo``
        self.rows: dict[_Key, int] = {}  # key -> its row in ``todo``
        self.where: list[tuple[int, int]] = []  # (window index, row) of every miss


class CachedWindowEngine:
    """A :class:`~logsieve.engine.windows.WindowEngine` that scores each distinct,
    not yet cached window once; see the module docstring.

    ``n_templates``, ``max_len`` and ``truncate`` must be the ones the inner engine
    encodes windows with (:meth:`for_bundle` reads them from the bundle, as both
    window engines do). Closing it closes the inner engine and empties the cache.
    """

    def __init__(
        self,
        inner: WindowEngine,
        cache: VerdictCache,
        *,
        n_templates: int,
        max_len: int,
        truncate: str,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self._n = n_templates
        self._room = max_len - 1  # lines per chunk after [CLS]
        self._recent = truncate == "recent"
        # Template ids are far below 2**31 (the vocabulary's size); 4 bytes each keep
        # keys small.
        self._typecode = "i" if n_templates < 2**31 else "q"

    @classmethod
    def for_bundle(
        cls,
        inner: WindowEngine,
        bundle: Bundle,
        max_entries: int,
        max_bytes: int,
        stats: CacheStats | None = None,
    ) -> CachedWindowEngine:
        """Over ``bundle``'s vocabulary and log settings, with a new, empty cache."""
        if bundle.vocab is None:
            raise BundleError(f"{bundle.path}: no vocabulary, so no window engine to cache")
        config = bundle.log_config
        return cls(
            inner,
            VerdictCache(max_entries, max_bytes, stats),
            n_templates=bundle.vocab.n_templates,
            max_len=config.max_len,
            truncate=config.truncate,
        )

    @property
    def stats(self) -> CacheStats:
        """The cache's counters (possibly shared with other caches)."""
        return self.cache.stats

    @property
    def info(self) -> EngineInfo:
        """The inner engine's (it may change when an engine process restarts)."""
        return self.inner.info

    @info.setter
    def info(self, value: EngineInfo) -> None:
        self.inner.info = value

    @property
    def restarts(self) -> int:
        """The inner engine's restarts."""
        return self.inner.restarts

    def key(self, ids: Sequence[int]) -> _Key:
        """What the engine's result for ``ids`` depends on, as a compact hashable key."""
        n = self._n
        if ids and (min(ids) < 0 or max(ids) >= n):
            ids = [i if 0 <= i < n else -1 for i in ids]  # all encode as [UNK]
        if self._recent and len(ids) > self._room:
            # Only the last lines reach the model; the length places their results.
            return len(ids), array(self._typecode, ids[-self._room :]).tobytes()
        return array(self._typecode, ids).tobytes()

    def score_ids(self, windows: Sequence[Sequence[int]]) -> Scored:
        """``(score, per-line probabilities)`` per window, in order (blocking)."""
        plan = self._plan(windows)
        return self._finish(plan, self.inner.score_ids(plan.todo) if plan.todo else [])

    async def score_ids_async(self, windows: Sequence[Sequence[int]]) -> Scored:
        """:meth:`score_ids` without blocking the event loop; one call at a time."""
        plan = self._plan(windows)
        scored = await self.inner.score_ids_async(plan.todo) if plan.todo else []
        return self._finish(plan, scored)

    def close(self) -> None:
        """Close the inner engine and empty the cache (idempotent)."""
        self.inner.close()
        self.cache.clear()

    def _plan(self, windows: Sequence[Sequence[int]]) -> _Plan:
        plan = _Plan(len(windows))
        get, rows = self.cache.get, plan.rows
        hits = duplicates = 0
        for i, ids in enumerate(windows):
            key = self.key(ids)
            found = get(key)
            if found is not None:
                plan.out[i] = found
                hits += 1
                continue
            row = rows.get(key)
            if row is None:
                row = rows[key] = len(plan.todo)
                plan.todo.append(ids)
                plan.keys.append(key)
            else:
                duplicates += 1
            plan.where.append((i, row))
        plan.hits, plan.duplicates = hits, duplicates
        return plan

    def _finish(self, plan: _Plan, scored: Scored) -> Scored:
        if len(scored) != len(plan.todo):
            raise LogsieveError(
                f"window engine returned {len(scored)} result(s) for {len(plan.todo)} window(s)"
            )
        stats = self.cache.stats
        stats.hits += plan.hits
        stats.duplicates += plan.duplicates
        stats.misses += len(scored)
        for key, (score, per_line) in zip(plan.keys, scored, strict=True):
            self.cache.put(key, score, per_line)
        taken = [False] * len(scored)
        out = plan.out
        for i, row in plan.where:
            score, per_line = scored[row]
            # The first window of a row takes the engine's list; repeats get copies.
            out[i] = (score, per_line if not taken[row] else list(per_line))
            taken[row] = True
        return out  # type: ignore[return-value]  # every slot is filled above
