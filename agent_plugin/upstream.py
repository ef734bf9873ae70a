"""Reliable asyncio Forward client that sends flag records upstream (FORWARD.md §6.2).

Hand-written on purpose: ``fluent-logger`` (the Python client) has no acks, no shared-key
handshake, no TLS and no asyncio; an at-least-once flag writer needs all four.

Usage::

    client = UpstreamClient(UpstreamConfig(host="fluentd", spool_dir=Path("/var/lib/ls")))
    await client.start()                       # resends chunks left in the spool
    await client.send("logsieve.flag", record)  # never waits on the network
    ...
    await client.stop(timeout=10)              # flush; the unacked rest goes to the spool

``send`` appends to an in-memory batch; one background task seals batches into
chunks (``max_batch_records``/``max_batch_bytes``/``flush_interval``), writes
each as a Forward frame ``[tag, [[EventTime, record], ...], {"chunk": id,
"size": n}]`` (or PackedForward), waits for ``{"ack": id}`` and only then
forgets the chunk. A timeout, EOF, wrong ack or failed handshake closes the
socket (never reused, the Fluentd #4057 lesson) and the task reconnects after a
jittered exponential backoff and resends the same chunk with the same id.

Delivery guarantee: with ``require_ack`` (default) and a ``spool_dir``, every
record passed to ``send`` is delivered at least once, across upstream outages
and restarts of either side (a record is in memory, in the spool, or acked),
except after a crash of this process (memory contents are lost; the spool
survives) or with ``overflow_policy="drop"`` when memory and spool are full
(counted in ``dropped_records``). Duplicates happen after a lost ack; the
chunk id and each flag's ``flag_id`` let receivers drop them. Records keep
their ``send`` order, also through spilling and restarts. Without
``require_ack`` a write that completed counts as delivered, so a connection
that dies with data in its socket buffers loses that data (at-most-once).
Without ``spool_dir`` nothing survives a stop with upstream down (counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time as _time
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from logsieve.errors import DataError, HandshakeError, LogsieveError, ProtocolError

from . import failpoints
from .forward.codec import FrameDecoder
from .forward.eventtime import EventTime
from .forward.handshake_client import ClientHandshake
from .forward.limits import ForwardLimits
from .spool import Chunk, ChunkBuffer, Spool
from .upstream_config import UpstreamConfig

__all__ = ["UpstreamClient", "UpstreamClosedError", "UpstreamStats", "encode_frame"]

log = logging.getLogger(__name__)

_RETRYABLE = (OSError, asyncio.TimeoutError, TimeoutError, ProtocolError, EOFError)
_REPLY_LIMITS = ForwardLimits(max_frame_bytes=1024 * 1024)
_EOF = object()


class UpstreamClosedError(LogsieveError, RuntimeError):
    """``send`` was called on (or was waiting in) a client that is stopping or stopped."""


@dataclass(slots=True)
class UpstreamStats:
    """Counters (monotonic) and gauges (``buffered_records``, ``spool_*``, ``connected``)."""

    records_sent: int = 0  # records written to a socket, resends included
    chunks_sent: int = 0
    chunks_acked: int = 0  # delivered: acked, or written when require_ack is off
    records_acked: int = 0
    retries: int = 0  # chunk writes that were resends after a failure
    connections: int = 0
    reconnects: int = 0  # connections made after the first
    connect_failures: int = 0
    handshake_failures: int = 0
    ack_timeouts: int = 0
    spilled_chunks: int = 0
    spilled_bytes: int = 0
    spool_resends: int = 0  # chunks read back from the spool and sent
    spool_corrupt: int = 0
    dropped_records: int = 0
    buffered_records: int = 0
    spool_chunks: int = 0
    spool_bytes: int = 0
    connected: bool = False


def encode_frame(chunk: Chunk, *, require_ack: bool, packed: bool) -> bytes:
    """The Forward (or PackedForward) request for ``chunk``; every string is msgpack str."""
    option: dict[str, Any] = {"size": chunk.count}
    if require_ack:
        option = {"chunk": chunk.chunk_id, "size": chunk.count}
    head = b"\x93" + msgpack.packb(chunk.tag, use_bin_type=True)
    if packed:
        body = msgpack.packb(chunk.payload, use_bin_type=True)  # bin: both servers take it
    else:
        body = msgpack.Packer().pack_array_header(chunk.count) + chunk.payload
    return bytes(head + body + msgpack.packb(option, use_bin_type=True))


def _event_time(seconds: float) -> EventTime:
    # Split before scaling: float(t) * 1e9 loses the nanoseconds of a 2020s timestamp.
    sec = math.floor(seconds)
    nsec = round((seconds - sec) * 1_000_000_000)
    return EventTime(sec + nsec // 1_000_000_000, nsec % 1_000_000_000)


class _Connection:
    """One socket: a reader task turns replies into frames; EOF or garbage ends it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.closed = asyncio.Event()
        self.end: BaseException | None = None  # why the reader stopped, if not a clean EOF
        self._reader = reader
        self._frames: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.create_task(self._read(), name="logsieve-upstream-reader")

    async def _read(self) -> None:
        decoder = FrameDecoder(_REPLY_LIMITS)
        end: object = _EOF
        try:
            while data := await self._reader.read(65536):
                decoder.feed(data)
                for frame in decoder:
                    self._frames.put_nowait(frame.obj)
        except (OSError, ProtocolError) as exc:
            end = self.end = exc
        self._frames.put_nowait(end)
        self.closed.set()

    async def next_frame(self, timeout: float) -> Any:
        """The next reply; ConnectionError on EOF, TimeoutError after ``timeout`` s."""
        item = await asyncio.wait_for(self._frames.get(), timeout)
        if item is _EOF or isinstance(item, BaseException):
            self._frames.put_nowait(item)  # later calls see the end too
            if isinstance(item, BaseException):
                raise item
            raise ConnectionError("upstream closed the connection")
        return item

    async def write(self, data: bytes, timeout: float) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), timeout)

    async def close(self) -> None:
        # Never swallow CancelledError here: stop() cancels the sender, possibly
        # right now, and a swallowed cancel would keep it reconnecting forever.
        self._task.cancel()
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
        await asyncio.wait({self._task})
        if not self._task.cancelled() and self._task.exception() is not None:
            log.debug("upstream reader ended: %r", self._task.exception())


