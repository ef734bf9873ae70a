"""One Forward server connection as a sans-IO state machine.

:class:`ServerConnection` ties the pieces together: the frame codec, the
optional shared-key handshake and the mode decoder. The asyncio server owns
the socket and drives it like this::

    conn = ServerConnection(limits, security)        # security=None: no handshake
    if hello := conn.initiate():                     # HELO, only with security
        writer.write(hello)
    while data := await reader.read(65536):
        conn.feed(data)
        try:
            for event in conn.events():
                match event:
                    case RecordBatch():
                        await pipeline.put(event)   # the batch; backpressure here
                        if event.chunk is not None:
                            writer.write(encode_ack(event.chunk))
                    case HandshakeSucceeded():
                        writer.write(event.reply)
                    case HandshakeFailed():
                        writer.write(event.reply); await writer.drain()
                        log.warning(event.error); return close()
                    case Heartbeat() | IgnoredRequest():
                        ...                                 # count / debug log
        except ProtocolError as exc:                        # bad peer: one warning, close
            log.warning(exc); return close()

The consumer may stop iterating ``events()`` at any point (e.g. to wait for a
full queue) and call it again later; undelivered frames stay buffered.
States: ``AWAIT_PING`` (security on, before the PING) -> ``TRANSPORT`` ->
``CLOSED`` (after a failed handshake or any ProtocolError; every later call
raises ProtocolError).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from enum import Enum

from logsieve.errors import LimitExceeded, ProtocolError

from .codec import FrameDecoder
from .events import Event, HandshakeFailed
from .handshake import SecurityConfig, ServerHandshake
from .limits import ForwardLimits
from .modes import decode_request

__all__ = ["UDP_HEARTBEAT_REPLY", "ConnectionState", "ServerConnection"]

UDP_HEARTBEAT_REPLY = b"\x00"
"""Reply to every UDP heartbeat datagram on the Forward port (Fluentd sends
``"\\0"`` and waits for any datagram back; read at most 128 bytes)."""


class ConnectionState(Enum):
    """Where a :class:`ServerConnection` is in its life."""

    AWAIT_PING = "await_ping"
    TRANSPORT = "transport"
    CLOSED = "closed"


class ServerConnection:
    """Bytes in, events out, for one accepted Forward connection.

    Args:
        limits: Frame, decompression, record and nesting bounds.
        security: Shared-key/user settings; None disables the handshake.
        now_ns: Clock for records whose time is 0/nil ("now").
        random_bytes: Source of the HELO nonce and auth salt.
    """

    def __init__(
        self,
        limits: ForwardLimits | None = None,
        security: SecurityConfig | None = None,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.limits = limits if limits is not None else ForwardLimits()
        self._decoder = FrameDecoder(self.limits)
        self._now_ns = now_ns
        self._handshake = (
            ServerHandshake(security, random_bytes=random_bytes) if security is not None else None
        )
        self._state = (
            ConnectionState.AWAIT_PING if self._handshake is not None else ConnectionState.TRANSPORT
        )
        if self._state is ConnectionState.AWAIT_PING:
            # An unauthenticated peer may make us buffer one small PING, no more.
            self._decoder.limit_frames(self.limits.max_handshake_bytes, "max_handshake_bytes")
        self._closed_reason = ""

    @property
    def state(self) -> ConnectionState:
        """The current state."""
        return self._state

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events (for a gauge)."""
        return self._decoder.buffered

    @property
    def in_frame(self) -> int:
        """Bytes of the request being received (the server's buffer budget counts them)."""
        return self._decoder.in_frame

    @property
    def frames(self) -> int:
        """Complete requests decoded so far (a change means a request finished)."""
        return self._decoder.frames

    def initiate(self) -> bytes:
        """Bytes to write right after accept: the HELO, or ``b""`` without security."""
        return self._handshake.helo() if self._handshake is not None else b""

    def feed(self, data: bytes) -> None:
        """Hand over bytes read from the socket, in any split."""
        self._check_open()
        self._decoder.feed(data)

    def events(self) -> Iterator[Event]:
        """Yield the events for every complete frame fed so far.

        Raises ProtocolError (and moves to ``CLOSED``) on malformed input; the
        connection must then be closed without acknowledging the frame.
        """
        self._check_open()
        while self._state is not ConnectionState.CLOSED:
            event: Event
            try:
                frame = next(self._decoder, None)
            except LimitExceeded as exc:
                if self._handshake is None or self._state is not ConnectionState.AWAIT_PING:
                    self._close(str(exc))
                    raise
                # Too big to be a PING: the handshake fails, as it would for the
                # whole data request a client without a shared key sends here.
                refused = self._handshake.refuse(exc)
                self._close(str(refused.error))
                yield refused
                return
            except ProtocolError as exc:
                self._close(str(exc))
                raise
            if frame is None:
                return
            try:
                if self._handshake is not None and self._state is ConnectionState.AWAIT_PING:
                    # Before a successful handshake, whatever arrives is taken as
                    # the PING; a data request here fails the handshake.
                    event = self._handshake.receive_ping(frame.obj)
                    if isinstance(event, HandshakeFailed):
                        self._close(str(event.error))
                    else:
                        self._state = ConnectionState.TRANSPORT
                        self._decoder.limit_frames(None)
                else:
                    event = decode_request(frame, self.limits, self._now_ns)
            except ProtocolError as exc:
                self._close(str(exc))
                raise
            yield event

    def _close(self, reason: str) -> None:
        self._state = ConnectionState.CLOSED
        self._closed_reason = reason

    def _check_open(self) -> None:
        if self._state is ConnectionState.CLOSED:
            raise ProtocolError(f"connection already closed: {self._closed_reason}")
