"""One accepted Forward TCP connection: an asyncio Protocol over the sans-IO ServerConnection.

Bytes go into :class:`~.forward.ServerConnection`; its events come out in wire
order. A :class:`~.forward.RecordBatch` with records is handed to the sink with
``await sink.put(batch)``; until that returns, the connection stops reading its
socket and processes no further frame, so frames of one connection are never
reordered and a full downstream queue becomes TCP backpressure (the client's
buffer holds the data). The ack is written only after ``put`` returned.

Reading is paused while any of these holds (uvicorn's ``FlowControl`` idea):
a ``put`` is pending (``"sink"``), our unsent replies passed the write
high-water mark because the peer does not read its acks (``"write"``), or the
server is shutting down (``"drain"``).

Closing: a malformed request or failed handshake closes the connection with
one warning naming the peer and the reason (never raised further: a bad peer
loses only its own connection); an idle timeout or the peer leaving closes it
quietly (debug log). Every close is counted by reason.

Deadlines (one timer per connection, re-armed only when it fires or when an
earlier deadline appears): ``idle_timeout`` since the last byte,
``handshake_timeout`` since accept while the shared-key handshake is pending,
and ``frame_timeout`` since the current request's first byte, so a peer
dribbling a byte every few seconds cannot hold a slot. Time spent paused (we
are the ones not reading) counts toward none of them. Connections beyond
``max_connections``, or beyond ``max_connections_per_peer`` from one remote
IP, are closed at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Generator
from typing import Any

from logsieve.errors import ProtocolError

from . import failpoints
from .forward import (
    ConnectionState,
    HandshakeFailed,
    HandshakeSucceeded,
    Heartbeat,
    IgnoredRequest,
    RecordBatch,
    ServerConnection,
    encode_ack,
)
from .guards import BufferBudget, Deadline, PeerClock
from .metrics import Metrics
from .server_config import ServerConfig
from .sink import RecordSink

__all__ = ["ForwardProtocol", "classify_protocol_error"]

log = logging.getLogger(__name__)

# A closing transport first flushes unsent replies; a peer that never reads
# would keep it (and its buffer) alive, so it is aborted after this long.
_ABORT_AFTER = 5.0


def classify_protocol_error(exc: ProtocolError) -> str:
    """The stable reason label of the malformed-frames counter: the error's kind
    (:attr:`~logsieve.errors.ProtocolError.reason`)."""
    return exc.reason


def _peer_name(transport: asyncio.BaseTransport) -> tuple[str, str]:
    """(``host:port`` for logs, the remote address the per-peer cap counts)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}", str(peer[0])
    name = str(peer) if peer else "unknown peer"
    return name, name


