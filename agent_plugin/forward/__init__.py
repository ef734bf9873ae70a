"""The Fluent Forward protocol, sans-IO: codec, event modes, acks and the handshake.

Nothing here touches a socket or an event loop: bytes go in, typed events and
bytes to write come out. A server drives one :class:`ServerConnection` per
accepted connection (see :mod:`.connection` for the full loop):

* ``initiate()`` -> bytes to write on accept (HELO when a
  :class:`SecurityConfig` is given, else nothing);
* ``feed(data)`` then ``for event in events()`` -> :class:`RecordBatch`,
  :class:`Heartbeat`, :class:`IgnoredRequest`, :class:`HandshakeSucceeded`,
  :class:`HandshakeFailed`;
* :func:`encode_ack` of ``RecordBatch.chunk`` once its records are accepted;
* :class:`~logsieve.errors.ProtocolError` means close without an ack.

Lower layers are public too: :class:`FrameDecoder` (msgpack framing),
:func:`decode_request` (mode decoding), :class:`ServerHandshake` and
:class:`ClientHandshake` (HELO/PING/PONG), :class:`EventTime`.
"""

from __future__ import annotations

from .ack import encode_ack
from .codec import FrameDecoder, RawFrame
from .connection import UDP_HEARTBEAT_REPLY, ConnectionState, ServerConnection
from .events import (
    Event,
    HandshakeFailed,
    HandshakeSucceeded,
    Heartbeat,
    IgnoredRequest,
    LogRecord,
    Mode,
    RecordBatch,
    Signal,
)
from .eventtime import EventTime
from .handshake import (
    Helo,
    Ping,
    SecurityConfig,
    ServerHandshake,
    password_digest,
    ping_digest,
    pong_digest,
)
from .handshake_client import ClientHandshake, Pong
from .limits import ForwardLimits
from .modes import decode_request

__all__ = [
    "UDP_HEARTBEAT_REPLY",
    "ClientHandshake",
    "ConnectionState",
    "Event",
    "EventTime",
    "ForwardLimits",
    "FrameDecoder",
    "HandshakeFailed",
    "HandshakeSucceeded",
    "Heartbeat",
    "Helo",
    "IgnoredRequest",
    "LogRecord",
    "Mode",
    "Ping",
    "Pong",
    "RawFrame",
    "RecordBatch",
    "SecurityConfig",
    "ServerConnection",
    "ServerHandshake",
    "Signal",
    "decode_request",
    "encode_ack",
    "password_digest",
    "ping_digest",
    "pong_digest",
]
