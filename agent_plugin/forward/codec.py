"""Streaming msgpack framing for a Forward connection (sans-IO).

A Forward connection is a stream of msgpack objects back to back with no length
prefix, and one object may be split across any number of TCP reads (Fluent Bit
writes header, entries and options separately). :class:`FrameDecoder` is fed
whatever bytes arrived and yields each complete top-level object as a
:class:`RawFrame`. It knows nothing about Forward semantics; see
:mod:`.modes` for that.

Usage::

    decoder = FrameDecoder(ForwardLimits())
    decoder.feed(data)            # any split, even one byte
    for frame in decoder:         # zero or more complete objects
        ...

Any error is a :class:`~logsieve.errors.ProtocolError`; after one the decoder
is poisoned (every later call raises again), because a msgpack stream cannot be
resynchronised and the connection must close.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from logsieve.errors import LimitExceeded, MalformedMsgpack, ProtocolError

from .limits import ForwardLimits

__all__ = ["FrameDecoder", "RawFrame", "make_unpacker", "unpack_options"]

# What msgpack-python raises for bad input: FormatError/StackError/ExtraData are
# ValueError subclasses, limit breaches are plain ValueError, and a map keyed by
# an array is a TypeError ("unhashable type: 'list'").
_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One complete top-level msgpack object and its size on the wire.

    ``obj`` is unpacked with ``raw=True``: every msgpack str *and* bin is
    ``bytes`` (the two cannot be told apart afterwards), arrays are lists, maps
    are dicts with keys of any type, ext types are ``msgpack.ExtType`` and ext -1
    is ``msgpack.Timestamp``.
    """

    obj: Any
    size: int


_new_tuple = tuple.__new__


def _ext_type(code: int, data: bytes) -> msgpack.ExtType:
    """The same ``msgpack.ExtType`` the unpacker would build, one Python frame cheaper.

    ``ExtType(code, data)`` re-checks in Python what the unpacker already guarantees
    (an int code in 0..127, bytes data); every EventTime is an ext, so this runs once
    per record (a 500-record PackedForward payload unpacks in 6-26% less time than with
    msgpack's ``ExtType``: ``bench/stage_costs.py``).
    """
    ext: msgpack.ExtType = _new_tuple(msgpack.ExtType, (code, data))
    return ext


def make_unpacker(limits: ForwardLimits, max_buffer_size: int, *, raw: bool = True) -> Any:
    """Build a ``msgpack.Unpacker`` configured for untrusted Forward input.

    ``raw=True`` because PackedForward entries (Fluentd sends them as str32),
    handshake salts and nonces (Fluent Bit sends random bytes as str) and user
    records may all hold bytes that are not UTF-8. ``strict_map_key=False``
    because records may have integer keys. The length limits stop a short
    header from pre-allocating a huge list, dict or buffer.

    ``raw=False`` is the fast path for a PackedForward payload: msgpack decodes
    every str as UTF-8 in C and raises ``UnicodeDecodeError`` on the first
    one that is not, so the caller can fall back to ``raw=True``.
    """
    return msgpack.Unpacker(
        max_buffer_size=max_buffer_size, **unpack_options(limits, max_buffer_size, raw=raw)
    )


def unpack_options(limits: ForwardLimits, max_bytes: int, *, raw: bool = True) -> dict[str, Any]:
    """The keyword arguments shared by :func:`make_unpacker` and ``msgpack.unpackb``."""
    return {
        "raw": raw,
        "strict_map_key": False,
        "max_str_len": max_bytes,
        "max_bin_len": max_bytes,
        "max_ext_len": max_bytes,
        # The Forward entries array is the one legitimately long array.
        "max_array_len": max(limits.max_records_per_frame, limits.max_collection_len),
        "max_map_len": limits.max_collection_len,
        "ext_hook": _ext_type,
    }


# Top-level container headers checked before the frame completes:
# marker -> (length width in bytes, kind).
_TOP_HEADERS = {0xDC: (2, "array"), 0xDD: (4, "array"), 0xDE: (2, "map"), 0xDF: (4, "map")}
_HEADER_BYTES = 5  # marker + the widest length


