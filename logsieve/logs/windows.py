"""Group keyed, timed log events into windows: one implementation, offline and online.

Training replays a file in time order through :func:`replay`; the server feeds records
as they arrive through the same :class:`Windower` and calls :meth:`Windower.advance`
from a clock. Both see the same windows for the same input (a tested property).

Time is *event* time. The watermark is the largest event time seen (or passed to
``advance``); it never goes back. A window closes when the watermark passes its
deadline (strictly greater):

- session windows (one per key): deadline = last activity + ``idle_timeout``, where
  activity is the watermark when the window last received an event;
- sliding windows (per host, ``[k*step, k*step + size)``): deadline =
  end + ``allowed_lateness``.

``advance(w)`` closes exactly what an event stamped ``w`` would close, so a clock-driven
watermark never changes the windows of an in-order stream; it only emits them sooner.
Windows closed together are emitted in ``(deadline, key)`` order.

Defined outcomes for awkward input:

- no key: the event joins no window and is counted in ``stats.unkeyed``;
- no time (``None``): the event takes the current watermark; before any watermark
  exists the watermark starts at 0.0 (a stream without timestamps then groups by key and
  closes windows only by ``max_lines``, eviction or ``flush``); counted in
  ``stats.untimed``;
- late (sliding only; an event some of whose windows have already closed): it joins the
  windows still open and is also returned at once as a one-item window with
  ``closed_by="late"`` (``start == end ==`` its time), counted in ``stats.late``;
- too many open windows (``max_open_windows``): the oldest (smallest deadline) is closed
  early with ``closed_by="evicted"``; a sliding window evicted before its end may come
  back as a second, partial window for the same range;
- ``max_lines`` items: the window closes (``closed_by="max_lines"``) and the key's next
  event opens a new one (for sliding windows: a new window over the same range).

Wall-clock idle closing (serving only): a :class:`SessionWindower` built with a
``clock`` stamps each window with the clock's time of its key's last event, and
:meth:`Windower.close_idle` closes (``closed_by="idle_wall"``) the windows whose key has
had no event for longer than a given number of clock seconds, oldest first. Offline
replays never pass a clock, so their windows depend on event time alone. Sliding
windows ignore it: their watermark already moves with the wall clock when served.
"""

from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from logsieve.config import WindowConfig
from logsieve.errors import DataError

__all__ = [
    "CloseReason",
    "SessionWindower",
    "SlidingWindower",
    "Window",
    "WindowStats",
    "Windower",
    "make_windower",
    "replay",
]

T = TypeVar("T")

CloseReason = Literal["idle", "idle_wall", "watermark", "max_lines", "evicted", "flush", "late"]


@dataclass(slots=True)
class Window(Generic[T]):
    """A closed window: its key, time span, items in arrival order and why it closed.

    Session windows span their first to last event time; sliding windows their range
    ``[start, end)``. ``items`` are whatever the caller passed to :meth:`Windower.add`.
    """

    key: str
    start: float
    end: float
    items: list[T]
    closed_by: CloseReason = "flush"


@dataclass(slots=True)
class WindowStats:
    """Counters of one windower (all monotone)."""

    events: int = 0
    untimed: int = 0
    unkeyed: int = 0
    late: int = 0
    opened: int = 0
    max_open: int = 0
    closed: dict[str, int] = field(default_factory=dict)  # by CloseReason, "late" excluded

    @property
    def evicted(self) -> int:
        return self.closed.get("evicted", 0)


class _Open(Generic[T]):
    """An open window with its deadline, an id that marks stale heap entries and the
    clock time of its last event (session windows with a clock only)."""

    __slots__ = ("deadline", "seen", "serial", "window")

    def __init__(self, window: Window[T], deadline: float, serial: int) -> None:
        self.window = window
        self.deadline = deadline
        self.serial = serial
        self.seen = 0.0


