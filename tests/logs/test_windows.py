"""Windowing: key extraction, session and sliding semantics, and offline == streaming."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter, OrderedDict
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logsieve.config import WindowConfig
from logsieve.errors import ConfigError, DataError
from logsieve.logs.keys import UNKEYED_HOST, WINDOW_PRESETS, KeyExtractor, window_preset
from logsieve.logs.records import LogRecord
from logsieve.logs.windows import (
    SessionWindower,
    SlidingWindower,
    Window,
    Windower,
    make_windower,
    replay,
)

Event = tuple[float | None, Sequence[str], int]
Flat = tuple[str, float, float, list[int], str]


def session(**kw: Any) -> WindowConfig:
    return WindowConfig(kind="session", **{"idle_timeout": 10.0, **kw})


def sliding(**kw: Any) -> WindowConfig:
    return WindowConfig(kind="sliding", key_regex=None, **{"size": 10.0, "step": 5.0, **kw})


def flat(windows: Sequence[Window[int]]) -> list[Flat]:
    return [(w.key, w.start, w.end, list(w.items), w.closed_by) for w in windows]


def rec(text: str, host: str | None = None, time: float | None = None) -> LogRecord:
    return LogRecord(time=time, host=host, text=text)


# --- keys -------------------------------------------------------------------------------


def test_a_line_naming_two_blocks_belongs_to_both_in_order() -> None:
    keys = KeyExtractor(session())
    line = "ask 10.0.0.1 to delete blk_-42 blk_7 blk_-42"
    assert keys.keys(rec(line)) == ("blk_-42", "blk_7")


def test_key_field_wins_over_regex_and_missing_field_falls_back() -> None:
    keys = KeyExtractor(session(key_field="req"))
    line = "served blk_1"
    assert keys.keys(rec(line), {"req": "r-9"}) == ("r-9",)
    assert keys.keys(rec(line), {"req": b"r-\xff"}) == ("r-\ufffd",)
    assert keys.keys(rec(line), {"req": 42}) == ("42",)
    assert keys.keys(rec(line), {"req": True}) == ("blk_1",)  # bool is not a key
    assert keys.keys(rec(line), {"other": "x"}) == ("blk_1",)
    assert keys.keys(rec(line)) == ("blk_1",)
    assert keys.unkeyed == 0


def test_regex_group_is_the_key() -> None:
    keys = KeyExtractor(session(key_regex=r"req=(\w+)"))
    assert keys.keys(rec("req=a then req=b")) == ("a", "b")


def test_no_key_is_counted_and_joins_no_window() -> None:
    keys = KeyExtractor(session())
    assert keys.keys(rec("nothing to see")) == ()
    assert keys.unkeyed == 1
    w: Windower[int] = SessionWindower(session())
    assert w.add(1.0, (), 0) == []
    assert w.open_windows == 0 and w.stats.unkeyed == 1 and w.stats.events == 1


def test_sliding_keys_are_hosts() -> None:
    keys = KeyExtractor(sliding(key_field="host"))
    assert keys.keys(rec("x", host="n1"), {"host": "n2"}) == ("n2",)
    assert keys.keys(rec("x", host="n1"), {}) == ("n1",)
    assert keys.keys(rec("blk_1")) == (UNKEYED_HOST,)
    assert keys.unkeyed == 1


def test_presets() -> None:
    assert WINDOW_PRESETS["bgl"].size == 300 and WINDOW_PRESETS["bgl"].step == 60
    assert WINDOW_PRESETS["thunderbird"].size == 60 and WINDOW_PRESETS["thunderbird"].step == 30
    assert WINDOW_PRESETS["hdfs"].kind == "session"
    assert window_preset("bgl", allowed_lateness=0.0).allowed_lateness == 0.0
    with pytest.raises(ConfigError):
        window_preset("spirit")
    with pytest.raises(ConfigError):
        WindowConfig(max_open_windows=0)
    with pytest.raises(ConfigError):
        WindowConfig(idle_timeout=math.nan)
    with pytest.raises(ConfigError):
        sliding(size=3600.0, step=1.0)  # 3,600 windows per event


# --- sessions ---------------------------------------------------------------------------


def test_idle_timeout_on_event_time() -> None:
    w: Windower[int] = SessionWindower(session(idle_timeout=10.0))
    assert w.add(0.0, ["a"], 0) == []
    assert w.add(5.0, ["b"], 1) == []
    assert w.add(10.0, ["a"], 2) == []  # a gap of exactly idle_timeout keeps the session
    assert w.add(15.0, ["c"], 3) == []
    assert flat(w.add(19.5, ["c"], 4)) == [("b", 5.0, 5.0, [1], "idle")]
    assert flat(w.advance(20.0)) == []  # the watermark never goes back
    assert flat(w.advance(100.0)) == [
        ("a", 0.0, 10.0, [0, 2], "idle"),
        ("c", 15.0, 19.5, [3, 4], "idle"),
    ]
    assert w.open_windows == 0 and w.stats.closed == {"idle": 3}


def test_max_lines_splits_and_the_key_starts_again() -> None:
    w: Windower[int] = SessionWindower(session(max_lines=3, idle_timeout=100.0))
    out = [x for i in range(7) for x in w.add(float(i), ["a"], i)] + w.flush()
    assert flat(out) == [
        ("a", 0.0, 2.0, [0, 1, 2], "max_lines"),
        ("a", 3.0, 5.0, [3, 4, 5], "max_lines"),
        ("a", 6.0, 6.0, [6], "flush"),
    ]


def test_flush_closes_everything_in_deadline_then_key_order() -> None:
    w: Windower[int] = SessionWindower(session(idle_timeout=100.0))
    for i, key in enumerate(["z", "y", "x"]):
        w.add(1.0, [key], i)
    w.add(2.0, ["a"], 3)
    assert [x.key for x in w.flush()] == ["x", "y", "z", "a"]
    assert w.open_windows == 0 and w.flush() == []


def test_untimed_events_take_the_watermark() -> None:
    w: Windower[int] = SessionWindower(session(idle_timeout=10.0))
    w.add(None, ["a"], 0)  # no watermark yet: starts at 0.0
    assert w.watermark == 0.0
    w.add(50.0, ["b"], 1)
    w.add(None, ["b"], 2)
    assert w.stats.untimed == 2
    assert flat(w.flush()) == [("b", 50.0, 50.0, [1, 2], "flush")]
    assert w.stats.closed == {"idle": 1, "flush": 1}


def test_non_finite_times_are_data_errors() -> None:
    w: Windower[int] = SessionWindower(session())
    for bad in (math.nan, math.inf):
        with pytest.raises(DataError):
            w.add(bad, ["a"], 0)
        with pytest.raises(DataError):
            w.advance(bad)


def test_eviction_caps_open_windows_oldest_first() -> None:
    w: Windower[int] = SessionWindower(session(max_open_windows=2, idle_timeout=100.0))
    w.add(0.0, ["a"], 0)
    w.add(1.0, ["b"], 1)
    w.add(2.0, ["a"], 2)  # a is now the most recent
    assert flat(w.add(3.0, ["c"], 3)) == [("b", 1.0, 1.0, [1], "evicted")]
    assert w.open_windows == 2 and w.stats.evicted == 1 and w.stats.max_open == 2

    s: Windower[int] = SlidingWindower(sliding(max_open_windows=3))
    s.add(0.0, ["h1"], 0)  # opens [-5, 5) and [0, 10)
    out = s.add(0.0, ["h2"], 1)  # needs two more: room for one, then the oldest goes
    assert [(x.key, x.start, x.closed_by) for x in out] == [("h1", -5.0, "evicted")]
    assert s.open_windows == 3 and s.stats.evicted == 1


def test_windows_closing_together_come_out_sorted_by_key() -> None:
    w: Windower[int] = SessionWindower(session(idle_timeout=1.0))
    for i, key in enumerate(["k3", "k1", "k2"]):
        w.add(0.0, [key], i)
    assert [x.key for x in w.advance(5.0)] == ["k1", "k2", "k3"]


class ManualClock:
    """A monotonic clock the test moves: wall-clock idling without sleeping."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def test_wall_clock_idle_closes_quiet_keys_while_event_time_stands_still() -> None:
    clock = ManualClock()
    w: Windower[int] = SessionWindower(session(idle_timeout=86_400.0), clock)
    w.add(100.0, ["a"], 0)
    clock.now += 10
    w.add(100.0, ["b"], 1)
    clock.now += 10
    w.add(101.0, ["a"], 2)  # a is active again: b is now the quietest
    assert w.close_idle(15.0) == []  # b quiet 10 s, a 0 s
    clock.now += 6
    assert flat(w.close_idle(15.0)) == [("b", 100.0, 100.0, [1], "idle_wall")]
    clock.now += 100
    w.add(102.0, ["c"], 3)
    assert flat(w.close_idle(15.0)) == [("a", 100.0, 101.0, [0, 2], "idle_wall")]
    assert w.open_windows == 1 and w.watermark == 102.0
    w.add(103.0, ["a"], 4)  # a closed key's next line opens a new window
    assert flat(w.flush()) == [("c", 102.0, 102.0, [3], "flush"), ("a", 103.0, 103.0, [4], "flush")]
    assert w.stats.closed == {"idle_wall": 2, "flush": 2}


