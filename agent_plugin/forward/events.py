"""Typed results of decoding a Forward connection: records and events.

The consumer (the asyncio server) receives these from
:meth:`~.connection.ServerConnection.events` and dispatches on the class:

* :class:`RecordBatch` - one data request (any mode). Hand ``records`` to the
  pipeline; once accepted, write :func:`~.ack.encode_ack` of ``chunk`` if it is
  not None.
* :class:`Heartbeat` - a msgpack nil request; nothing to do.
* :class:`IgnoredRequest` - a request that is not an array (the spec says
  ignore); log and count it, keep the connection.
* :class:`HandshakeSucceeded` - write ``reply`` (the PONG); data may follow.
* :class:`HandshakeFailed` - write ``reply`` (a failed PONG), drain, close,
  log ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from logsieve.errors import HandshakeError

__all__ = [
    "Event",
    "HandshakeFailed",
    "HandshakeSucceeded",
    "Heartbeat",
    "IgnoredRequest",
    "LogRecord",
    "Mode",
    "RecordBatch",
    "Signal",
]

Mode = Literal["message", "forward", "packed_forward", "compressed_packed_forward"]
"""Carrier mode of a data request, detected from its second element."""

Signal = Literal[0, 1, 2]
"""``fluent_signal`` option: 0 logs (also when absent), 1 metrics, 2 traces."""


@dataclass(slots=True)
class LogRecord:
    """One log event as a pipeline stage sees it.

    Strings inside ``record`` and ``metadata`` (keys and values, at any depth)
    are ``str`` when their bytes are valid UTF-8 and stay ``bytes`` otherwise:
    the unpacker cannot tell msgpack str from bin, and nothing is lost or
    replaced. Non-string keys (e.g. integers) are kept as they are.

    Attributes:
        tag: The request's tag, decoded as UTF-8.
        time: Event time in Unix seconds (float, for convenience).
        time_ns: The same time in integer nanoseconds (exact).
        record: The record map.
        metadata: Fluent Bit v1.5 metadata (``[[time, metadata], record]``
            entries, or the ``metadata`` option in Message mode); None if the
            event carried none. An empty map ``{}`` stays ``{}``.
    """

    tag: str
    time: float
    time_ns: int
    record: dict[Any, Any]
    metadata: dict[Any, Any] | None = None


@dataclass(slots=True)
class RecordBatch:
    """The records of one data request, plus what is needed to acknowledge it.

    Attributes:
        tag: Tag of the request (every record carries it too).
        records: Decoded log records, in wire order. Empty for non-log signals
            and when every entry was skipped.
        chunk: The ``chunk`` option's raw bytes, or None. When not None the
            client waits for ``{"ack": chunk}``: write ``encode_ack(chunk)``
            after the records are accepted downstream (never before, never for
            records that were dropped).
        mode: The carrier mode the request used.
        size: Bytes the request took on the wire.
        signal: ``fluent_signal`` (0 logs, 1 metrics, 2 traces). For 1 and 2
            the payload is not decoded and ``records`` is empty, but the chunk
            is still acknowledged.
        skipped_markers: Fluent Bit group start/end markers that were dropped.
        skipped_invalid: Entries dropped for an unusable time (negative, not
            finite, nanoseconds out of range).
    """

    tag: str
    records: list[LogRecord]
    chunk: bytes | None
    mode: Mode
    size: int
    signal: Signal = 0
    skipped_markers: int = 0
    skipped_invalid: int = 0

    @property
    def needs_ack(self) -> bool:
        """True when the client asked for an ack (the request had ``chunk``)."""
        return self.chunk is not None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A msgpack nil request: the spec's no-op keep-alive."""

    size: int = 1


@dataclass(frozen=True, slots=True)
class IgnoredRequest:
    """A top-level value that is not an array; the spec says to ignore it."""

    reason: str
    size: int


@dataclass(frozen=True, slots=True)
class HandshakeSucceeded:
    """The PING checked out: write ``reply`` (the PONG) and carry on.

    ``client_hostname`` and ``username`` are the raw bytes the client sent
    (``username`` is empty when user auth is off).
    """

    reply: bytes
    client_hostname: bytes
    username: bytes = b""


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """Authentication failed: write ``reply`` (a failed PONG), then close.

    ``error`` names the reason; log it and do not raise it further (a bad peer
    loses its connection, the server lives on).
    """

    reply: bytes
    error: HandshakeError


Event = RecordBatch | Heartbeat | IgnoredRequest | HandshakeSucceeded | HandshakeFailed
"""Everything :meth:`ServerConnection.events` can yield."""
