"""Where unsent upstream chunks live: a bounded memory buffer and an on-disk spool.

:class:`ChunkBuffer` is the upstream client's (:mod:`.upstream`) store, with no
networking: records are batched into :class:`Chunk` s, held in memory up to a
bound, and past it the oldest chunks move to the :class:`Spool`; whatever is
unsent at stop is written there too, so the next start sends it. Chunks carry
a sequence number given when they are sealed, and the next chunk to send is
always the lowest-numbered one, in memory or on disk, so records keep their
order through spilling and restarts.

File format (a format we own, STYLE §15): ``<seq:020d>.chunk`` holding one
msgpack map ``{"schema_version": 1, "seq": int, "chunk": str, "tag": str,
"size": int, "entries": bin}`` where ``entries`` is the concatenation of the
msgpack ``[EventTime, record]`` entries, ready to frame. A file is written as
``.<name>.tmp``, fsynced, renamed into place and the directory fsynced, so a
crash leaves either the whole file or a stray ``.tmp`` (removed on the next
scan). A file that does not decode is renamed ``*.bad``, logged and counted,
never retried. One spool directory belongs to one client at a time.

Disk I/O runs in a worker thread (``asyncio.to_thread``) so a slow fsync does
not stall the event loop; the bookkeeping stays on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

__all__ = ["SCHEMA_VERSION", "Chunk", "ChunkBuffer", "Spool", "fsync_dir"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SUFFIX = ".chunk"


@dataclass(slots=True)
class Chunk:
    """One sealed batch of records for one tag: the unit of sending, acking and spooling.

    ``payload`` is the concatenated msgpack ``[EventTime, record]`` entries;
    ``chunk_id`` stays the same across resends and restarts, so a receiver that
    deduplicates by it drops repeats. ``path`` is the spool file backing the
    chunk, if any (deleted once the chunk is acked).
    """

    seq: int
    chunk_id: str
    tag: str
    count: int
    payload: bytes
    path: Path | None = None
    first: int = -1  # index of its first record among this process's sends (-1: older)
    durable: bool = False  # acked or on disk in the spool

    def encode(self) -> bytes:
        """The spool file's bytes."""
        body = {
            "schema_version": SCHEMA_VERSION,
            "seq": self.seq,
            "chunk": self.chunk_id,
            "tag": self.tag,
            "size": self.count,
            "entries": self.payload,
        }
        return bytes(msgpack.packb(body, use_bin_type=True))

    @classmethod
    def decode(cls, data: bytes, path: Path) -> Chunk:
        """Parse a spool file; ValueError if it is not one we wrote."""
        try:
            body: Any = msgpack.unpackb(data, raw=False, use_list=True)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ValueError(f"not msgpack: {exc}") from exc
        if not isinstance(body, dict) or body.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"not a schema_version {SCHEMA_VERSION} spool chunk")
        seq, chunk_id, tag = body.get("seq"), body.get("chunk"), body.get("tag")
        count, entries = body.get("size"), body.get("entries")
        if not (
            isinstance(seq, int)
            and isinstance(chunk_id, str)
            and isinstance(tag, str)
            and isinstance(count, int)
            and count > 0
            and isinstance(entries, bytes)
        ):
            raise ValueError("missing or mistyped fields")
        return cls(seq, chunk_id, tag, count, entries, path)


@dataclass(slots=True)
class _Entry:
    seq: int
    path: Path
    nbytes: int