def test_wall_clock_idle_is_strict_and_leaves_event_time_closing_alone() -> None:
    clock = ManualClock()
    w: Windower[int] = SessionWindower(session(idle_timeout=10.0), clock)
    w.add(0.0, ["a"], 0)
    clock.now += 30.0
    assert w.close_idle(30.0) == []  # exactly max_idle quiet: still open
    assert flat(w.advance(11.0)) == [("a", 0.0, 0.0, [0], "idle")]  # event time still works
    assert w.close_idle(0.0) == []


class CountingOrderedDict(OrderedDict[str, Any]):
    """Counts the open windows idle closing looks at."""

    looked = 0

    def values(self) -> Any:
        for v in super().values():
            CountingOrderedDict.looked += 1
            yield v


def test_wall_clock_idle_costs_the_windows_closed_not_the_windows_open() -> None:
    clock = ManualClock()
    w: SessionWindower[int] = SessionWindower(session(max_open_windows=100_000), clock)
    counting: CountingOrderedDict = CountingOrderedDict()
    w._open = counting  # type: ignore[assignment]  # observe the scan: no timing involved
    for i in range(100_000):
        if i == 99_990:
            clock.now += 60.0  # the last 10 keys are active later
        w.add(1.0, [f"k{i}"], i)
    clock.now += 30.0
    CountingOrderedDict.looked = 0
    assert w.close_idle(100.0) == [] and CountingOrderedDict.looked == 1
    clock.now += 40.0
    closed = w.close_idle(100.0)
    assert len(closed) == 99_990 and w.open_windows == 10
    assert [x.key for x in closed[:2]] == ["k0", "k1"]  # least recently active first
    CountingOrderedDict.looked = 0
    assert w.close_idle(100.0) == [] and CountingOrderedDict.looked == 1


