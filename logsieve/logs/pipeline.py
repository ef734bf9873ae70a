"""Records → keys → template ids → windows: the one path training and serving share.

Training mines templates over the training lines (:func:`mine_templates`), then replays
the same records through a :class:`LinePipeline` built on the resulting matcher, so a
training window is made by exactly the code that makes a serving window. The server
feeds records one at a time and calls :meth:`LinePipeline.advance` from a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from logsieve.config import LogConfig
from logsieve.logs.keys import KeyExtractor
from logsieve.logs.novelty import NoveltyTracker
from logsieve.logs.records import LogRecord
from logsieve.logs.templates import UNKNOWN, TemplateMatcher, TemplateMiner
from logsieve.logs.windows import Window, Windower, make_windower

__all__ = ["Event", "LinePipeline", "mine_templates", "windows_of"]


@dataclass(slots=True)
class Event:
    """One line inside a window: its time, template id and text; read-only by use.

    A negative template id is a line no training template matched: ``UNKNOWN``, or a
    new pattern's id (:mod:`logsieve.logs.novelty`).

    The text is kept so a flag can show the lines that explain it.

    Not ``frozen``: one is made per served line, and a frozen dataclass's ``__init__``
    (``object.__setattr__`` per field) costs ~1 µs more per line than a plain one
    (``bench/hotpath.py``). Nothing changes an event once made: a reload replaces the
    events it re-matches (:meth:`LinePipeline.use_matcher`).
    """

    time: float | None
    template_id: int
    text: str
    seq: int = -1  # the record's number in the server's write-ahead log (-1: none)

    @property
    def unknown(self) -> bool:
        return self.template_id < 0


class LinePipeline:
    """Turns records into closed windows of :class:`Event` with one configuration."""

    __slots__ = ("_add", "_keys_of", "_touch", "config", "keys", "matcher", "novelty", "windower")

    def __init__(
        self,
        config: LogConfig,
        matcher: TemplateMatcher,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (serving only) enables :meth:`close_idle` on session windows."""
        self.config = config
        self.matcher = matcher
        self.keys = KeyExtractor(config.windows)
        self.windower: Windower[Event] = make_windower(config.windows, clock)
        # Under unseen_templates = "novelty" unseen lines get new-pattern ids, judged
        # by their spread when their window closes (NoveltyTracker.judge).
        self.novelty: NoveltyTracker | None = (
            NoveltyTracker.for_config(config) if config.unseen_templates == "novelty" else None
        )
        # Bound once: feed_line runs per served line (the matcher is looked up per line,
        # since use_matcher replaces it).
        self._keys_of = self.keys.keys_of
        self._add = self.windower.add
        self._touch = self.novelty.touch if self.novelty is not None else None

    def feed(
        self, record: LogRecord, fields: Mapping[str, Any] | None = None
    ) -> list[Window[Event]]:
        """Add one record; returns the windows its arrival closed."""
        return self.feed_event(record, fields)[2]

    def feed_event(
        self,
        record: LogRecord,
        fields: Mapping[str, Any] | None = None,
        *,
        seq: int = -1,
        keys: tuple[str, ...] | None = None,
    ) -> tuple[Event, tuple[str, ...], list[Window[Event]]]:
        """:meth:`feed`, also returning the record's :class:`Event` and its window keys
        (the server uses them to find a record again when its window closes).

        ``seq`` numbers the event (the server's write-ahead log); ``keys`` replaces
        the record's own keys (a restart replaying a record into some of its windows).
        """
        return self.feed_line(record.time, record.host, record.text, fields, seq=seq, keys=keys)

    def feed_line(
        self,
        time: float | None,
        host: str | None,
        text: str,
        fields: Mapping[str, Any] | None = None,
        seq: int = -1,
        *,
        keys: tuple[str, ...] | None = None,
    ) -> tuple[Event, tuple[str, ...], list[Window[Event]]]:
        """:meth:`feed_event` of a record given by its parts (the server's hot path:
        no :class:`LogRecord` is built for a line it has already split; ``seq`` may
        be passed by position, which the per-record call does)."""
        if keys is None:
            keys = self._keys_of(text, host, fields)
        tid = self.matcher.match(text)
        if self._touch is not None:
            self._touch(keys)
            if tid == UNKNOWN:
                assert self.novelty is not None  # it gave _touch
                tid = self.novelty.observe(text, keys, time)
        event = Event(time, tid, text, seq)
        return event, keys, self._add(time, keys, event)

    def use_matcher(self, matcher: TemplateMatcher) -> dict[int, Event]:
        """Match from now on with ``matcher`` (a reloaded model's), and re-match the
        lines of the open windows with it: its ids may name other templates. Returns
        ``{id(old event): new event}`` for the events whose id changed (replaced in
        every open window that holds them). The new matcher's counters include the
        re-matched lines."""
        self.matcher = matcher
        changed: dict[int, Event] = {}
        replaced: list[Event] = []  # keeps the old events alive, so their ids stay unique
        for items in self.windower.open_items():
            for i, event in enumerate(items):
                new = changed.get(id(event))
                if new is None:
                    tid = matcher.match(event.text)
                    if tid == event.template_id or (tid == UNKNOWN and event.template_id < 0):
                        continue  # still unknown: keep its new-pattern id
                    new = changed[id(event)] = Event(event.time, tid, event.text, event.seq)
                    replaced.append(event)
                items[i] = new
        return changed

    def advance(self, watermark: float) -> list[Window[Event]]:
        """Close what an event at ``watermark`` would close (clock-driven flushing)."""
        return self.windower.advance(watermark)

    def close_idle(self, max_idle: float) -> list[Window[Event]]:
        """Close session windows quiet for over ``max_idle`` seconds of the clock."""
        return self.windower.close_idle(max_idle)

    def flush(self) -> list[Window[Event]]:
        """Close every open window (end of a file, or shutdown)."""
        return self.windower.flush()

    def stats(self) -> dict[str, Any]:
        """Counters of the matcher and the windower, for reports and metrics."""
        w = self.windower.stats
        return {
            "lines": self.matcher.lines,
            "unknown_lines": self.matcher.unknown,
            "unknown_rate": self.matcher.unknown_rate,
            "unkeyed": self.keys.unkeyed,
            "untimed": w.untimed,
            "late": w.late,
            "windows_closed": dict(w.closed),
            "windows_open": self.windower.open_windows,
            **({"novelty": self.novelty.stats()} if self.novelty is not None else {}),
        }


def mine_templates(texts: Iterable[str], config: LogConfig) -> dict[str, Any]:
    """Mine templates over training line texts; returns the state a bundle stores.

    Load it with :meth:`TemplateMatcher.from_state`: the matcher, not the miner, labels
    the training windows afterwards, so training and serving map a line to its
    template id through the same code.
    """
    miner = TemplateMiner(config.masking, config.templates)
    for text in texts:
        miner.add(text)
    return miner.state()


def windows_of(
    records: Iterable[LogRecord], config: LogConfig, matcher: TemplateMatcher
) -> Iterator[Window[Event]]:
    """Replay records in file order and yield every window, the open ones flushed at
    the end. Equal to feeding the records to a server one by one."""
    pipe = LinePipeline(config, matcher)
    for record in records:
        yield from pipe.feed(record)
    yield from pipe.flush()