class Windower(ABC, Generic[T]):
    """Common interface and bookkeeping of the session and sliding windowers.

    Not thread-safe: one windower belongs to one task.
    """

    _open: Mapping[Any, _Open[T]]  # the subclass's open windows, by its own key

    def __init__(self, config: WindowConfig) -> None:
        self.config = config
        self.stats = WindowStats()
        self._watermark: float | None = None

    @property
    def watermark(self) -> float | None:
        """Largest event time seen or advanced to; ``None`` before the first."""
        return self._watermark

    @property
    @abstractmethod
    def open_windows(self) -> int:
        """Number of windows currently open."""

    def open_items(self) -> Iterator[list[T]]:
        """The item list of each open window, for relabelling items in place (a
        served model reloaded with other template ids). Replace items only: adding or
        removing them would bypass ``max_lines`` and the counters."""
        for state in self._open.values():
            yield state.window.items

    def add(self, time: float | None, keys: Sequence[str], item: T) -> list[Window[T]]:
        """Add one event under each of ``keys``; return the windows that closed."""
        stats = self.stats
        stats.events += 1
        out: list[Window[T]] = []
        if time is None:
            stats.untimed += 1
            if self._watermark is None:
                self._watermark = 0.0
            t = self._watermark
        else:
            t = _check_time(time)
            self._move_watermark(t, out)
        if not keys:
            stats.unkeyed += 1
        else:
            unique = keys if len(keys) == 1 else tuple(dict.fromkeys(keys))
            for key in unique:
                self._place(t, key, item, out)
            n_open = self.open_windows
            if n_open > stats.max_open:
                stats.max_open = n_open
        if out:  # most events close nothing: skip the call (the serving hot path)
            self._count(out)
        return out

    def advance(self, watermark: float) -> list[Window[T]]:
        """Move the watermark to ``watermark`` (if later) and return what closes.

        Closes exactly what an event stamped ``watermark`` would close; for streaming,
        call it from a clock (e.g. now minus the expected delivery delay) so windows
        close when no events arrive.
        """
        out: list[Window[T]] = []
        self._move_watermark(_check_time(watermark), out)
        self._count(out)
        return out

    def close_idle(self, max_idle: float) -> list[Window[T]]:
        """Close the windows whose key had no event for more than ``max_idle`` seconds of
        the windower's clock (``closed_by="idle_wall"``), least recently active first.

        Only session windowers built with a ``clock`` hold such windows; others return
        nothing. The cost is the number of windows closed, not of windows open.
        """
        out = self._close_idle(max_idle)
        self._count(out)
        return out

    def _close_idle(self, max_idle: float) -> list[Window[T]]:
        return []

    def flush(self) -> list[Window[T]]:
        """Close every open window (``closed_by="flush"``), in ``(deadline, key)`` order."""
        out = self._close_all()
        self._count(out)
        return out

    def _move_watermark(self, t: float, out: list[Window[T]]) -> None:
        if self._watermark is None or t > self._watermark:
            self._watermark = t
            self._expire(t, out)

    def _count(self, out: list[Window[T]]) -> None:
        closed = self.stats.closed
        for w in out:
            if w.closed_by == "late":
                self.stats.late += 1
            else:
                closed[w.closed_by] = closed.get(w.closed_by, 0) + 1

    @abstractmethod
    def _expire(self, watermark: float, out: list[Window[T]]) -> None:
        """Close windows whose deadline is before ``watermark``, in order."""

    @abstractmethod
    def _place(self, t: float, key: str, item: T, out: list[Window[T]]) -> None:
        """Put one event under one key (the watermark is already moved)."""

    @abstractmethod
    def _close_all(self) -> list[Window[T]]:
        """Close and return every open window, flush-ordered."""


def _check_time(t: float) -> float:
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
        raise DataError(f"event time {t!r}: a finite number of seconds (or None)")
    return float(t)