def test_idle_closing_needs_a_clock_and_session_windows() -> None:
    plain: Windower[int] = SessionWindower(session())
    plain.add(0.0, ["a"], 0)
    assert plain.close_idle(0.0) == []  # offline: no clock, event time only
    clock = ManualClock()
    s: Windower[int] = make_windower(sliding(), clock)
    s.add(0.0, ["h"], 0)
    clock.now += 1_000.0
    assert s.close_idle(1.0) == [] and s.open_windows == 2
    clocked: Windower[int] = make_windower(session(), clock)
    clocked.add(0.0, ["a"], 0)
    clock.now += 2.0
    assert [x.closed_by for x in clocked.close_idle(1.0)] == ["idle_wall"]


# --- sliding ----------------------------------------------------------------------------


def test_sliding_membership_each_event_in_size_over_step_windows() -> None:
    cfg = sliding(size=10.0, step=5.0, allowed_lateness=0.0)
    out = list(replay(cfg, [(12.0, ["h"], 0), (14.9, ["h"], 1), (15.0, ["h"], 2)]))
    assert flat(out) == [
        ("h", 5.0, 15.0, [0, 1], "flush"),
        ("h", 10.0, 20.0, [0, 1, 2], "flush"),
        ("h", 15.0, 25.0, [2], "flush"),
    ]
    w = SlidingWindower[int](cfg)
    for t in (0.0, 0.1, 4.999, 5.0, -3.0, 1e9 + 0.3, 0.3 * 3):
        ks = w.covering(t)
        assert len(ks) == 2
        assert all(k * 5.0 <= t < k * 5.0 + 10.0 for k in ks)


