"""When a worker may ack a JetStream message: once every window holding its records
has its verdict delivered or spooled.

The pipeline calls the same hooks it calls on the write-ahead log's
:class:`~..ledger.Ledger` (``closed``, ``scored``, ``flagged``, ``settle``); a
window's verdict is **done** once whatever it sent is acked or spooled by the upstream
client (its ``sent_count`` ticket ≤ ``durable_count``), as there. Each record fed
gets a number (its ``Event.seq``) that maps back to its message. A message is
*ackable* once no open window holds one of its records, every closed window holding
one is done, and its pass-through records (if any) are delivered.

Why per message and not a floor: acks are per message (work-queue stream), so a long
open window holds back only its own messages, and only those come back after a
failover. A message can still be *partly* done (record of block A, whose window is
done, beside a record of block B, still open). Its next owner must not window A's
record again (a window of that one line would be a new, split window), so before any
message is acked the worker writes, per partition, the done keys of its unacked
messages to the state bucket (:meth:`ClusterTracker.state`); the next owner skips
them. That is exact for session windows (a record is in one window per key); sliding
windows re-form from what comes back, as the write-ahead log's sliding replay does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from logsieve.logs.pipeline import Event
from logsieve.logs.windows import Window

from ..forward import RecordBatch
from ..ledger import DurableSender

__all__ = ["ClusterTracker", "Held"]


@dataclass(slots=True, eq=False)
class Held:
    """One fed, unacked message."""

    partition: int
    seq: int  # stream sequence
    msg: Any  # the nats Msg to ack
    first: int  # first record number
    count: int  # records fed under it
    open: int = 0  # session windows: (record, key) placements not yet in a closed window
    undone: int = 0  # closed windows holding its records, verdict not yet done
    ticket: int = 0  # sent_count after its pass-through records were handed over
    done_keys: set[str] = field(default_factory=set)
    touched: float = 0.0  # monotonic time of delivery or the last in_progress


@dataclass(slots=True)
class _Closed:
    key: str
    held: list[Held]
    ticket: int | None = None  # None until scored (or while its incident is open)


class ClusterTracker:
    """The pipeline's ledger in worker mode (module docstring)."""

    def __init__(self, sender: DurableSender, *, sessions: bool) -> None:
        self.sender = sender
        self.sessions = sessions
        self._next = 0
        self._by_seq: dict[int, Held] = {}  # record number -> its message
        self._unacked: dict[tuple[int, int], Held] = {}  # (partition, seq) -> message
        self._acking: dict[tuple[int, int], Held] = {}  # ackable, ack not confirmed
        self._closed: dict[int, _Closed] = {}  # id(window) -> closure
        self._undone: dict[int, _Closed] = {}  # serial -> scored, not yet done
        self._held_flags: dict[str, list[_Closed]] = {}
        self._serial = 0
        self.open_keys: dict[int, set[str]] = {}  # partition -> keys fed, window maybe open
        self.dirty: set[int] = set()  # partitions whose state changed since written
        self.acks = 0

    # -- feeding ---------------------------------------------------------------

    def begin(self, partition: int, seq: int, msg: Any, records: int) -> Held:
        """Number ``records`` records of message ``seq`` (the caller feeds them with
        ``seq=held.first + i``)."""
        held = Held(partition, seq, msg, self._next, records, touched=time.monotonic())
        self._next += records
        for n in range(held.first, held.first + records):
            self._by_seq[n] = held
        self._unacked[(partition, seq)] = held
        return held

    def placed(self, held: Held, keys: tuple[str, ...]) -> None:
        """One of ``held``'s records went into the windows of ``keys``."""
        held.open += len(keys)
        self.open_keys.setdefault(held.partition, set()).update(keys)

    def passed(self, held: Held) -> None:
        """``held`` handed a pass-through record to the upstream client just now."""
        held.ticket = self.sender.sent_count

    def skipped_keys(self, held: Held, keys: Iterable[str]) -> None:
        """Keys a previous owner had finished for this message: still done."""
        held.done_keys.update(keys)

    # -- the pipeline's ledger hooks ---------------------------------------------

    def repeated(self, batch: RecordBatch) -> bool:
        return False  # workers never take Forward frames: JetStream de-duplicates

    async def append(self, batch: RecordBatch) -> int:
        raise RuntimeError("a worker's pipeline is fed by cluster.feed, not put()")

    def already_done(self, window: Window[Event]) -> bool:
        return False

    def closed(self, window: Window[Event]) -> None:
        by_seq = self._by_seq
        for keys in self.open_keys.values():
            keys.discard(window.key)
        held: dict[int, Held] = {}
        for e in window.items:
            h = by_seq.get(e.seq)
            if h is not None:
                h.open -= 1  # a session window holds a record once per key
                held[id(h)] = h
        closure = _Closed(window.key, list(held.values()))
        for h in closure.held:
            h.undone += 1
        self._closed[id(window)] = closure

    async def before_send(self) -> None:
        return None  # the messages are in the stream already

    def scored(self, window: Window[Event], flag_id: str | None) -> None:
        closure = self._closed.pop(id(window), None)
        if closure is None:
            return
        self._serial += 1
        self._undone[self._serial] = closure
        if flag_id is not None:
            self._held_flags.setdefault(flag_id, []).append(closure)
        else:
            closure.ticket = self.sender.sent_count

    def flagged(self, flag_id: str) -> None:
        ticket = self.sender.sent_count
        for closure in self._held_flags.pop(flag_id, ()):
            closure.ticket = ticket

    def settle(self, open_lsns: Callable[[], Iterable[int]]) -> None:
        """Mark windows whose outputs are acked or spooled as done."""
        durable = self.sender.durable_count
        done = [s for s, c in self._undone.items() if c.ticket is not None and c.ticket <= durable]
        for serial in done:
            closure = self._undone.pop(serial)
            for h in closure.held:
                h.undone -= 1
                if self.sessions:
                    h.done_keys.add(closure.key)
                    self.dirty.add(h.partition)

    # -- the committer -------------------------------------------------------------

    def take_ackable(self, open_lsns: Callable[[], Iterable[int]]) -> list[Held]:
        """Messages that may be acked now; they move to *acking* until :meth:`acked`."""
        self.settle(lambda: ())
        durable = self.sender.durable_count
        candidates = [
            h
            for h in self._unacked.values()
            if h.undone == 0 and h.ticket <= durable and (h.open <= 0 or not self.sessions)
        ]
        if not candidates:
            return []
        # Session windows count placements exactly (a record closed out of the windower
        # but not yet queued still counts as open). Sliding windows hold a record in
        # several windows of a key: look for it in the open ones instead.
        busy = set() if self.sessions else set(open_lsns())
        out = []
        for h in candidates:
            if busy and any(n in busy for n in range(h.first, h.first + h.count)):
                continue
            key = (h.partition, h.seq)
            del self._unacked[key]
            self._acking[key] = h
            self.dirty.add(h.partition)
            out.append(h)
        return out

    def retry(self, held: Held) -> None:
        """``held``'s ack was not confirmed: try again at the next commit."""
        key = (held.partition, held.seq)
        if self._acking.pop(key, None) is not None:
            self._unacked[key] = held

    def held(self, partition: int, seq: int) -> bool:
        """Whether message ``seq`` of ``partition`` is fed and not yet acked."""
        return (partition, seq) in self._unacked or (partition, seq) in self._acking

    def acked(self, held: Held) -> None:
        """JetStream confirmed ``held``'s ack: it is gone from the stream."""
        self._acking.pop((held.partition, held.seq), None)
        for n in range(held.first, held.first + held.count):
            self._by_seq.pop(n, None)
        self.dirty.add(held.partition)
        self.acks += 1

    def state(self, partition: int) -> dict[int, list[str] | bool]:
        """What the next owner of ``partition`` must skip: per unacked message, its
        done keys, or True when all of it is done (ackable, ack not yet confirmed)."""
        out: dict[int, list[str] | bool] = {}
        for (p, seq), h in self._unacked.items():
            if p == partition and h.done_keys:
                out[seq] = sorted(h.done_keys)
        for (p, seq), _h in self._acking.items():
            if p == partition:
                out[seq] = True
        return out

    def stale(self, older_than: float) -> list[Held]:
        """Unacked messages last touched before ``older_than`` (monotonic): the
        committer sends them ``in_progress`` so JetStream does not redeliver them."""
        return [h for h in self._unacked.values() if h.touched < older_than]

    def pending(self, partition: int) -> int:
        """Messages of ``partition`` fed and not yet acked."""
        return sum(1 for p, _ in self._unacked if p == partition) + sum(
            1 for p, _ in self._acking if p == partition
        )

    def settled(self, partition: int) -> bool:
        """No window holding a record of ``partition`` waits for its verdict, every ack
        is confirmed and the partition's state is written: the open windows aside,
        nothing of it is in flight."""
        if partition in self.dirty or any(p == partition for p, _ in self._acking):
            return False
        return not any(h.undone for (p, _), h in self._unacked.items() if p == partition)

    def forget(self, partition: int) -> None:
        """Drop what is tracked for ``partition`` (its lease is lost: not ours to ack)."""
        for table in (self._unacked, self._acking):
            for key in [k for k in table if k[0] == partition]:
                h = table.pop(key)
                for n in range(h.first, h.first + h.count):
                    self._by_seq.pop(n, None)
        self.dirty.discard(partition)
        self.open_keys.pop(partition, None)