class UpstreamClient:
    """At-least-once Forward client with a bounded memory buffer and a disk spool.

    Create and use it on one event loop. ``stats`` gives a snapshot of the
    counters; ``last_error`` the most recent connection/handshake/ack failure.
    """

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.last_error: str | None = None
        self._stats = UpstreamStats()
        spool = Spool(config.spool_dir, config.spool_max_bytes) if config.spool_dir else None
        self._buffer = ChunkBuffer(config.max_batch_records, config.max_batch_bytes, spool)
        self._wakeup = asyncio.Event()  # something for the sender to do
        self._space = asyncio.Event()  # memory or spool space was freed
        self._progress = asyncio.Event()  # a chunk was delivered
        self._failures = 0
        self._resending = False
        self._state = "new"
        self._task: asyncio.Task[None] | None = None
        self._abandoned = False  # stop() gave up on the pending records: the loop exits
        self._ssl: ssl.SSLContext | None = None

    @property
    def stats(self) -> UpstreamStats:
        buf = self._buffer
        s = replace(self._stats, buffered_records=buf.mem_records)
        s.spilled_chunks, s.spilled_bytes = buf.spilled_chunks, buf.spilled_bytes
        s.spool_resends = buf.spool_reads
        if buf.spool is not None:
            s.spool_chunks, s.spool_bytes = buf.spool.chunks, buf.spool.bytes
            s.spool_corrupt = buf.spool.corrupt_files
        return s

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The sender task (after :meth:`start`): runs until :meth:`stop`, for a
        supervisor to watch."""
        return self._task

    @property
    def pending(self) -> bool:
        """True while anything is buffered, in flight or spooled."""
        return self._buffer.pending

    @property
    def sent_count(self) -> int:
        """Records accepted by :meth:`send` since start (a ticket for :attr:`durable_count`)."""
        return self._buffer.appended

    @property
    def durable_count(self) -> int:
        """How many of the records sent since start, in send order, are all acked
        upstream or written to the spool (safe from a crash of this process)."""
        return self._buffer.durable_count

    async def start(self) -> None:
        """Index the spool (its chunks are sent first) and start the sender task."""
        if self._state != "new":
            raise UpstreamClosedError(f"start() on a client that is {self._state}")
        self._ssl = self._ssl_context()
        await self._buffer.load()
        if self._buffer.spool is not None and self._buffer.spool.chunks:
            log.info("upstream: %d chunk(s) in the spool to resend", self._buffer.spool.chunks)
        self._state = "running"
        self._task = asyncio.create_task(self._run(), name="logsieve-upstream")

    async def send(
        self, tag: str, record: dict[Any, Any], time: float | EventTime | None = None
    ) -> bool:
        """Queue one record; returns False only if the drop policy dropped it.

        ``time`` is Unix seconds or an :class:`EventTime` (now if None). Waits
        (backpressure) only when memory and spool are both full and the policy
        is ``block``; never waits on the network otherwise.
        """
        if self._state != "running":
            raise UpstreamClosedError(f"send() on a client that is {self._state}")
        if time is None:
            et = EventTime.from_ns(_time.time_ns())
        elif isinstance(time, EventTime):
            et = time
        else:
            et = _event_time(time)
        try:
            entry = bytes(msgpack.packb([et.to_ext(), record], use_bin_type=True))
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"record for tag {tag!r} is not msgpack-serialisable: {exc}") from exc
        while self._buffer.mem_records >= self.config.memory_buffer_records:
            if await self._buffer.spill_one():
                continue
            if self.config.overflow_policy == "drop":
                self._stats.dropped_records += 1
                dropped = self._stats.dropped_records
                if dropped in (1, 10, 100) or dropped % 1000 == 0:
                    log.error("upstream: memory and spool full, %d record(s) dropped", dropped)
                return False
            self._space.clear()
            # Re-check now and then: a spool write error is retried after a second.
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._space.wait(), 1.0)
            if self._state != "running":
                raise UpstreamClosedError("upstream client stopped while send() waited for space")
            if self._task is not None and self._task.done():  # nobody will make room
                raise UpstreamClosedError("upstream sender has ended; memory and spool full")
        if self._buffer.append(tag, entry):
            self._wakeup.set()
        return True

    async def flush(self, timeout: float) -> bool:
        """Send everything queued now; True once nothing is pending, False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._buffer.seal():
            self._wakeup.set()
        while self.pending:
            self._progress.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        return True

    async def stop(self, timeout: float = 5.0) -> bool:
        """Flush for up to ``timeout`` s, close, and spool what is still unacked.

        Returns True if everything was delivered (nothing spooled or lost now).
        Blocked and later ``send`` calls raise :class:`UpstreamClosedError`.
        """
        if self._state in ("stopping", "stopped"):
            return not self.pending
        was_new, self._state = self._state == "new", "stopping"
        self._wakeup.set()
        self._space.set()  # blocked send() calls raise UpstreamClosedError
        if self._task is not None:
            # Nothing pending: don't sit out a reconnect backoff for nothing.
            done, _ = await asyncio.wait({self._task}, timeout=timeout if self.pending else 0)
            if not done:
                self._abandoned = True
                # Python 3.11's wait_for can swallow a cancellation that races its inner
                # future (gh-86296); the sender would then retry a failing upstream for
                # as long as records are pending (seen: a wrong shared key hung shutdown).
                # The flag ends its loop; cancel again until the task has really ended.
                while not self._task.done():
                    self._task.cancel()
                    await asyncio.wait({self._task}, timeout=0.5)
        lost = 0
        if not was_new:
            lost = await self._buffer.spool_leftovers()
            self._stats.dropped_records += lost
        self._state = "stopped"
        return not self.pending and not lost

    # -- the sender task -----------------------------------------------------

    async def _run(self) -> None:
        while (self._state == "running" or self.pending) and not self._abandoned:
            conn = None
            try:
                conn = await self._connect()
                await self._pump(conn)
                if self._state != "running":
                    return
            except _RETRYABLE as exc:
                self._failed(exc)
            except Exception as exc:  # a bug must not silently stop delivery
                log.exception("upstream: unexpected error")
                self._failed(exc)
            finally:
                self._stats.connected = False
                if conn is not None:
                    await conn.close()
            self._failures += 1
            cfg = self.config
            delay = min(cfg.backoff_max, cfg.backoff_initial * 2 ** min(self._failures - 1, 30))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    def _failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, HandshakeError):
            self._stats.handshake_failures += 1
        log.warning("upstream %s:%d: %s", self.config.host, self.config.port, self.last_error)

    async def _connect(self) -> _Connection:
        cfg = self.config
        try:
            opening = asyncio.open_connection(
                cfg.host,
                cfg.port,
                ssl=self._ssl,
                server_hostname=(cfg.tls_server_hostname or cfg.host) if self._ssl else None,
                ssl_handshake_timeout=cfg.connect_timeout if self._ssl else None,
            )
            reader, writer = await asyncio.wait_for(opening, cfg.connect_timeout)
        except _RETRYABLE:
            self._stats.connect_failures += 1
            raise
        conn = _Connection(reader, writer)
        try:
            if cfg.shared_key is not None:
                await self._handshake(conn)
        except BaseException:
            await conn.close()
            raise
        self._stats.connections += 1
        self._stats.reconnects = self._stats.connections - 1
        self._stats.connected = True
        return conn

    async def _handshake(self, conn: _Connection) -> None:
        cfg = self.config
        assert cfg.shared_key is not None
        hs = ClientHandshake(cfg.self_hostname, cfg.shared_key, cfg.username, cfg.password)
        try:
            ping = hs.receive_helo(await conn.next_frame(cfg.connect_timeout))
            await conn.write(ping, cfg.connect_timeout)  # then wait: no data before PONG
            hs.receive_pong(await conn.next_frame(cfg.connect_timeout))
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise HandshakeError(
                f"no HELO/PONG from {cfg.host}:{cfg.port} within {cfg.connect_timeout}s "
                "(is shared_key set on the server too?)"
            ) from exc
        except ConnectionError as exc:
            raise HandshakeError(f"connection closed during the handshake: {exc}") from exc

    async def _pump(self, conn: _Connection) -> None:
        cfg = self.config
        while (chunk := await self._next_chunk(conn)) is not None:
            frame = encode_frame(chunk, require_ack=cfg.require_ack, packed=cfg.mode == "packed")
            if self._resending:
                self._stats.retries += 1
            self._resending = True  # until it is delivered, a later write is a resend
            await conn.write(frame, cfg.ack_timeout)
            failpoints.hit("upstream.sent")
            self._stats.chunks_sent += 1
            self._stats.records_sent += chunk.count
            if cfg.require_ack:
                await self._await_ack(conn, chunk)
            self._resending = False
            await self._buffer.delivered(chunk)
            self._stats.chunks_acked += 1
            self._stats.records_acked += chunk.count
            self._failures = 0
            self._space.set()
            self._progress.set()

    async def _await_ack(self, conn: _Connection, chunk: Chunk) -> None:
        try:
            reply = await conn.next_frame(self.config.ack_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            self._stats.ack_timeouts += 1
            raise asyncio.TimeoutError(
                f"no ack for chunk {chunk.chunk_id} within {self.config.ack_timeout}s"
            ) from None
        if isinstance(reply, list) and reply[:1] == [b"HELO"]:
            raise HandshakeError("upstream sent HELO: it requires the handshake; set shared_key")
        ack = reply.get(b"ack") if isinstance(reply, dict) else None
        if ack != chunk.chunk_id.encode("ascii"):
            raise ProtocolError(f"expected ack {chunk.chunk_id!r}, got {reply!r:.120}")

    async def _next_chunk(self, conn: _Connection) -> Chunk | None:
        """Wait for a chunk to send; None when stopping with nothing left."""
        while True:
            self._wakeup.clear()
            chunk = await self._buffer.take_next()
            if chunk is not None:
                return chunk
            timeout: float | None = None
            started = self._buffer.open_batch_started
            if started is not None:
                age = _time.monotonic() - started
                if age >= self.config.flush_interval or self._state != "running":
                    self._buffer.seal()
                    continue
                timeout = self.config.flush_interval - age
            elif self._state != "running":
                return None
            await _wait_any(timeout, self._wakeup, conn.closed)
            if conn.closed.is_set():  # noticed while idle: reconnect before the next write
                raise conn.end or ConnectionError("upstream closed the idle connection")

    def _ssl_context(self) -> ssl.SSLContext | None:
        cfg = self.config
        if not cfg.tls:
            return None
        ctx = ssl.create_default_context(
            cafile=str(cfg.tls_ca_file) if cfg.tls_ca_file is not None else None
        )
        if not cfg.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cfg.tls_cert_file is not None and cfg.tls_key_file is not None:
            ctx.load_cert_chain(str(cfg.tls_cert_file), str(cfg.tls_key_file))
        return ctx


async def _wait_any(timeout: float | None, *events: asyncio.Event) -> None:
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
