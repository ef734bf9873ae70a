"""What the streaming pipeline tells its write-ahead log, and what a restart replays.

The pipeline numbers every acknowledged record (its LSN in :mod:`.wal`) and every
closed window (a *serial*). A window's verdict is **done** once whatever it sends
upstream (flag, verdict, pass-through records) is acked or spooled by the upstream
client; windows that send nothing are done when scored. The :class:`Ledger` keeps:

* the windows closed and not yet done, in serial order, each with a *ticket*: the
  upstream client's ``sent_count`` after its records were handed over (None while an
  anomalous window waits in an open incident, whose flag is not sent yet);
* the done mark: the highest serial up to which every window is done, written as a
  ``D`` entry; and deletes the log's oldest segments once no open or undone window
  holds a record in them.

After a crash, :class:`ReplayPlan` reads the log (:class:`~.wal.Recovered`) and says,
per record, into which windows it goes again: windows that were closed and done are
not formed again, windows that were closed and not done are formed again *exactly*
(session windows are closed as soon as their last record is back, so the same lines
give the same ``flag_id`` and a receiver drops a verdict it already has), and records
of windows still open at the crash are windowed as they first were.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from logsieve.logs.pipeline import Event
from logsieve.logs.windows import Window

from . import failpoints
from .forward import RecordBatch
from .wal import Closure, Recovered, WriteAheadLog

__all__ = ["DurableSender", "Ledger", "ReplayPlan", "WindowLedger"]

log = logging.getLogger(__name__)

# Chunk ids remembered to drop resent frames: Fluent Bit resends a chunk with the same
# id; an agent's unacked backlog after a crash is far below this many frames.
_CHUNK_IDS = 65_536


class DurableSender(Protocol):
    """The upstream client's delivery progress (:class:`~.upstream.UpstreamClient`)."""

    @property
    def sent_count(self) -> int: ...

    @property
    def durable_count(self) -> int: ...


class WindowLedger(Protocol):
    """What the pipeline tells whoever tracks when its records are safely judged:
    :class:`Ledger` (the write-ahead log), or a scale-out worker's tracker
    (:mod:`.cluster.tracker`, which acks JetStream messages instead)."""

    def repeated(self, batch: RecordBatch) -> bool: ...

    async def append(self, batch: RecordBatch) -> int: ...

    def already_done(self, window: Window[Event]) -> bool: ...

    def closed(self, window: Window[Event]) -> None: ...

    async def before_send(self) -> None: ...

    def scored(self, window: Window[Event], flag_id: str | None) -> None: ...

    def flagged(self, flag_id: str) -> None: ...

    def settle(self, open_lsns: Callable[[], Iterable[int]]) -> None: ...


@dataclass
class ReplayPlan:
    """Where the records of the log go again after a restart (module docstring)."""

    done: set[tuple[str, int]] = field(default_factory=set)  # (key, lsn) judged and delivered
    done_spans: set[tuple[str, float, float]] = field(default_factory=set)  # done windows
    pending: dict[tuple[str, int], int] = field(default_factory=dict)  # (key, lsn) -> closure
    closures: list[Closure] = field(default_factory=list)  # closed, verdict not delivered
    remaining: list[int] = field(default_factory=list)  # records still to come, per closure

    @classmethod
    def of(cls, recovered: Recovered) -> ReplayPlan:
        plan = cls()
        # A window re-formed after an earlier restart is logged twice (two serials, the
        # same records): done if either is.
        by_content: dict[tuple[str, tuple[int, ...]], Closure] = {}
        finished: set[tuple[str, tuple[int, ...]]] = set()
        for c in recovered.closures:
            ident = (c.key, tuple(sorted(c.lsns)))
            if c.serial <= recovered.done:
                finished.add(ident)
            by_content.setdefault(ident, c)
        for ident, c in by_content.items():
            if ident in finished:
                plan.done.update((c.key, lsn) for lsn in c.lsns)
                plan.done_spans.add((c.key, c.start, c.end))
                continue
            index = len(plan.closures)
            plan.closures.append(c)
            plan.remaining.append(len(set(c.lsns)))
            for lsn in set(c.lsns):
                plan.pending[(c.key, lsn)] = index
        return plan

    def keys_for(self, lsn: int, keys: tuple[str, ...]) -> tuple[str, ...]:
        """The keys whose window still needs record ``lsn``."""
        if not self.done:
            return keys
        return tuple(k for k in keys if (k, lsn) not in self.done)

    def completes(self, lsn: int, keys: Iterable[str]) -> list[Closure]:
        """The pending closures record ``lsn`` was the last missing record of."""
        out = []
        for key in keys:
            index = self.pending.get((key, lsn))
            if index is None:
                continue
            self.remaining[index] -= 1
            if self.remaining[index] == 0:
                out.append(self.closures[index])
        return out