class ForwardProtocol(asyncio.Protocol):
    """The protocol instance for one Forward client connection.

    ``connections`` is the server's registry: a connection joins it on accept
    (unless the server is full, in which case it is closed at once and counted
    as refused) and leaves it when its socket is closed *and* no ``put`` is
    pending any more, so shutdown can wait for every in-flight request.
    ``peers`` counts the registered connections per remote address; ``budget``
    the bytes of unfinished requests of them all.
    """

    def __init__(
        self,
        config: ServerConfig,
        sink: RecordSink,
        metrics: Metrics,
        connections: set[ForwardProtocol],
        peers: Counter[str] | None = None,
        budget: BufferBudget | None = None,
    ) -> None:
        self._config = config
        self._sink = sink
        self._metrics = metrics
        self._connections = connections
        self._peers: Counter[str] = peers if peers is not None else Counter()
        self._peer_addr: str | None = None  # set once counted in _peers
        self._budget = budget if budget is not None else BufferBudget(config.max_buffered_bytes)
        self._budgeted = 0  # our share of the budget: bytes of the request in progress
        self._loop = asyncio.get_running_loop()
        self._conn = ServerConnection(config.limits, config.security)
        self._transport: asyncio.Transport | None = None
        self.peer = "unknown peer"
        self._paused: set[str] = set()  # reasons reading is paused
        self._put_task: asyncio.Task[None] | None = None
        self._closing = False  # we or the peer started closing; no more processing
        self._lost = False
        self._received = 0
        self._clock = PeerClock(
            config,
            self._on_deadline,
            paused=lambda: bool(self._paused),
            awaiting_ping=lambda: self._conn.state is ConnectionState.AWAIT_PING,
        )
        self._abort_handle: asyncio.TimerHandle | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self.done: asyncio.Future[None] = self._loop.create_future()
        """Resolves once the socket is closed and no put is pending."""

    # -- asyncio.Protocol callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.peer, addr = _peer_name(transport)
        full = len(self._connections) >= self._config.max_connections
        if full or self._peers[addr] >= self._config.max_connections_per_peer:
            # Refuse by closing before reading anything: the client sees EOF or
            # a reset and retries, possibly on another node.
            self._metrics.connections_refused.inc()
            log.debug(
                "forward %s: refused, %d connections open (%d from this address)",
                self.peer,
                len(self._connections),
                self._peers[addr],
            )
            self._closing = self._lost = True
            self._clock.stop()
            transport.close()
            self.done.set_result(None)
            return
        self._connections.add(self)
        self._peers[addr] += 1
        self._peer_addr = addr
        self._metrics.connections_total.inc()
        self._metrics.connections_open.inc()
        transport.set_write_buffer_limits(high=self._config.write_high_water)
        hello = self._conn.initiate()  # HELO, only when a shared key is set
        if hello:
            transport.write(hello)
        self._clock.start()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._received += len(data)
        self._clock.touch()
        self._metrics.bytes_received.inc(len(data))
        try:
            self._conn.feed(data)
        except ProtocolError as exc:  # pragma: no cover - feed fails only once closed
            self._fail(exc)
            return
        if self._put_task is None:
            self._process()
        self._track_frame()
        if self._conn.buffered:
            failpoints.hit("forward.partial")

    def eof_received(self) -> bool:
        # Returning False closes the transport. A client that half-closes while
        # waiting for an ack still gets it: reading (and so EOF detection) is
        # paused while a put is pending, and the ack is written before resuming.
        return False

    def pause_writing(self) -> None:
        self._pause("write")

    def resume_writing(self) -> None:
        self._resume("write")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if not self._closing:
            self._closing = True
            self._count_close("peer")
            if self._received == 0:
                # Fluentd's default transport heartbeat: connect and close, no data.
                self._metrics.heartbeats.labels(kind="connect").inc()
            log.debug("forward %s: peer closed (%s)", self.peer, exc or "eof")
        self._release_budget()
        self._metrics.connections_open.dec()
        self._clock.stop()
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        self._settle()

    # -- shutdown hooks for the server ----------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes received and not yet decoded (for the buffered-bytes gauge)."""
        return 0 if self._closing else self._conn.buffered

    def drain(self) -> asyncio.Future[None]:
        """Stop reading for good; resolves when every frame already received is handled.

        The pending put (if any) finishes and its ack is written, then frames
        still buffered are delivered too; no new bytes are read meanwhile.
        """
        if self._drain_waiter is None:
            self._drain_waiter = self._loop.create_future()
            self._pause("drain")
            self._check_drained()
        return self._drain_waiter

    def close(self, reason: str = "shutdown") -> None:
        """Close the connection after flushing replies already written."""
        self._close(reason)

    def abort(self, reason: str = "shutdown") -> None:
        """Close at once: cancel a pending put (no ack is sent) and reset the socket."""
        if self._put_task is not None:
            self._put_task.cancel()
        self._close(reason)
        if self._transport is not None:
            self._transport.abort()

    # -- processing -------------------------------------------------------------------

    def _process(self) -> None:
        """Turn buffered frames into events until one needs the sink or none are left."""
        events = self._conn.events()
        try:
            for event in events:
                if isinstance(event, RecordBatch):
                    self._count_batch(event)
                    if event.records:
                        self._start_put(event)
                        return
                    self._ack(event)  # non-log signal or all entries skipped
                elif isinstance(event, HandshakeSucceeded):
                    self._write(event.reply)
                    log.debug("forward %s: handshake ok (%r)", self.peer, event.client_hostname)
                elif isinstance(event, HandshakeFailed):
                    self._write(event.reply)  # the failed PONG; close() flushes it first
                    self._metrics.handshake_failures.inc()
                    log.warning("forward %s: handshake failed: %s", self.peer, event.error)
                    self._close("handshake")
                    return
                elif isinstance(event, Heartbeat):
                    self._metrics.heartbeats.labels(kind="nil").inc()
                elif isinstance(event, IgnoredRequest):
                    self._metrics.ignored_requests.inc()
                    log.debug("forward %s: ignored request: %s", self.peer, event.reason)
        except ProtocolError as exc:
            self._fail(exc)
            return
        finally:
            # Stopping early (a put to await) leaves the generator suspended;
            # close it now rather than at garbage collection. Unread frames
            # stay in the decoder for the next call.
            if isinstance(events, Generator):
                events.close()
        self._check_drained()

    def _start_put(self, batch: RecordBatch) -> None:
        self._pause("sink")
        self._put_task = self._loop.create_task(self._deliver(batch))

    async def _deliver(self, batch: RecordBatch) -> None:
        started = self._loop.time()
        try:
            await self._sink.put(batch)
        except asyncio.CancelledError:
            # Aborted at shutdown: not accepted, so no ack; the client resends.
            self._put_task = None
            self._settle()
            raise
        except Exception as exc:
            self._put_task = None
            log.warning(
                "forward %s: sink refused %d records (tag %r): %s; closing without ack",
                self.peer,
                len(batch.records),
                batch.tag,
                exc,
            )
            self._close("sink")
            self._settle()
            return
        self._metrics.put_seconds.observe(self._loop.time() - started)
        self._put_task = None
        if self._closing:
            # Peer gone (or aborted) while we waited: the records are accepted
            # but the ack cannot be delivered; the client may resend (at-least-once).
            self._settle()
            return
        self._ack(batch)
        failpoints.hit("forward.acked")
        self._clock.touch()
        self._process()
        self._track_frame()
        if self._put_task is None:
            self._resume("sink")

    def _ack(self, batch: RecordBatch) -> None:
        if batch.chunk is not None:
            self._write(encode_ack(batch.chunk))
            self._metrics.acks_sent.inc()

    def _count_batch(self, batch: RecordBatch) -> None:
        m = self._metrics
        m.frames.labels(mode=batch.mode).inc()
        if batch.records:
            m.records_received.labels(mode=batch.mode).inc(len(batch.records))
        if batch.signal != 0:
            m.non_log_signals.labels(signal=str(batch.signal)).inc()
        if batch.skipped_markers:
            m.records_skipped.labels(reason="group_marker").inc(batch.skipped_markers)
        if batch.skipped_invalid:
            m.records_skipped.labels(reason="invalid_time").inc(batch.skipped_invalid)

    # -- flow control, timers, closing ------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _pause(self, reason: str) -> None:
        if not self._paused and self._transport is not None and not self._closing:
            self._transport.pause_reading()
        self._paused.add(reason)

    def _resume(self, reason: str) -> None:
        self._paused.discard(reason)
        if not self._paused and self._transport is not None and not self._closing:
            self._transport.resume_reading()

    def _track_frame(self) -> None:
        """After processing: move the frame deadline and our share of the budget."""
        if not self._closing:
            self._clock.track(self._conn.frames, self._conn.buffered)
        held = 0 if self._closing else self._conn.in_frame
        before, self._budgeted = self._budgeted, held
        if self._budget.update(before, held):
            self._shed()

    @property
    def in_frame(self) -> int:
        """Bytes of the request in progress counted against the server's budget."""
        return self._budgeted

    def _release_budget(self) -> None:
        self._budget.update(self._budgeted, 0)
        self._budgeted = 0

    def _shed(self) -> None:
        """Over the server's buffer budget: close the connection holding the most."""
        victim = max(self._connections, key=lambda c: c.in_frame, default=self)
        log.warning(
            "forward %s: closing connection: %d bytes of unfinished requests on all "
            "connections passed max_buffered_bytes (%d); this one held %d",
            victim.peer,
            self._budget.total,
            self._budget.limit,
            victim.in_frame,
        )
        victim.close("overload")

    def _on_deadline(self, deadline: Deadline) -> None:
        if self._closing:
            return
        if deadline.reason == "idle":
            log.debug("forward %s: idle, closing", self.peer)
        else:
            # A client that means well meets neither deadline: say so once.
            log.warning("forward %s: closing connection: %s passed", self.peer, deadline.reason)
        self._close(deadline.reason)

    def _fail(self, exc: ProtocolError) -> None:
        reason = classify_protocol_error(exc)
        self._metrics.malformed_frames.labels(reason=reason).inc()
        # str(exc), not exc: a handler that keeps records (a test's capture, a
        # memory handler) would keep the traceback, its frames and this connection.
        log.warning("forward %s: closing connection: %s", self.peer, str(exc))
        self._close("protocol")

    def _count_close(self, reason: str) -> None:
        self._metrics.connections_closed.labels(reason=reason).inc()

    def _close(self, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._count_close(reason)
        self._release_budget()
        self._clock.stop()
        if self._transport is not None:
            self._transport.close()
            if not self._lost:
                self._abort_handle = self._loop.call_later(_ABORT_AFTER, self._transport.abort)
        self._check_drained()

    def _check_drained(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done() and self._put_task is None:
            waiter.set_result(None)

    def _settle(self) -> None:
        """Leave the registry once the socket is gone and no put is pending."""
        self._check_drained()
        if self._lost and self._put_task is None and not self.done.done():
            self._connections.discard(self)
            if self._peer_addr is not None:
                self._peers[self._peer_addr] -= 1
                if self._peers[self._peer_addr] <= 0:
                    del self._peers[self._peer_addr]
            self.done.set_result(None)

    def __repr__(self) -> str:
        state: Any = "closing" if self._closing else sorted(self._paused) or "reading"
        return f"<ForwardProtocol {self.peer} {state}>"
