"""Incidents: overlapping anomalous sliding windows of a host become one flag.

Windows come from the real :class:`SlidingWindower` (so a line in several windows is
the same item, as in serving and offline scoring); a window's score is set by the test
(``inf`` when it holds a "bad" line), which is what the merger reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest

from logsieve.config import WindowConfig
from logsieve.errors import ConfigError, DataError
from logsieve.incidents import Incident, IncidentMerger
from logsieve.logs.pipeline import Event
from logsieve.logs.windows import Window, make_windower
from logsieve.verdict import ScoredWindow, make_flag_id

MODEL = "m-1"
THRESHOLD = 1.0
BGL = WindowConfig(kind="sliding", key_regex=None, size=300.0, step=60.0, allowed_lateness=10.0)


def stream(
    bad_at: Iterable[float], until: float = 1_800.0, host: str = "h1"
) -> list[Window[Event]]:
    """One line every 20 s on ``host``; the lines at ``bad_at`` are "bad"; every
    window, in closing order."""
    bad = set(bad_at)
    windower = make_windower(BGL)
    out: list[Window[Event]] = []
    t = 0.0
    while t < until:
        text = f"BAD at {t}" if t in bad else f"ok at {t}"
        out += windower.add(t, [host], Event(t, -1 if t in bad else 1, text))
        t += 20.0
    return out + windower.flush()


def scored(window: Window[Event]) -> ScoredWindow:
    """Score ``inf`` when the window holds a bad line, else 0.5 (normal)."""
    bad = any(e.template_id < 0 for e in window.items)
    return ScoredWindow(
        key=window.key,
        start=window.start,
        end=window.end,
        lines=[e.text for e in window.items],
        template_ids=[e.template_id for e in window.items],
        templates=["BAD" if e.template_id < 0 else "ok" for e in window.items],
        score=math.inf if bad else 0.5,
        threshold=THRESHOLD,
        # A line's probability differs between windows: the merge keeps its highest.
        token_probs=[0.9 if e.template_id < 0 else 0.1 + window.start / 1e5 for e in window.items],
    )


def incidents(windows: list[Window[Event]], merger: IncidentMerger | None = None) -> list[Incident]:
    merger = merger or IncidentMerger.for_windows(BGL, MODEL)
    out: list[Incident] = []
    for w in windows:
        out += merger.push(scored(w), w.items)[1]
    return out + merger.flush()


def test_one_bad_line_in_five_overlapping_windows_is_one_flag_listing_it_once() -> None:
    windows = stream([640.0])
    assert sum(scored(w).anomaly for w in windows) == 5  # size / step windows hold it
    (incident,) = incidents(windows)
    sw = incident.window
    assert incident.windows == 5
    assert sw.lines.count("BAD at 640.0") == 1 and len(sw.lines) == len(set(sw.lines))
    assert (sw.start, sw.end) == (360.0, 900.0)  # the five windows' span
    assert sw.score == math.inf and sw.anomaly
    # Every line of the span once: 360..880 every 20 s.
    assert sorted(sw.lines, key=lambda x: float(x.split()[-1]))[0] == "ok at 360.0"
    assert len(sw.lines) == (900 - 360) // 20
    first = next(w for w in windows if scored(w).anomaly)
    assert incident.flag_id == make_flag_id(
        MODEL, "h1", first.start, first.end, scored(first).lines
    )
    # Evidence deduplicated: the bad line first, then each other line once.
    top = [sw.lines[i] for i in sw.evidence(10)]
    assert top[0] == "BAD at 640.0" and len(top) == len(set(top)) == 10
    # A line's probability is its highest over the windows it was in.
    i = sw.lines.index("ok at 600.0")
    assert sw.token_probs[i] == pytest.approx(0.1 + 600.0 / 1e5)


def test_two_incidents_on_one_host_give_two_flags_with_different_ids() -> None:
    windows = stream([300.0, 1200.0])
    a, b = incidents(windows)
    assert a.flag_id != b.flag_id
    assert "BAD at 300.0" in a.window.lines and "BAD at 300.0" not in b.window.lines
    assert "BAD at 1200.0" in b.window.lines and a.window.end < b.window.start
    assert a.windows == b.windows == 5


def test_replaying_the_stream_gives_the_same_ids() -> None:
    first = [(i.flag_id, i.window.start, i.window.end, len(i.window.lines))
             for i in incidents(stream([300.0, 360.0, 1200.0]))]  # fmt: skip
    again = [(i.flag_id, i.window.start, i.window.end, len(i.window.lines))
             for i in incidents(stream([300.0, 360.0, 1200.0]))]  # fmt: skip
    assert first == again and len(first) == 2  # 300 and 360 share windows: one incident
    other_host = incidents(stream([300.0], host="h2"))
    assert other_host[0].flag_id not in {x[0] for x in first}


def test_a_normal_window_ends_the_incident_at_once() -> None:
    merger = IncidentMerger.for_windows(BGL, MODEL)
    windows = stream([640.0])
    emitted: list[tuple[int, list[Incident]]] = []
    for n, w in enumerate(windows):
        flag_id, done = merger.push(scored(w), w.items)
        assert (flag_id is not None) == scored(w).anomaly
        if done:
            emitted.append((n, done))
    (n, (incident,)), = emitted  # fmt: skip
    assert not scored(windows[n]).anomaly and scored(windows[n - 1]).anomaly
    assert merger.pending == 0 and merger.flush() == []
    assert incident.window.end == windows[n - 1].end


def test_expire_emits_once_no_window_can_join_and_changes_nothing() -> None:
    windows = [w for w in stream([640.0]) if w.end <= 900.0]  # the host goes quiet
    merger = IncidentMerger.for_windows(BGL, MODEL)
    for w in windows:
        assert merger.push(scored(w), w.items)[1] == []
    assert merger.pending == 1
    assert merger.expire(900.0 + 300.0 + 10.0) == []  # a window starting at 900 could join
    (incident,) = merger.expire(900.0 + 300.0 + 10.0 + 0.001)
    assert incident == incidents(windows)[0] and merger.pending == 0


def test_max_windows_bounds_an_ongoing_incident() -> None:
    every_line_bad = [t * 20.0 for t in range(90)]
    found = incidents(stream(every_line_bad))
    limit = IncidentMerger.for_windows(BGL, MODEL).max_windows
    assert limit == 10
    assert all(i.windows <= limit for i in found) and len(found) >= 3
    assert len({i.flag_id for i in found}) == len(found)
    # Consecutive incidents of the ongoing problem: nothing lost, nothing twice.
    windows = stream(every_line_bad)
    assert sum(i.windows for i in found) == len(windows)


def test_session_windows_are_one_incident_each_with_the_windows_id() -> None:
    merger = IncidentMerger.for_windows(WindowConfig(kind="session"), MODEL)
    w = next(w for w in stream([640.0]) if scored(w).anomaly)
    flag_id, (incident,) = merger.push(scored(w), w.items)
    assert incident.windows == 1 and incident.window == scored(w)
    assert (
        flag_id == incident.flag_id == make_flag_id(MODEL, w.key, w.start, w.end, scored(w).lines)
    )
    assert merger.pending == 0
    normal = stream([])[0]
    assert merger.push(scored(normal), normal.items) == (None, [])


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        IncidentMerger(MODEL, max_windows=0)
    with pytest.raises(ConfigError):
        IncidentMerger(MODEL, reach=math.nan)
    w = stream([640.0])[0]
    with pytest.raises(DataError):
        IncidentMerger(MODEL).push(scored(w), w.items[:-1])