class SessionWindower(Windower[T]):
    """One window per key, closed by idle time, ``max_lines``, eviction or flush.

    ``clock`` (serving): a monotonic clock read once per event, so that
    :meth:`close_idle` can close a key's window after wall-clock quiet.
    """

    def __init__(self, config: WindowConfig, clock: Callable[[], float] | None = None) -> None:
        super().__init__(config)
        # Every event moves its key to the end with deadline = watermark + idle, and
        # the watermark never goes back, so this order is deadline order: expiry and
        # eviction both take from the front. The clock never goes back either, so it
        # is also the order of the last event's clock time: idle closing takes from
        # the front too, and stops at the first window still active.
        self._open: OrderedDict[str, _Open[T]] = OrderedDict()
        self._clock = clock
        # A lower bound of the earliest deadline: the front's deadline never decreases
        # (the watermark does not go back), so most events skip _expire's walk.
        self._min_deadline = -math.inf
        self._idle_timeout = config.idle_timeout  # read per event (the config is frozen)
        self._max_lines = config.max_lines

    @property
    def open_windows(self) -> int:
        return len(self._open)

    def add(self, time: float | None, keys: Sequence[str], item: T) -> list[Window[T]]:
        """:meth:`Windower.add`; an event with a finite float time and one key whose
        window is open (nearly every served line) takes a shorter path to the same
        result: the generic one costs ~2 µs per line in calls and lookups."""
        state = self._open.get(keys[0]) if len(keys) == 1 else None
        # time - time is 0.0 for a finite float only (nan for inf and nan).
        if state is None or type(time) is not float or time - time != 0.0:
            return super().add(time, keys, item)
        self.stats.events += 1
        out: list[Window[T]] = []
        watermark = self._watermark
        if watermark is None or time > watermark:
            self._watermark = watermark = time
            if time > self._min_deadline:
                self._expire(time, out)
                if out:  # it may have closed this key's window: the generic placing
                    # (no new maximum of open windows: expiry closed one at least)
                    self._place(time, keys[0], item, out)
                    self._count(out)
                    return out
        # Window.add's _place for a key with an open window, inlined.
        key = keys[0]
        self._open.move_to_end(key)
        state.deadline = watermark + self._idle_timeout
        if self._clock is not None:
            state.seen = self._clock()
        window = state.window
        items = window.items
        items.append(item)
        if time < window.start:
            window.start = time
        elif time > window.end:
            window.end = time
        if len(items) >= self._max_lines:
            del self._open[key]
            window.closed_by = "max_lines"
            out.append(window)
            self._count(out)
        return out

    def _expire(self, watermark: float, out: list[Window[T]]) -> None:
        if watermark <= self._min_deadline:
            return
        batch: list[_Open[T]] = []
        front = None
        for state in self._open.values():
            if state.deadline >= watermark:
                front = state
                break
            batch.append(state)
        # Windows opened from now on get deadline >= watermark + idle_timeout.
        self._min_deadline = (
            front.deadline if front is not None else watermark + self.config.idle_timeout
        )
        if not batch:
            return
        batch.sort(key=lambda s: (s.deadline, s.window.key))
        for state in batch:
            del self._open[state.window.key]
            state.window.closed_by = "idle"
            out.append(state.window)

    def _place(self, t: float, key: str, item: T, out: list[Window[T]]) -> None:
        assert self._watermark is not None  # set by add() before placing
        deadline = self._watermark + self.config.idle_timeout
        state = self._open.get(key)
        if state is None:
            if len(self._open) >= self.config.max_open_windows:
                _, oldest = self._open.popitem(last=False)
                oldest.window.closed_by = "evicted"
                out.append(oldest.window)
            state = _Open(Window(key, t, t, []), deadline, 0)
            self._open[key] = state
            self.stats.opened += 1
        else:
            self._open.move_to_end(key)
            state.deadline = deadline
        if self._clock is not None:
            state.seen = self._clock()
        window = state.window
        window.items.append(item)
        if t < window.start:
            window.start = t
        elif t > window.end:
            window.end = t
        if len(window.items) >= self.config.max_lines:
            del self._open[key]
            window.closed_by = "max_lines"
            out.append(window)

    def _close_idle(self, max_idle: float) -> list[Window[T]]:
        if self._clock is None:
            return []
        cutoff = self._clock() - max_idle
        batch: list[_Open[T]] = []
        for state in self._open.values():
            if state.seen >= cutoff:
                break
            batch.append(state)
        for state in batch:
            del self._open[state.window.key]
            state.window.closed_by = "idle_wall"
        return [s.window for s in batch]

    def close_key(self, key: str, reason: CloseReason) -> Window[T] | None:
        """Close ``key``'s open window now, as ``reason`` (a restart re-forming a window
        exactly as it closed before); None if the key has none."""
        state = self._open.pop(key, None)
        if state is None:
            return None
        state.window.closed_by = reason
        self._count([state.window])
        return state.window

    def _close_all(self) -> list[Window[T]]:
        states = sorted(self._open.values(), key=lambda s: (s.deadline, s.window.key))
        self._open.clear()
        for state in states:
            state.window.closed_by = "flush"
        return [s.window for s in states]


