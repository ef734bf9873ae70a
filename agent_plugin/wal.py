"""The write-ahead log: a frame is acknowledged only once its records are on disk.

Three kinds of entry, appended by one writer in the order they happen::

    R  [0, lsn, tag, [[time_ns, record, metadata], ...], chunk]   a frame's records,
                                                           numbered lsn, lsn + 1, ...
                                                           (LSNs), and its chunk id
    C  [1, serial, key, start, end, reason, [lsn, ...]]    a window closed holding those
                                                           records (written before its
                                                           verdict is sent)
    D  [2, serial]                                         the verdicts of every window
                                                           closed up to ``serial`` are
                                                           delivered upstream or spooled

An entry is ``<u32 length><u32 crc32><msgpack payload>``. Files ("segments") are
``<index:08d>.wal`` in the log directory; a new one is started past ``segment_bytes``
and at every start. Reading stops at the first entry whose length or checksum is
wrong: a crash mid-append leaves at most a torn tail, which is cut off.

Group commit: appends made while a write is in progress go out together in the next
``write`` (and fsync, under ``fsync = "always"``); each appender awaits its group.
Truncation deletes the oldest segments once every record in them is past its
verdict and every window closed in them is done (:meth:`WriteAheadLog.truncate`).
Disk I/O runs in one worker thread; the bookkeeping stays on the event loop.

A write that fails (disk full, I/O error, the log at ``max_bytes``) leaves the file cut
back to its last whole entry and is retried every second; meanwhile appenders wait,
so no frame is acknowledged that is not written, and :attr:`WriteAheadLog.error` says
why (``/health`` reports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from .spool import fsync_dir
from .wal_config import DurabilityConfig

__all__ = ["Closure", "Recovered", "WalRecord", "WriteAheadLog", "decode_entries", "encode_entry"]

log = logging.getLogger(__name__)

RECORDS, CLOSED, DONE = 0, 1, 2
_HEADER = struct.Struct("<II")
_SUFFIX = ".wal"
_MAX_ENTRY = 1 << 30
_RETRY_AFTER = 1.0


def encode_entry(payload: Any) -> bytes:
    """One framed entry: length, CRC-32 of the msgpack bytes, the bytes."""
    body = bytes(msgpack.packb(payload, use_bin_type=True))
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def decode_entries(data: bytes) -> tuple[list[Any], int]:
    """The whole entries at the start of ``data`` and the bytes they take; reading
    stops at the first torn or corrupt entry."""
    out: list[Any] = []
    pos, n = 0, len(data)
    while pos + _HEADER.size <= n:
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length > _MAX_ENTRY or end > n:
            break
        body = data[pos + _HEADER.size : end]
        if zlib.crc32(body) != crc:
            break
        try:
            out.append(msgpack.unpackb(body, raw=False, strict_map_key=False))
        except (ValueError, msgpack.UnpackException):
            break
        pos = end
    return out, pos


@dataclass(frozen=True, slots=True)
class WalRecord:
    """An acknowledged record read back from the log."""

    lsn: int
    tag: str
    time_ns: int
    record: dict[Any, Any]
    metadata: dict[Any, Any] | None


@dataclass(frozen=True, slots=True)
class Closure:
    """A window that closed before the restart: which records it held."""

    serial: int
    key: str
    start: float
    end: float
    reason: str
    lsns: tuple[int, ...]


@dataclass(slots=True)
class Recovered:
    """What a start finds in the log: records and closures in log order, the done mark."""

    records: list[WalRecord] = field(default_factory=list)
    closures: list[Closure] = field(default_factory=list)
    done: int = 0
    next_lsn: int = 0
    next_serial: int = 1
    torn_bytes: int = 0  # cut off the end of a segment (a crash mid-append)
    chunks: list[bytes] = field(default_factory=list)  # ids of the frames, in log order


@dataclass(slots=True)
class _Segment:
    path: Path
    size: int = 0
    max_lsn: int = -1  # highest record in it (-1: none)
    max_serial: int = 0  # highest window closure in it (0: none)


class WriteAheadLog:
    """One log directory, owned by one server process.

    Usage::

        wal = WriteAheadLog(config)
        recovered = wal.recover()            # before anything is appended
        await wal.start()
        lsn = await wal.append_records(tag, records)   # then ack the frame
        wal.note_closure(serial, window, lsns); await wal.sync()   # then send its verdict
        wal.note_done(serial)
        wal.truncate(min_live_lsn, done_serial)
        await wal.close()
    """

    def __init__(self, config: DurabilityConfig) -> None:
        if config.dir is None:
            raise ValueError("DurabilityConfig.dir is None: no write-ahead log to open")
        self.config = config
        self.dir = config.dir
        self.error: str | None = None
        self.appended_records = 0
        self.fsyncs = 0
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._next_lsn = 0
        self._buf: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._pending_lsn = -1  # highest LSN / serial in the buffer
        self._pending_serial = 0
        self._writing: list[asyncio.Future[None]] | None = None  # waiters of the write on
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_fsync = time.monotonic()
        self._closed = False

    # -- start ---------------------------------------------------------------

    def recover(self) -> Recovered:
        """Read every segment (cutting a torn tail off), then open a fresh one."""
        self.dir.mkdir(parents=True, exist_ok=True)
        out = Recovered()
        for path in sorted(self.dir.glob(f"*{_SUFFIX}")):
            data = path.read_bytes()
            entries, good = decode_entries(data)
            if good < len(data):
                out.torn_bytes += len(data) - good
                log.warning(
                    "wal: %s: %d byte(s) after the last whole entry cut off", path, len(data) - good
                )
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            seg = _Segment(path, good)
            for entry in entries:
                self._read_entry(entry, seg, out)
            self._segments.append(seg)
        self._next_lsn = out.next_lsn
        self._open_segment()
        return out

    @staticmethod
    def _read_entry(entry: Any, seg: _Segment, out: Recovered) -> None:
        kind = entry[0]
        if kind == RECORDS:
            _, lsn, tag, rows, chunk = entry
            if chunk is not None:
                out.chunks.append(chunk)
            for i, (time_ns, record, metadata) in enumerate(rows):
                out.records.append(WalRecord(lsn + i, tag, time_ns, record, metadata))
            seg.max_lsn = max(seg.max_lsn, lsn + len(rows) - 1)
            out.next_lsn = max(out.next_lsn, lsn + len(rows))
        elif kind == CLOSED:
            _, serial, key, start, end, reason, lsns = entry
            out.closures.append(Closure(serial, key, start, end, reason, tuple(lsns)))
            seg.max_serial = max(seg.max_serial, serial)
            out.next_serial = max(out.next_serial, serial + 1)
        elif kind == DONE:
            out.done = max(out.done, entry[1])
            out.next_serial = max(out.next_serial, entry[1] + 1)

    def _open_segment(self) -> None:
        index = int(self._segments[-1].path.stem) + 1 if self._segments else 0
        path = self.dir / f"{index:08d}{_SUFFIX}"
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._segments.append(_Segment(path))
        fsync_dir(self.dir)

    async def start(self) -> None:
        """Start the writer task (after :meth:`recover`)."""
        if self._fd is None:
            raise RuntimeError("WriteAheadLog.start() before recover()")
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="logsieve-wal")

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The writer task (for supervision); None before :meth:`start`."""
        return self._task

    # -- appending -----------------------------------------------------------

    async def append_records(
        self, tag: str, rows: list[tuple[int, Any, Any]], chunk: bytes | None = None
    ) -> int:
        """Append one frame's ``(time_ns, record, metadata)`` rows and its ``chunk`` id;
        returns the first LSN once they are written (and fsynced under ``always``)."""
        lsn = self._next_lsn
        self._next_lsn += len(rows)
        self._add(encode_entry([RECORDS, lsn, tag, rows, chunk]))
        self._pending_lsn = lsn + len(rows) - 1
        self.appended_records += len(rows)
        await self.sync()
        return lsn

    def note_closure(
        self, serial: int, key: str, start: float, end: float, reason: str, lsns: list[int]
    ) -> None:
        """Record a window closing (made durable by the next :meth:`sync`)."""
        self._add(encode_entry([CLOSED, serial, key, start, end, reason, lsns]))
        self._pending_serial = max(self._pending_serial, serial)

    def note_done(self, serial: int) -> None:
        """Record that every window closed up to ``serial`` has its verdict delivered."""
        self._add(encode_entry([DONE, serial]))

    async def sync(self) -> None:
        """Wait until everything appended so far is written (fsynced under ``always``)."""
        if self._buf:
            group = self._waiters
        elif self._writing is not None:
            group = self._writing  # the write in progress holds our last entries
        else:
            return
        waiter = asyncio.get_running_loop().create_future()
        group.append(waiter)
        await waiter

    def _add(self, entry: bytes) -> None:
        if self._closed:
            raise RuntimeError("write-ahead log is closed")
        self._buf.append(entry)
        if self._wakeup is not None:
            self._wakeup.set()

    # -- the writer ----------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Bytes in the log's segments now."""
        return sum(s.size for s in self._segments)

    async def _run(self) -> None:
        assert self._wakeup is not None
        interval = self.config.fsync_interval
        while True:
            if not self._buf:
                self._wakeup.clear()
                timeout = None if self.config.fsync != "batch" else interval
                with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                if self._closed and not self._buf:
                    return
                if not self._buf:  # a quiet interval: the periodic fsync
                    await self._fsync_due()
                    continue
            data, waiters = b"".join(self._buf), self._waiters
            max_lsn, max_serial = self._pending_lsn, self._pending_serial
            if self.size_bytes + len(data) > self.config.max_bytes:
                self._fail(
                    f"the log holds {self.size_bytes} bytes, max_bytes is {self.config.max_bytes}"
                )
                await asyncio.sleep(_RETRY_AFTER)
                continue
            self._buf, self._waiters = [], []
            self._writing = waiters
            try:
                await asyncio.to_thread(self._write, data, self.config.fsync == "always")
            except OSError as exc:
                self._writing = None
                self._buf.insert(0, data)  # retried whole; the file was cut back
                self._waiters = waiters + self._waiters
                self._fail(f"cannot write {self._segments[-1].path}: {exc}")
                await asyncio.sleep(_RETRY_AFTER)
                continue
            self._writing = None
            if self.error is not None:
                log.warning("wal: writing again after: %s", self.error)
                self.error = None
            seg = self._segments[-1]
            seg.size += len(data)
            seg.max_lsn = max(seg.max_lsn, max_lsn)
            seg.max_serial = max(seg.max_serial, max_serial)
            for w in waiters:
                if not w.done():
                    w.set_result(None)
            await self._fsync_due()
            if seg.size >= self.config.segment_bytes:
                await asyncio.to_thread(self._roll)

    def _fail(self, reason: str) -> None:
        if self.error != reason:
            log.error("wal: not acknowledging new frames: %s", reason)
        self.error = reason

    def _write(self, data: bytes, fsync: bool) -> None:
        fd = self._fd
        assert fd is not None
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if fsync:
                os.fsync(fd)
                self.fsyncs += 1
                self._last_fsync = time.monotonic()
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # never leave half an entry before a retry
            raise

    async def _fsync_due(self) -> None:
        if self.config.fsync != "batch" or self._fd is None:
            return
        if time.monotonic() - self._last_fsync >= self.config.fsync_interval:
            self._last_fsync = time.monotonic()
            with contextlib.suppress(OSError):  # a failing disk shows up on the next write
                await asyncio.to_thread(os.fsync, self._fd)
                self.fsyncs += 1

    def _roll(self) -> None:
        if self._fd is not None and self.config.fsync != "off":
            os.fsync(self._fd)
        self._open_segment()

    # -- truncation and close --------------------------------------------------

    def truncate(self, min_live_lsn: int, done_serial: int) -> int:
        """Delete the oldest segments whose records are all below ``min_live_lsn`` and
        whose closed windows are all done; returns how many were deleted."""
        removed = 0
        while len(self._segments) > 1:
            seg = self._segments[0]
            if seg.max_lsn >= min_live_lsn or seg.max_serial > done_serial:
                break
            with contextlib.suppress(FileNotFoundError):
                seg.path.unlink()
            self._segments.pop(0)
            removed += 1
        if removed and self.error and self.error.startswith("the log holds"):
            log.info("wal: %d segment(s) freed", removed)
        return removed

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def clear(self) -> None:
        """Delete every segment but the one being written and empty that one (a clean
        stop with every verdict delivered): the next start replays nothing."""
        for seg in self._segments[:-1]:
            with contextlib.suppress(FileNotFoundError):
                seg.path.unlink()
        del self._segments[:-1]
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            self._segments[-1].size = 0

    async def close(self) -> None:
        """Write what is buffered, fsync, stop the writer and close the file."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sync(), 10.0)
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