class Ledger:
    """The pipeline's side of the write-ahead log (module docstring)."""

    def __init__(self, wal: WriteAheadLog, sender: DurableSender, next_serial: int = 1) -> None:
        self.wal = wal
        self.sender = sender
        self.done = next_serial - 1
        self._serial = next_serial - 1
        self._undone: OrderedDict[int, int | None] = OrderedDict()  # serial -> ticket
        self._min_lsn: dict[int, int] = {}  # serial -> smallest LSN of the window
        self._held: dict[str, list[int]] = {}  # incident flag_id -> serials waiting on it
        self._serial_of: dict[int, int] = {}  # id(window) -> serial, until scored
        self.done_spans: set[tuple[str, float, float]] = set()  # replayed, already judged
        self.replayed_records = 0
        self.replayed_windows = 0
        self._chunks: OrderedDict[bytes, None] = OrderedDict()
        self._next_truncate = 0.0

    # -- records in ------------------------------------------------------------

    def repeated(self, batch: RecordBatch) -> bool:
        """True for a frame whose ``chunk`` id is already in the log: an agent resending
        a frame whose ack it never got (our crash, a lost connection). Its records are
        kept once; the resend is acked again."""
        return batch.chunk is not None and batch.chunk in self._chunks

    async def append(self, batch: RecordBatch) -> int:
        """Write ``batch``'s records to the log; returns the first one's LSN."""
        rows = [(r.time_ns, r.record, r.metadata) for r in batch.records]
        lsn = await self.wal.append_records(batch.tag, rows, batch.chunk)
        failpoints.hit("wal.appended")
        self.remember(batch.chunk)
        return lsn

    def remember(self, chunk: bytes | None) -> None:
        """Keep ``chunk`` among the ids :meth:`repeated` knows (the most recent ones)."""
        if chunk is None:
            return
        chunks = self._chunks
        chunks[chunk] = None
        if len(chunks) > _CHUNK_IDS:
            chunks.popitem(last=False)

    # -- windows ---------------------------------------------------------------

    def already_done(self, window: Window[Event]) -> bool:
        """A window a restart formed again whose verdict was delivered before it."""
        return bool(self.done_spans) and (window.key, window.start, window.end) in self.done_spans

    def closed(self, window: Window[Event]) -> None:
        """Log that ``window`` closed, with its records (before its verdict is sent)."""
        self._serial += 1
        serial = self._serial
        lsns = [e.seq for e in window.items if e.seq >= 0]
        self.wal.note_closure(serial, window.key, window.start, window.end, window.closed_by, lsns)
        self._undone[serial] = None
        self._min_lsn[serial] = min(lsns) if lsns else 1 << 62
        self._serial_of[id(window)] = serial

    async def before_send(self) -> None:
        """Wait until the closures of the windows about to be judged are on disk, so a
        verdict never leaves for a window a restart could form differently."""
        await self.wal.sync()

    def scored(self, window: Window[Event], flag_id: str | None) -> None:
        """``window``'s outputs are handed to the upstream client; ``flag_id`` is its open
        incident's while it is one (its flag goes out later)."""
        serial = self._serial_of.pop(id(window), None)
        if serial is None:
            return
        if flag_id is not None:
            self._held.setdefault(flag_id, []).append(serial)
        else:
            self._undone[serial] = self.sender.sent_count

    def flagged(self, flag_id: str) -> None:
        """The incident ``flag_id`` was handed to the upstream client."""
        ticket = self.sender.sent_count
        for serial in self._held.pop(flag_id, ()):
            self._undone[serial] = ticket

    # -- progress --------------------------------------------------------------

    def settle(self, open_lsns: Callable[[], Iterable[int]]) -> None:
        """Move the done mark past windows whose outputs are now acked or spooled, and
        delete log segments nothing needs; ``open_lsns`` lists the LSNs of records in
        open windows (called only when a segment could go)."""
        durable = self.sender.durable_count
        advanced = False
        undone = self._undone
        while undone:
            serial, ticket = next(iter(undone.items()))
            if ticket is None or ticket > durable:
                break
            del undone[serial]
            self._min_lsn.pop(serial, None)
            self.done, advanced = serial, True
        if advanced:
            self.wal.note_done(self.done)
        now = time.monotonic()
        if self.wal.segment_count > 1 and now >= self._next_truncate:
            # Walking the open windows costs their size: at most once a second.
            self._next_truncate = now + 1.0
            live = min(self._min_lsn.values(), default=1 << 62)
            live = min(live, min(open_lsns(), default=1 << 62))
            self.wal.truncate(live, self.done)

    @property
    def undone(self) -> int:
        """Windows closed whose verdict is not yet acked or spooled upstream."""
        return len(self._undone)