def test_sliding_closes_past_end_plus_lateness_and_never_emits_empty() -> None:
    w: Windower[int] = SlidingWindower(sliding(allowed_lateness=2.0))
    w.add(1.0, ["h"], 0)  # [-5, 5) and [0, 10)
    assert w.add(7.0, ["h"], 1) == []  # [-5,5) has deadline 7: not passed yet
    assert flat(w.add(7.5, ["h"], 2)) == [("h", -5.0, 5.0, [0], "watermark")]
    assert flat(w.advance(100.0)) == [("h", 0.0, 10.0, [0, 1, 2], "watermark"),
                                      ("h", 5.0, 15.0, [1, 2], "watermark")]  # fmt: skip


def test_late_event_is_reported_not_dropped() -> None:
    w: Windower[int] = SlidingWindower(sliding(allowed_lateness=2.0))
    w.add(1.0, ["h"], 0)
    w.add(11.0, ["h"], 1)  # closes [-5,5) (deadline 7); [0,10) has deadline 12
    out = w.add(9.0, ["h"], 2)  # out of order but within lateness: [0,10) and [5,15)
    assert out == [] and w.stats.late == 0
    w.add(12.5, ["h"], 3)  # closes [0, 10)
    out = w.add(9.5, ["h"], 4)  # [0,10) closed, [5,15) (deadline 17) still open
    assert flat(out) == [("h", 9.5, 9.5, [4], "late")]
    out = w.add(2.0, ["h"], 5)  # wholly late
    assert flat(out) == [("h", 2.0, 2.0, [5], "late")]
    assert w.stats.late == 2
    windows = {x.start: x.items for x in w.flush()}
    assert windows[5.0] == [1, 2, 3, 4]  # the partly late event joined the open window


def test_untimed_sliding_event_uses_the_watermark() -> None:
    w: Windower[int] = SlidingWindower(sliding(allowed_lateness=0.0))
    w.add(12.0, ["h"], 0)
    w.add(None, ["h"], 1)
    assert [x.items for x in w.flush()] == [[0, 1], [0, 1]]


def test_make_windower_picks_by_kind() -> None:
    assert isinstance(make_windower(session()), SessionWindower)
    assert isinstance(make_windower(sliding()), SlidingWindower)


# --- THE property: streaming (advance interleaved) == offline replay ----------------------


@st.composite
def streams(draw: st.DrawFn, disorder: float) -> list[Event]:
    n = draw(st.integers(0, 40))
    t = draw(st.floats(0.0, 100.0))
    events: list[Event] = []
    for i in range(n):
        t += draw(st.sampled_from([0.0, 0.5, 1.0, 3.0, 7.0, 20.0]))
        keys = draw(st.lists(st.sampled_from("abcde"), max_size=3))
        if draw(st.integers(0, 9)) == 0:
            time: float | None = None
        else:
            time = t - draw(st.floats(0.0, disorder)) if disorder else t
        events.append((time, keys, i))
    return events


