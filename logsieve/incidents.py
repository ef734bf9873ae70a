"""Incidents: the anomalous windows of one key that overlap, merged into one flag.

With sliding windows (``size`` 300 s every ``step`` 60 s per host) one bad line sits in
``size / step`` overlapping windows; flagged one by one it would make five flags listing
the same line. :class:`IncidentMerger` turns the scored windows, in the order they
closed, into incidents; ``logsieve score`` and ``logsieve serve`` both use it, so the
same stream gives the same incidents offline and served.

The rule, per key (sliding windows):

- an anomalous window *joins* the key's open incident when it starts at or before the
  incident's end (overlapping or touching) and the incident holds fewer than
  ``max_windows`` windows; otherwise it *opens* a new incident (emitting the open one);
- a normal window of the key *ends* its open incident (emitted at once);
- an incident whose key can no longer produce a window that would join it (event time
  has passed its end + ``size`` + ``allowed_lateness``: :meth:`IncidentMerger.expire`,
  which the server calls from its clock) is emitted then; offline, at the end of the
  file (:meth:`IncidentMerger.flush`), which gives the same incidents;
- ``max_windows`` (default ``2 * ceil(size / step)``, 10 for 300/60 s) bounds an
  incident, so an ongoing problem gives a flag at least every ``max_windows`` windows.

So a flag waits for the key's next normal window: about ``size + step`` seconds of
event time after the first anomalous window closed, for an isolated bad line. Windows
are pushed as they closed, ``late`` one-line windows included (one can end or join an
incident early: out-of-order input has no replay guarantee anyway).

An incident lists each line once (a line in several windows is the same item of the
windower, recognised by identity), with its highest per-line probability over those
windows; its score is the highest window score; it spans the earliest window start to
the latest window end. Its id is the id :func:`~logsieve.verdict.make_flag_id` gives
its *first* window, so it is known as soon as that window is scored (pass-through
records of every window of the incident carry it), is the same on every replay of
the same stream, and differs between incidents (no two incidents of a key start with
the same window). Session windows are never merged: one window is one incident, with
the window's own id.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from logsieve.config import WindowConfig
from logsieve.errors import ConfigError, DataError
from logsieve.verdict import ScoredWindow, make_flag_id

__all__ = ["Incident", "IncidentMerger"]


@dataclass(frozen=True, slots=True)
class Incident:
    """One flag's worth of anomaly: ``window`` is the merged view (lines once, score the
    highest), ``windows`` how many scored windows it merges, ``flag_id`` its stable id."""

    flag_id: str
    window: ScoredWindow
    windows: int


class _Building:
    """An open incident: the merged lines so far, with the items that identify them."""

    __slots__ = (
        "by_score", "end", "first", "flag_id", "index", "items", "lines", "probs", "rare",
        "score", "start", "template_ids", "templates", "windows",
    )  # fmt: skip

    def __init__(self, flag_id: str, window: ScoredWindow, items: Sequence[object]) -> None:
        self.flag_id = flag_id
        self.first = window
        self.start, self.end, self.score = window.start, window.end, window.score
        self.windows = 1
        self.lines = list(window.lines)
        self.template_ids = list(window.template_ids)
        self.templates = list(window.templates)
        self.probs = [float(p) for p in window.token_probs]
        self.rare = list(window.rare_new) or [False] * len(self.lines)
        self.by_score = "score" in window.reasons
        # Holding the items keeps their ids unique for as long as the incident is open.
        self.items = list(items)
        self.index = {id(item): i for i, item in enumerate(self.items)}

    def add(self, window: ScoredWindow, items: Sequence[object]) -> None:
        self.windows += 1
        self.start = min(self.start, window.start)
        self.end = max(self.end, window.end)
        self.score = _max(self.score, window.score)
        self.by_score = self.by_score or "score" in window.reasons
        rare = list(window.rare_new) or [False] * len(window.lines)
        for j, item in enumerate(items):
            i = self.index.get(id(item))
            if i is None:
                self.index[id(item)] = len(self.items)
                self.items.append(item)
                self.lines.append(window.lines[j])
                self.template_ids.append(window.template_ids[j])
                self.templates.append(window.templates[j])
                self.probs.append(float(window.token_probs[j]))
                self.rare.append(rare[j])
            else:
                self.probs[i] = _max(self.probs[i], float(window.token_probs[j]))
                self.rare[i] = self.rare[i] or rare[j]

    def done(self) -> Incident:
        if self.windows == 1:
            return Incident(self.flag_id, self.first, 1)
        merged = ScoredWindow(
            key=self.first.key,
            start=self.start,
            end=self.end,
            lines=self.lines,
            template_ids=self.template_ids,
            templates=self.templates,
            score=self.score,
            threshold=self.first.threshold,
            token_probs=self.probs,
            rare_new=self.rare if any(self.rare) else (),
            # The score is the highest of the merged windows': it stands as a reason
            # only if some window was flagged by its score (not one seen in training).
            seen_in_training=not self.by_score,
        )
        return Incident(self.flag_id, merged, self.windows)


def _max(a: float, b: float) -> float:
    """The larger of two numbers, a NaN losing to any number."""
    if math.isnan(a):
        return b
    return b if b > a else a


class IncidentMerger:
    """Scored windows in closing order → incidents (see the module docstring).

    ``merge=False`` (session windows): every anomalous window is an incident at once.
    ``reach``: event seconds after an incident's end before no window of its key can
    join it any more (``size + allowed_lateness``). Not thread-safe: one task owns it.
    """

    def __init__(
        self, model_id: str, *, merge: bool = True, reach: float = 0.0, max_windows: int = 10
    ) -> None:
        if isinstance(max_windows, bool) or not isinstance(max_windows, int) or max_windows < 1:
            raise ConfigError("incidents.max_windows", max_windows, "an integer >= 1")
        if not math.isfinite(reach) or reach < 0:
            raise ConfigError("incidents.reach", reach, "a finite number of seconds >= 0")
        self.model_id = model_id
        self.merge = merge
        self.reach = reach
        self.max_windows = max_windows
        # By last window added: for sliding windows closing in deadline order that is
        # the order of incident ends, so expiry takes from the front.
        self._open: OrderedDict[str, _Building] = OrderedDict()

    @classmethod
    def for_windows(cls, config: WindowConfig, model_id: str) -> IncidentMerger:
        """The merger for a bundle's windows: merging only for sliding windows."""
        if config.kind != "sliding":
            return cls(model_id, merge=False)
        max_windows = max(2, 2 * math.ceil(config.size / config.step))
        return cls(
            model_id,
            merge=True,
            reach=config.size + config.allowed_lateness,
            max_windows=max_windows,
        )

    @property
    def pending(self) -> int:
        """Incidents open (waiting for the key's next window)."""
        return len(self._open)

    def push(
        self, window: ScoredWindow, items: Sequence[object]
    ) -> tuple[str | None, list[Incident]]:
        """Add the next scored window; ``items`` identify its lines (the windower's
        items, aligned with ``window.lines``).

        Returns the id of the incident the window belongs to (None for a normal window)
        and the incidents this window completed, in order.
        """
        if len(items) != len(window.lines):
            raise DataError(f"{window.key!r}: {len(items)} items for {len(window.lines)} lines")
        key = window.key
        if not self.merge:
            if not window.anomaly:
                return None, []
            flag_id = make_flag_id(self.model_id, key, window.start, window.end, window.lines)
            return flag_id, [Incident(flag_id, window, 1)]
        current = self._open.get(key)
        if not window.anomaly:
            if current is None:
                return None, []
            del self._open[key]
            return None, [current.done()]
        if (
            current is not None
            and window.start <= current.end
            and current.windows < self.max_windows
        ):
            current.add(window, items)
            self._open.move_to_end(key)
            return current.flag_id, []
        done = []
        if current is not None:
            del self._open[key]
            done.append(current.done())
        flag_id = make_flag_id(self.model_id, key, window.start, window.end, window.lines)
        self._open[key] = _Building(flag_id, window, items)
        return flag_id, done

    def expire(self, watermark: float) -> list[Incident]:
        """Emit the incidents no window can join any more, once event time has reached
        ``watermark`` and every window closed by then has been pushed."""
        batch: list[str] = []
        for key, building in self._open.items():
            if building.end + self.reach >= watermark:
                break
            batch.append(key)
        return [self._open.pop(key).done() for key in batch]

    def flush(self) -> list[Incident]:
        """Emit every open incident (end of input, shutdown)."""
        out = [b.done() for b in self._open.values()]
        self._open.clear()
        return out