class FrameDecoder:
    """Incremental decoder of a msgpack object stream with a bounded frame size.

    Memory follows the bytes received, never the lengths a peer declares. Two
    unpackers are fed the same bytes: a scanner (msgpack's ``skip``, which
    builds no objects) finds where each top-level object ends, and only then is
    the object unpacked from the other, which so never meets a header whose
    items have not arrived. Unpacking as bytes arrive would let each array/map
    header pre-allocate its declared length (``PyList_New(n)``): 1,000 nested
    ``array32`` headers of 250,000 items, 5 KB on the wire, held ~66 MiB per
    connection. Once an object is complete every declared item is present, so
    what it builds is proportional to its bytes. A top-level array/map header
    over its limit is refused as soon as it arrives; nested ones when their
    frame completes.

    ``limits.max_frame_bytes`` (or a tighter :meth:`limit_frames`) bounds the
    bytes of the frame currently being assembled, i.e. everything received
    since the end of the last complete frame. Bytes fed but not yet offered to
    the unpackers are held until the caller iterates; bound them by bounding
    each ``feed`` (one socket read).
    """

    def __init__(self, limits: ForwardLimits | None = None) -> None:
        self._limits = limits if limits is not None else ForwardLimits()
        max_bytes = self._limits.max_frame_bytes
        self._scanner = msgpack.Unpacker(max_buffer_size=max_bytes)
        self._unpacker = make_unpacker(self._limits, max_bytes)
        options = unpack_options(self._limits, max_bytes)
        self._max_len: dict[str, int] = {
            "array": options["max_array_len"],
            "map": options["max_map_len"],
        }
        self._pending: deque[memoryview] = deque()
        self._fed = 0  # bytes handed to the unpackers so far
        self._frame_start = 0  # stream offset where the current frame began
        self._frame_limit = (max_bytes, "max_frame_bytes")
        self._frames = 0
        # The current frame's first bytes, for the top-level header check, and the
        # last piece offered (at stream offset _last_at), where any still missing are.
        self._head = b""
        self._header_checked = False
        self._last_piece = memoryview(b"")
        self._last_at = 0
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a complete frame."""
        return self._fed - self._frame_start + sum(len(v) for v in self._pending)

    @property
    def frames(self) -> int:
        """Complete frames returned so far."""
        return self._frames

    @property
    def in_frame(self) -> int:
        """Bytes of the frame being assembled that the unpackers already hold."""
        return self._fed - self._frame_start

    def limit_frames(self, limit: int | None, name: str = "max_frame_bytes") -> None:
        """Bound frames to ``limit`` bytes (at most ``max_frame_bytes``; None: back to
        it) and name ``name`` in the error, e.g. a tighter bound before authentication."""
        cap = self._limits.max_frame_bytes
        self._frame_limit = (cap, "max_frame_bytes") if limit is None else (min(limit, cap), name)

    def feed(self, data: bytes) -> None:
        """Queue ``data`` (any slice of the stream); iterate to get frames out."""
        self._check_alive()
        if data:
            # bytes() is free for bytes and snapshots a bytearray the caller may reuse.
            self._pending.append(memoryview(bytes(data)))

    def __iter__(self) -> Iterator[RawFrame]:
        return self

    def __next__(self) -> RawFrame:
        """Return the next complete frame, or stop when more bytes are needed."""
        self._check_alive()
        try:
            return self._next_frame()
        except ProtocolError as exc:
            # A copy, not ``exc``: its traceback holds this frame, so keeping it would
            # tie the decoder (and its buffers) into a cycle only the cyclic GC
            # frees, which the server runs rarely (app.GC_THRESHOLD). Measured:
            # ~80 KiB kept per connection closed for bad msgpack.
            self._error = type(exc)(str(exc))
            raise

    def _next_frame(self) -> RawFrame:
        while True:
            try:
                self._scanner.skip()
            except msgpack.OutOfData:
                if not self._header_checked:
                    self._check_header()
                if not self._offer_pending():
                    raise StopIteration from None
                continue
            except _UNPACK_ERRORS as exc:
                raise self._error_for(exc) from exc
            try:
                obj = self._unpacker.unpack()  # whole: the scanner just passed its end
            except _UNPACK_ERRORS as exc:
                raise self._error_for(exc) from exc
            end = self._scanner.tell()
            frame = RawFrame(obj, end - self._frame_start)
            self._frame_start = end
            self._frames += 1
            self._header_checked = False
            self._head = b""
            return frame

    def _error_for(self, exc: Exception) -> ProtocolError:
        # msgpack reports its max_*_len bounds as a ValueError naming the bound:
        # that is a limit, not bad bytes (the one place its text is read).
        if isinstance(exc, ValueError) and "exceeds max_" in str(exc):
            return LimitExceeded(f"request at stream offset {self._frame_start}: {exc}")
        return MalformedMsgpack(
            f"malformed msgpack at stream offset {self._frame_start}: {type(exc).__name__}: {exc}"
        )

    def _check_header(self) -> None:
        """Refuse a top-level array/map whose declared length is over its limit,
        without waiting for its items (the scanner does not look at lengths).

        Runs whenever the scanner ran out of bytes, i.e. after each piece is
        offered: the bytes of the frame's start not yet in ``_head`` can only be
        in the last piece.
        """
        want = self._frame_start + len(self._head)
        if want < self._fed and len(self._head) < _HEADER_BYTES:
            at = want - self._last_at
            self._head += bytes(self._last_piece[at : at + _HEADER_BYTES - len(self._head)])
        head = self._head
        if not head:
            return
        spec = _TOP_HEADERS.get(head[0])
        if spec is None:
            self._header_checked = True
            return
        width, kind = spec
        if len(head) < 1 + width:
            return
        declared = int.from_bytes(head[1 : 1 + width], "big")
        limit = self._max_len[kind]
        if declared > limit:
            raise LimitExceeded(
                f"request at stream offset {self._frame_start}: "
                f"{declared} exceeds max_{kind}_len({limit})"
            )
        self._header_checked = True

    def _offer_pending(self) -> bool:
        """Move queued bytes into the unpackers without exceeding the frame bound.

        Returns False when nothing is queued (the caller must wait for data).
        """
        if not self._pending:
            return False
        limit, name = self._frame_limit
        in_frame = self._fed - self._frame_start
        room = limit - in_frame
        if room <= 0:
            raise LimitExceeded(
                f"request exceeds {name}: more than {in_frame} bytes "
                f"without a complete msgpack object (limit {limit})"
            )
        head = self._pending.popleft()
        piece, rest = head[:room], head[room:]
        if rest:
            self._pending.appendleft(rest)
        try:
            self._scanner.feed(piece)
            self._unpacker.feed(piece)
        except msgpack.BufferFull as exc:  # pragma: no cover - `room` prevents it
            raise LimitExceeded(
                f"request exceeds {name}: {in_frame + len(piece)} bytes (limit {limit})"
            ) from exc
        self._last_piece, self._last_at = piece, self._fed
        self._fed += len(piece)
        return True

    def _check_alive(self) -> None:
        if self._error is not None:
            # The same kind as the first failure: the decoder refuses for that reason.
            raise type(self._error)(f"decoder already failed: {self._error}")