configs = st.one_of(
    st.builds(
        lambda idle, lines, cap: session(idle_timeout=idle, max_lines=lines, max_open_windows=cap),
        st.sampled_from([1.0, 5.0, 30.0]),
        st.sampled_from([2, 5, 10_000]),
        st.sampled_from([2, 4, 100]),
    ),
    st.builds(
        lambda size, frac, late, lines, cap: sliding(
            size=size,
            step=size * frac,
            allowed_lateness=late,
            max_lines=lines,
            max_open_windows=cap,
        ),
        st.sampled_from([5.0, 10.0, 30.0]),
        st.sampled_from([1.0, 0.5, 0.3]),
        st.sampled_from([0.0, 4.0]),
        st.sampled_from([3, 10_000]),
        st.sampled_from([3, 100]),
    ),
)


@settings(max_examples=150, deadline=None)
@given(config=configs, data=st.data())
def test_streaming_with_advances_equals_replay(config: WindowConfig, data: st.DataObject) -> None:
    # Sessions are checked on in-order streams, sliding ones with disorder within lateness.
    events = data.draw(streams(config.allowed_lateness if config.kind == "sliding" else 0.0))
    expected = flat(list(replay(config, events)))

    # The watermark replay has after each event: a clock-driven advance() may reach it
    # (no further) before the event arrives.
    ref: Windower[int] = make_windower(config)
    after: list[float] = []
    for time, keys, item in events:
        ref.add(time, keys, item)
        assert ref.watermark is not None
        after.append(ref.watermark)

    stream: Windower[int] = make_windower(config)
    got: list[Window[int]] = []
    for (time, keys, item), target in zip(events, after, strict=True):
        for frac in data.draw(st.lists(st.floats(-0.5, 1.0), max_size=2)):
            low = stream.watermark if stream.watermark is not None else 0.0
            got += stream.advance(min(target, low + frac * (target - low)))
        got += stream.add(time, keys, item)
    final: bool = data.draw(st.booleans())
    if after and final:
        got += stream.advance(after[-1])
    got += stream.flush()
    assert flat(got) == expected
    ref.flush()
    assert stream.stats == ref.stats


@settings(max_examples=60, deadline=None)
@given(config=configs.filter(lambda c: c.kind == "sliding"), data=st.data())
def test_sliding_every_event_in_each_covering_window(
    config: WindowConfig, data: st.DataObject
) -> None:
    # No max_lines or cap: nothing closes early, so membership is exact.
    config = WindowConfig(
        kind="sliding",
        key_regex=None,
        size=config.size,
        step=config.step,
        allowed_lateness=config.allowed_lateness,
    )
    events = data.draw(streams(config.allowed_lateness))
    w: Windower[int] = make_windower(config)
    seen: Counter[int] = Counter()
    times: dict[int, float] = {}
    closed: list[Window[int]] = []
    for time, keys, item in events:
        closed += w.add(time, keys, item)
        assert w.watermark is not None
        times[item] = time if time is not None else w.watermark
    for win in closed + w.flush():
        assert win.closed_by != "late"
        assert win.items and len(set(win.items)) == len(win.items)
        for item in win.items:
            assert win.start <= times[item] < win.end
            seen[item] += 1
    windower = SlidingWindower[int](config)
    for _, keys, item in events:
        assert seen[item] == len(set(keys)) * len(windower.covering(times[item]))


# --- real data --------------------------------------------------------------------------

_HDFS_TIME = re.compile(r"^(\d{6}) (\d{6}) ")


def _hdfs_events(path: Path) -> list[tuple[float, tuple[str, ...], int]]:
    keys = KeyExtractor(WINDOW_PRESETS["hdfs"])
    events = []
    with path.open(encoding="utf-8", newline="") as fh:
        for i, line in enumerate(fh):
            line = line.rstrip("\r\n")
            m = _HDFS_TIME.match(line)
            assert m, line
            when = datetime.strptime(m[1] + m[2], "%y%m%d%H%M%S").replace(tzinfo=timezone.utc)
            events.append((when.timestamp(), keys.keys(rec(line[m.end() :])), i))
    return events


def _block_labels(path: Path) -> dict[str, int]:
    with path.open(encoding="utf-8", newline="") as fh:
        return {row["BlockId"]: int(row["NumLines"]) for row in csv.DictReader(fh)}