class SlidingWindower(Windower[T]):
    """Per-key time windows ``[k*step, k*step + size)``; an event joins each that covers it.

    A window closes once the watermark passes ``end + allowed_lateness``; empty windows
    are never created, so never emitted.
    """

    def __init__(self, config: WindowConfig) -> None:
        super().__init__(config)
        self._open: dict[tuple[str, int], _Open[T]] = {}
        # (deadline, key, k, serial): entries of windows closed early (max_lines,
        # eviction) go stale and are skipped when they surface.
        self._heap: list[tuple[float, str, int, int]] = []
        self._serial = 0

    @property
    def open_windows(self) -> int:
        return len(self._open)

    def covering(self, t: float) -> range:
        """The indices ``k`` of the windows ``[k*step, k*step + size)`` that contain ``t``."""
        step, size = self.config.step, self.config.size
        hi = math.floor(t / step)
        # Division rounding can put t on the wrong side of a boundary: fix by the
        # same multiplication that defines the window bounds.
        while hi * step > t:
            hi -= 1
        while (hi + 1) * step <= t:
            hi += 1
        lo = hi
        while (lo - 1) * step + size > t:
            lo -= 1
        return range(lo, hi + 1)

    def _pop_valid(self) -> _Open[T] | None:
        _, key, k, serial = heapq.heappop(self._heap)
        state = self._open.get((key, k))
        if state is None or state.serial != serial:
            return None
        del self._open[(key, k)]
        return state

    def _expire(self, watermark: float, out: list[Window[T]]) -> None:
        heap = self._heap
        while heap and heap[0][0] < watermark:
            state = self._pop_valid()
            if state is not None:
                state.window.closed_by = "watermark"
                out.append(state.window)

    def _place(self, t: float, key: str, item: T, out: list[Window[T]]) -> None:
        assert self._watermark is not None  # set by add() before placing
        config = self.config
        late = False
        for k in self.covering(t):
            state = self._open.get((key, k))
            if state is None:
                start = k * config.step
                end = start + config.size
                deadline = end + config.allowed_lateness
                if deadline < self._watermark:
                    late = True
                    continue
                while len(self._open) >= config.max_open_windows:
                    oldest = self._pop_valid()
                    if oldest is not None:
                        oldest.window.closed_by = "evicted"
                        out.append(oldest.window)
                self._serial += 1
                state = _Open(Window(key, start, end, []), deadline, self._serial)
                self._open[(key, k)] = state
                heapq.heappush(self._heap, (deadline, key, k, self._serial))
                self.stats.opened += 1
            state.window.items.append(item)
            if len(state.window.items) >= config.max_lines:
                del self._open[(key, k)]
                state.window.closed_by = "max_lines"
                out.append(state.window)
        if late:
            out.append(Window(key, t, t, [item], "late"))

    def _close_all(self) -> list[Window[T]]:
        out: list[Window[T]] = []
        while self._heap:
            state = self._pop_valid()
            if state is not None:
                state.window.closed_by = "flush"
                out.append(state.window)
        return out


def make_windower(config: WindowConfig, clock: Callable[[], float] | None = None) -> Windower[T]:
    """The windower for ``config.kind`` (type the result to fix the item type);
    ``clock`` enables :meth:`Windower.close_idle` on session windows (serving)."""
    if config.kind == "session":
        return SessionWindower(config, clock)
    return SlidingWindower(config)


def replay(
    config: WindowConfig, events: Iterable[tuple[float | None, Sequence[str], T]]
) -> Iterator[Window[T]]:
    """Offline windowing: feed ``(time, keys, item)`` events in order, then flush.

    Uses the same windower as serving, so it yields exactly the windows a stream of the
    same events would (late reports included).
    """
    windower: Windower[T] = make_windower(config)
    for time, keys, item in events:
        yield from windower.add(time, keys, item)
    yield from windower.flush()