class Spool:
    """The spool directory's index: chunk files in sequence order and their total size.

    Call :meth:`scan` once before use. All methods must be called from the
    event loop that owns the client.
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._index: list[_Entry] = []  # sorted by seq
        self.bytes = 0
        self.corrupt_files = 0

    @property
    def chunks(self) -> int:
        return len(self._index)

    @property
    def head_seq(self) -> int | None:
        """Sequence number of the oldest spooled chunk, or None when empty."""
        return self._index[0].seq if self._index else None

    def can_fit(self, nbytes: int) -> bool:
        return self.bytes + nbytes <= self.max_bytes

    async def scan(self) -> int:
        """Index existing chunk files (removing stray temp files); return the next free seq."""
        entries = await asyncio.to_thread(self._scan_sync)
        self._index = sorted(entries, key=lambda e: e.seq)
        self.bytes = sum(e.nbytes for e in self._index)
        return self._index[-1].seq + 1 if self._index else 0

    def _scan_sync(self) -> list[_Entry]:
        self.directory.mkdir(parents=True, exist_ok=True)
        found: list[_Entry] = []
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith(".") and name.endswith(".tmp"):
                # A write that never reached its rename: the chunk was still
                # in memory (or in flight) then, so it was never "stored".
                path.unlink(missing_ok=True)
                continue
            stem = name[: -len(_SUFFIX)]
            if name.endswith(_SUFFIX) and stem.isdigit():
                found.append(_Entry(int(stem), path, path.stat().st_size))
        return found

    async def write(self, chunk: Chunk) -> None:
        """Store ``chunk`` durably and index it; OSError (e.g. disk full) leaves no file."""
        data = chunk.encode()
        path = self.directory / f"{chunk.seq:020d}{_SUFFIX}"
        await asyncio.to_thread(_write_atomic, path, data)
        chunk.path = path
        entry = _Entry(chunk.seq, path, len(data))
        pos = len(self._index)
        while pos > 0 and self._index[pos - 1].seq > chunk.seq:
            pos -= 1  # a chunk spooled at stop may be older than spilled ones
        self._index.insert(pos, entry)
        self.bytes += entry.nbytes

    async def read_head(self) -> Chunk | None:
        """Load the oldest spooled chunk (it stays indexed until :meth:`remove`)."""
        while self._index:
            entry = self._index[0]
            try:
                data = await asyncio.to_thread(entry.path.read_bytes)
                return Chunk.decode(data, entry.path)
            except (OSError, ValueError) as exc:
                log.error("spool file %s is unreadable (%s); moved aside as .bad", entry.path, exc)
                self.corrupt_files += 1
                self._drop(entry)
                bad = entry.path.with_name(entry.path.name + ".bad")
                await asyncio.to_thread(_rename_quietly, entry.path, bad)
        return None

    async def remove(self, chunk: Chunk) -> None:
        """Delete the file backing ``chunk`` (after it was acked)."""
        if chunk.path is None:
            return
        for entry in self._index:
            if entry.path == chunk.path:
                self._drop(entry)
                break
        await asyncio.to_thread(chunk.path.unlink, missing_ok=True)
        chunk.path = None

    def _drop(self, entry: _Entry) -> None:
        self._index.remove(entry)
        self.bytes -= entry.nbytes


@dataclass(slots=True)
class _Batch:
    tag: str
    started: float  # time.monotonic() of its first record
    first: int  # index of its first record among this process's sends
    entries: list[bytes] = field(default_factory=list)
    nbytes: int = 0


class ChunkBuffer:
    """Unsent chunks in send order: open batch, sealed chunks in memory, spool, in flight.

    ``mem_records`` counts records whose only copy is in memory (the open
    batch, sealed chunks, and the in-flight chunk unless it came from the
    spool); the client keeps it under its bound with :meth:`spill_one`.
    Methods must run on one event loop; a lock orders spilling against
    :meth:`take_next` so a chunk on its way to disk is never skipped.
    """

    def __init__(self, max_batch_records: int, max_batch_bytes: int, spool: Spool | None) -> None:
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self.spool = spool
        self.mem_records = 0
        self.inflight: Chunk | None = None
        self.spilled_chunks = self.spilled_bytes = self.spool_reads = 0
        self._memory: deque[Chunk] = deque()
        self._open: _Batch | None = None
        self._seq = 0
        self._lock = asyncio.Lock()
        self._spool_retry_at = 0.0
        self.appended = 0  # records appended by this process
        self._undurable: deque[Chunk] = deque()  # sealed, neither acked nor spooled

    @property
    def durable_count(self) -> int:
        """How many of this process's records, counted in append order, are all acked
        or in the spool: every record before that index is safe from a crash."""
        pending = self._undurable
        while pending and pending[0].durable:
            pending.popleft()
        if pending:
            return pending[0].first
        return self._open.first if self._open is not None else self.appended

    @property
    def pending(self) -> bool:
        """True while anything is buffered, in flight or spooled."""
        return self.mem_records > 0 or (self.spool is not None and self.spool.chunks > 0)

    @property
    def open_batch_started(self) -> float | None:
        return self._open.started if self._open is not None else None

    async def load(self) -> None:
        """Index the spool; its chunks come before anything added later."""
        if self.spool is not None:
            self._seq = await self.spool.scan()

    def append(self, tag: str, entry: bytes) -> bool:
        """Add one packed entry; True if a batch was opened or sealed (wake the sender)."""
        batch, woke = self._open, False
        if batch is not None and (
            batch.tag != tag or batch.nbytes + len(entry) > self.max_batch_bytes
        ):
            self.seal()
            batch, woke = None, True
        if batch is None:
            batch = self._open = _Batch(tag, time.monotonic(), self.appended)
            woke = True  # starts the flush_interval clock
        batch.entries.append(entry)
        batch.nbytes += len(entry)
        self.mem_records += 1
        self.appended += 1
        if len(batch.entries) >= self.max_batch_records:
            self.seal()
        return woke

    def seal(self) -> bool:
        """Close the open batch into a chunk with a fresh id; False if there was none."""
        batch, self._open = self._open, None
        if batch is None:
            return False
        # The chunk id: Base64 of 128 random bits like Fluentd's (no trailing newline,
        # like Fluent Bit's); kept across resends so receivers can drop repeats.
        chunk_id = base64.b64encode(os.urandom(16)).decode("ascii")
        payload = b"".join(batch.entries)
        chunk = Chunk(self._seq, chunk_id, batch.tag, len(batch.entries), payload)
        chunk.first = batch.first
        self._memory.append(chunk)
        self._undurable.append(chunk)
        self._seq += 1
        return True

    async def spill_one(self) -> bool:
        """Move the oldest in-memory chunk to the spool; False if that is not possible."""
        spool = self.spool
        if spool is None or time.monotonic() < self._spool_retry_at:
            return False
        async with self._lock:
            if not self._memory:
                self.seal()
            if not self._memory or not spool.can_fit(len(self._memory[0].payload) + 128):
                return False
            chunk = self._memory[0]
            try:
                await spool.write(chunk)  # stays in memory until it is on disk
            except OSError as exc:
                log.error("upstream: cannot spill to %s: %s", spool.directory, exc)
                self._spool_retry_at = time.monotonic() + 1.0
                return False
            self._memory.popleft()
            chunk.durable = True
            self.mem_records -= chunk.count
            self.spilled_chunks += 1
            self.spilled_bytes += len(chunk.payload)
            return True

    async def take_next(self) -> Chunk | None:
        """The in-flight chunk, else the oldest one (spool or memory), now in flight."""
        async with self._lock:
            while self.inflight is None:
                head = self.spool.head_seq if self.spool is not None else None
                if head is not None and (not self._memory or head < self._memory[0].seq):
                    assert self.spool is not None
                    chunk = await self.spool.read_head()
                    if chunk is None:
                        continue  # the file was corrupt and moved aside
                    self.spool_reads += 1
                    self.inflight = chunk
                elif self._memory:
                    self.inflight = self._memory.popleft()
                else:
                    return None
            return self.inflight

    async def delivered(self, chunk: Chunk) -> None:
        """Forget the in-flight ``chunk``: it was acked."""
        self.inflight = None
        chunk.durable = True
        if chunk.path is not None and self.spool is not None:
            await self.spool.remove(chunk)
        else:
            self.mem_records -= chunk.count

    async def spool_leftovers(self) -> int:
        """At stop: write every memory-only chunk to the spool; return records lost."""
        async with self._lock:  # a send() may be spilling right now
            self.seal()
            left = [c for c in (self.inflight, *self._memory) if c is not None and c.path is None]
            self.inflight = None
            self._memory.clear()
            lost = 0
            for chunk in left:
                try:
                    if self.spool is None:
                        raise OSError("no spool_dir configured")
                    await self.spool.write(chunk)  # past spool_max_bytes if need be
                    chunk.durable = True
                except OSError as exc:
                    lost += chunk.count
                    log.error("upstream: %d unsent record(s) lost at stop: %s", chunk.count, exc)
                self.mem_records -= chunk.count
            if left and self.spool is not None and not lost:
                log.info("upstream: %d unsent chunk(s) spooled for the next start", len(left))
            return lost


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a new or renamed file's name in ``directory`` durable (POSIX: fsync the
    directory); not every platform/filesystem allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _rename_quietly(src: Path, dst: Path) -> None:
    with contextlib.suppress(OSError):  # already gone
        os.replace(src, dst)