@pytest.mark.data
def test_hdfs_sessions_are_the_labelled_blocks(shared_data: Path) -> None:
    raw = shared_data / "hdfs" / "raw"
    # HDFS_20000: every block's lines are in the file, so counts match exactly.
    windows = list(replay(WINDOW_PRESETS["hdfs"], _hdfs_events(raw / "HDFS_20000.log")))
    assert {w.key: len(w.items) for w in windows} == _block_labels(
        raw / "HDFS_20000.block_labels.csv"
    )
    assert len(windows) == len({w.key for w in windows})
    # HDFS_5k: the same blocks; its NumLines count lines of the full HDFS.log (mostly 3
    # per block) that this excerpt lacks, so counts can only be bounded.
    events = _hdfs_events(raw / "HDFS_5k.log")
    windows = list(replay(WINDOW_PRESETS["hdfs"], events))
    labels = _block_labels(raw / "HDFS_5k.block_labels.csv")
    assert sorted(w.key for w in windows) == sorted(labels)
    assert all(len(w.items) <= labels[w.key] for w in windows)
    assert sum(len(w.items) for w in windows) == len(events)


@pytest.mark.data
def test_bgl_sliding_windows_cover_each_event_size_over_step_times(shared_data: Path) -> None:
    config = WINDOW_PRESETS["bgl"]
    times: list[float] = []
    events: list[Event] = []
    with (shared_data / "bgl" / "raw" / "BGL_5000.log").open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            fields = line.split(" ", 4)
            times.append(float(fields[1]))
            events.append((times[-1], (fields[3],), i))
    windows = list(replay(config, events))
    per_event = Counter(item for w in windows for item in w.items)
    per_window = round(config.size / config.step)
    assert all(per_event[i] == per_window for i in range(len(events)))
    assert all(w.start <= times[i] < w.end for w in windows for i in w.items)
    assert all(w.closed_by in ("watermark", "flush") for w in windows)
    hosts = {e[1][0] for e in events}
    assert {w.key for w in windows} == hosts


class _GenericSessions(SessionWindower[int]):
    """The session windower with the base class's ``add`` only: the reference for
    :meth:`SessionWindower.add`'s shorter path for an event whose key is open."""

    def add(self, time: float | None, keys: Sequence[str], item: int) -> list[Window[int]]:
        return Windower.add(self, time, keys, item)


_times = st.one_of(
    st.floats(min_value=0.0, max_value=200.0),  # mostly a float, as served
    st.integers(min_value=0, max_value=200),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.tuples(_times, st.lists(st.sampled_from("abcde"), max_size=3)), max_size=80),
    max_lines=st.integers(min_value=1, max_value=6),
    max_open=st.integers(min_value=1, max_value=4),
    idle=st.sampled_from([0.5, 5.0, 30.0]),
    clocked=st.booleans(),
)
def test_session_add_fast_path_equals_generic_add(
    events: list[tuple[float | None, list[str]]],
    max_lines: int,
    max_open: int,
    idle: float,
    clocked: bool,
) -> None:
    """Same windows (keys, spans, items, reasons, in order), counters and idle-closing
    state, whatever the mix of keys, times, line and open-window caps."""
    config = session(idle_timeout=idle, max_lines=max_lines, max_open_windows=max_open)
    ticks = iter(range(1_000_000))
    clock = (lambda: float(next(ticks))) if clocked else None
    fast: SessionWindower[int] = SessionWindower(config, clock)
    ticks_ref = iter(range(1_000_000))
    clock_ref = (lambda: float(next(ticks_ref))) if clocked else None
    ref = _GenericSessions(config, clock_ref)
    for i, (t, keys) in enumerate(events):
        got, want = fast.add(t, tuple(keys), i), ref.add(t, tuple(keys), i)
        assert flat(got) == flat(want)
        assert fast.watermark == ref.watermark
    assert fast.stats == ref.stats
    assert [s.seen for s in fast._open.values()] == [s.seen for s in ref._open.values()]
    assert flat(fast.close_idle(3.0)) == flat(ref.close_idle(3.0))
    assert flat(fast.flush()) == flat(ref.flush())
