"""Decoding one Forward request into typed events (sans-IO).

:func:`decode_request` takes a :class:`~.codec.RawFrame` from the codec and
returns a :class:`~.events.RecordBatch`, :class:`~.events.Heartbeat` or
:class:`~.events.IgnoredRequest`; anything malformed raises
:class:`~logsieve.errors.ProtocolError` with a message naming what was wrong
(the server should close the connection without an ack, like Fluent Bit).

The mode is chosen from the type of the second element (SPEC1):

* array -> Forward ``[tag, [[time, record], ...], option?]``
* str/bin -> PackedForward ``[tag, <<entry>>*, option?]``, or
  CompressedPackedForward when ``compressed: "gzip"`` (or gzip magic)
* time (EventTime, int, float, Timestamp, nil) -> Message
  ``[tag, time, record, option?]``

An entry is ``[time, record]`` or Fluent Bit's v1.5 ``[[time, metadata], record]``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from logsieve.errors import CompressionError, LimitExceeded, MalformedMsgpack, ProtocolError

from .codec import RawFrame, make_unpacker, unpack_options
from .compression import Compression, gunzip_bounded, sniff_compression
from .events import Heartbeat, IgnoredRequest, LogRecord, Mode, RecordBatch, Signal
from .eventtime import TimeKind, classify_time
from .limits import ForwardLimits
from .values import decode_text, decode_tree, require_map

__all__ = ["Options", "decode_request", "parse_options"]

_NS = 1_000_000_000
_ARRAY32 = b"\xdd"  # msgpack array32 header; a 4-byte big-endian count follows
_SIGNALS: dict[int, Signal] = {0: 0, 1: 1, 2: 2}
_EXT_TYPE = msgpack.ExtType
_SEC_NSEC = struct.Struct(">II").unpack
# EventTime seconds from here on are Fluent Bit's group markers (0xFFFFFFFE end,
# 0xFFFFFFFF start) or, with nanoseconds, invalid: classify_time's business.
_MARKER_SECONDS = 0xFFFFFFFE
_TIME_TYPES = (int, float, msgpack.ExtType, msgpack.Timestamp, type(None))


@dataclass(frozen=True, slots=True)
class Options:
    """The option map of a request, reduced to what the server acts on.

    Unknown keys (``size``, Fluent Bit ``add_option`` pairs) are ignored.
    """

    chunk: bytes | None = None
    compressed: Compression = "none"
    signal: Signal = 0
    metadata: dict[Any, Any] | None = None


def parse_options(value: Any, limits: ForwardLimits) -> Options:
    """Read a request's option map; nil or absent means no options.

    Raises ProtocolError for a non-map option, a non-str ``chunk`` (Fluent Bit
    closes on that too), a ``fluent_signal`` outside {0, 1, 2} and a
    ``metadata`` that is not a map.
    """
    if value is None:  # Docker 18.x sends nil as the option.
        return Options()
    # Look keys up as raw bytes: unknown keys (any type, any encoding) are
    # simply never read, as the spec asks.
    raw = require_map(value, "option")
    chunk = raw.get(b"chunk")
    if chunk is not None and not isinstance(chunk, bytes):
        raise ProtocolError(f"option chunk must be a string, got {type(chunk).__name__}")
    signal = raw.get(b"fluent_signal", 0)
    if not isinstance(signal, int) or isinstance(signal, bool) or signal not in _SIGNALS:
        raise ProtocolError(f"option fluent_signal={signal!r}: expected 0, 1 or 2")
    compressed: Compression = "none"
    declared = raw.get(b"compressed")
    if declared == b"gzip":
        compressed = "gzip"
    elif declared == b"zstd":
        compressed = "zstd"
    # "text" (Fluentd's uncompressed) and any other value mean none: the spec
    # says other values are ignored.
    metadata = raw.get(b"metadata")
    if metadata is not None:
        metadata = decode_tree(
            require_map(metadata, "option metadata"), limits.max_nesting_depth, "option metadata"
        )
    return Options(chunk=chunk, compressed=compressed, signal=_SIGNALS[signal], metadata=metadata)


def decode_request(
    frame: RawFrame,
    limits: ForwardLimits | None = None,
    now_ns: Callable[[], int] = time.time_ns,
) -> RecordBatch | Heartbeat | IgnoredRequest:
    """Decode one top-level request.

    Args:
        frame: A complete object from :class:`~.codec.FrameDecoder`.
        limits: Bounds on decompressed size, records and nesting.
        now_ns: Clock used for time ``0``/nil ("now"); injectable for tests.
    """
    limits = limits if limits is not None else ForwardLimits()
    msg = frame.obj
    if msg is None:
        return Heartbeat(frame.size)
    if not isinstance(msg, list):
        return IgnoredRequest(
            f"request is {type(msg).__name__}, not an array ({msg!r:.60})", frame.size
        )
    if len(msg) < 2:
        raise ProtocolError(f"request array has {len(msg)} element(s); need [tag, ...]")
    tag = _tag(msg[0])
    carrier = msg[1]
    if isinstance(carrier, list):
        return _forward(tag, msg, frame.size, limits, now_ns)
    if isinstance(carrier, bytes):
        return _packed(tag, msg, frame.size, limits, now_ns)
    if isinstance(carrier, _TIME_TYPES) and not isinstance(carrier, bool):
        return _message(tag, msg, frame.size, limits, now_ns)
    raise ProtocolError(
        f"second element of request with tag {tag!r} is {type(carrier).__name__}; expected "
        "an array (Forward), str/bin (PackedForward) or a time (Message)"
    )


def _tag(value: Any) -> str:
    if not isinstance(value, bytes):
        raise ProtocolError(f"tag must be a string, got {type(value).__name__} ({value!r:.60})")
    return decode_text(value, "tag")


def _option(msg: list[Any], index: int, mode: Mode, limits: ForwardLimits) -> Options:
    if len(msg) > index + 1:
        raise ProtocolError(f"{mode} request has {len(msg)} elements; at most {index + 1} allowed")
    return parse_options(msg[index] if len(msg) > index else None, limits)


def _message(
    tag: str, msg: list[Any], size: int, limits: ForwardLimits, now_ns: Callable[[], int]
) -> RecordBatch:
    if len(msg) < 3:
        raise ProtocolError(f"message request with tag {tag!r} has no record (2 elements)")
    opts = _option(msg, 3, "message", limits)
    batch = RecordBatch(tag, [], opts.chunk, "message", size, opts.signal)
    if opts.signal != 0:
        return batch  # metrics/traces: not logs, skipped but still acked
    record = require_map(msg[2], "message record")
    _append(batch, msg[1], record, opts.metadata, limits, now_ns)
    return batch


def _forward(
    tag: str, msg: list[Any], size: int, limits: ForwardLimits, now_ns: Callable[[], int]
) -> RecordBatch:
    opts = _option(msg, 2, "forward", limits)
    batch = RecordBatch(tag, [], opts.chunk, "forward", size, opts.signal)
    if opts.signal != 0:
        return batch
    entries: list[Any] = msg[1]
    if len(entries) > limits.max_records_per_frame:
        raise LimitExceeded(
            f"forward request carries {len(entries)} entries "
            f"(limit max_records_per_frame={limits.max_records_per_frame})"
        )
    _entries(batch, entries, limits, now_ns)
    return batch


def _packed(
    tag: str, msg: list[Any], size: int, limits: ForwardLimits, now_ns: Callable[[], int]
) -> RecordBatch:
    opts = _option(msg, 2, "packed_forward", limits)
    payload: bytes = msg[1]
    compression = sniff_compression(payload, opts.compressed)
    mode: Mode = "packed_forward" if compression == "none" else "compressed_packed_forward"
    batch = RecordBatch(tag, [], opts.chunk, mode, size, opts.signal)
    # fluent_signal first: cmetrics/ctraces payloads must not be decoded as logs.
    if opts.signal != 0:
        return batch
    if compression == "zstd":
        raise CompressionError("compressed=zstd is not supported; configure the client for gzip")
    if compression == "gzip":
        payload = gunzip_bounded(payload, limits.max_decompressed_bytes)
    count = _scan_packed(payload, limits)
    # Fast path: let msgpack decode the strings in C (raw=False). The first str that is
    # not UTF-8 sends the whole payload back through the raw path, where such strings
    # stay bytes; either way the records come out the same (values.py's rule).
    try:
        entries, text = _unpack_packed(payload, count, limits, raw=False), True
    except UnicodeDecodeError:
        entries, text = _unpack_packed(payload, count, limits, raw=True), False
    _entries(batch, entries, limits, now_ns, text)
    return batch


def _scan_packed(payload: bytes, limits: ForwardLimits) -> int:
    """Check that ``payload`` is whole entries, at most ``max_records_per_frame``,
    before anything is built: unpacking a dangling array/map header would first
    allocate the length it declares (a few bytes asking for megabytes). msgpack's
    ``skip`` builds no objects. Returns the number of entries."""
    if not payload:
        return 0
    scanner = msgpack.Unpacker(max_buffer_size=len(payload))
    scanner.feed(payload)
    count = end = 0  # complete entries, and the offset just past the last one
    try:
        while end < len(payload):
            scanner.skip()
            count, end = count + 1, scanner.tell()
            if count > limits.max_records_per_frame:
                raise LimitExceeded(
                    f"packed_forward payload carries more than {limits.max_records_per_frame} "
                    "entries (limit max_records_per_frame)"
                )
    except msgpack.OutOfData:
        raise ProtocolError(
            f"PackedForward payload ends inside entry {count} "
            f"({len(payload) - end} trailing bytes of {len(payload)})"
        ) from None
    except (ValueError, msgpack.UnpackException) as exc:
        raise MalformedMsgpack(
            f"malformed msgpack in PackedForward entry {count}: {type(exc).__name__}: {exc}"
        ) from exc
    return count


def _unpack_packed(payload: bytes, count: int, limits: ForwardLimits, *, raw: bool) -> list[Any]:
    """The ``count`` entries of a payload :func:`_scan_packed` checked, in one C call:
    the payload behind an array32 header of ``count``, with the limits
    :func:`_iter_packed` applies (bounds of ``len(payload)``, so the header changes
    none). Any error other than ``UnicodeDecodeError`` (the caller's raw=True retry)
    goes through :func:`_iter_packed` again, which names the entry."""
    if not payload:
        return []
    try:
        entries: list[Any] = msgpack.unpackb(
            _ARRAY32 + count.to_bytes(4, "big") + payload,
            **unpack_options(limits, len(payload), raw=raw),
        )
    except UnicodeDecodeError:
        raise
    except Exception:
        return list(_iter_packed(payload, limits, raw=raw))  # raises with the entry named
    return entries


def _iter_packed(payload: bytes, limits: ForwardLimits, *, raw: bool) -> Iterable[Any]:
    """Yield the entries of a concatenated msgpack stream, bounded in count."""
    if not payload:
        return
    unpacker = make_unpacker(limits, len(payload), raw=raw)
    unpacker.feed(payload)
    count = 0
    end = 0  # offset just past the last complete entry
    try:
        for entry in unpacker:
            count += 1
            if count > limits.max_records_per_frame:
                raise LimitExceeded(
                    f"packed_forward payload carries more than {limits.max_records_per_frame} "
                    "entries (limit max_records_per_frame)"
                )
            end = unpacker.tell()
            yield entry
    except (ProtocolError, UnicodeDecodeError):  # the latter: raw=False met a non-UTF-8 str
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise MalformedMsgpack(
            f"malformed msgpack in PackedForward entry {count}: {type(exc).__name__}: {exc}"
        ) from exc
    # Not unpacker.tell(): the C unpacker also counts bytes of a half-parsed
    # trailing entry as consumed.
    if end != len(payload):
        raise ProtocolError(
            f"PackedForward payload ends inside entry {count} "
            f"({len(payload) - end} trailing bytes of {len(payload)})"
        )


def _entries(
    batch: RecordBatch,
    entries: Iterable[Any],
    limits: ForwardLimits,
    now_ns: Callable[[], int],
    text: bool = False,
) -> None:
    """Append each ``[time, record]`` entry; ``text``: strings are already ``str``."""
    records, tag = batch.records, batch.tag
    for index, entry in enumerate(entries):
        if text and type(entry) is list and len(entry) == 2:
            # The entry Fluent Bit and Fluentd send, [EventTime, flat record], with a
            # time that is neither "now" (0), a group marker nor invalid: what _append
            # makes of it, without its calls (~1.5 µs a record of decode's ~6).
            header, record = entry
            if type(header) is _EXT_TYPE and type(record) is dict and header.code == 0:
                data = header.data
                if len(data) == 8:
                    sec, nsec = _SEC_NSEC(data)
                    if nsec < _NS and 0 < sec < _MARKER_SECONDS and _flat_text(record):
                        ns = sec * _NS + nsec
                        records.append(LogRecord(tag, ns / _NS, ns, record, None))
                        continue
        if not isinstance(entry, list) or len(entry) != 2:
            raise ProtocolError(
                f"entry {index} must be a [time, record] array, got {_describe(entry)}"
            )
        header, record = entry
        metadata: dict[Any, Any] | None = None
        if isinstance(header, list):
            # Fluent Bit v1.5 form: [[time, metadata], record].
            if len(header) < 1:
                raise ProtocolError(f"entry {index} has an empty [time, metadata] header")
            if len(header) > 1:
                metadata = decode_tree(
                    require_map(header[1], f"entry {index} metadata"),
                    limits.max_nesting_depth,
                    "metadata",
                )
            header = header[0]
        _append(
            batch,
            header,
            require_map(record, f"entry {index} record"),
            metadata,
            limits,
            now_ns,
            text,
        )


def _append(
    batch: RecordBatch,
    raw_time: Any,
    record: dict[Any, Any],
    metadata: dict[Any, Any] | None,
    limits: ForwardLimits,
    now_ns: Callable[[], int],
    text: bool = False,
) -> None:
    kind, ns = classify_time(raw_time, now_ns)
    if kind is TimeKind.GROUP_MARKER:
        batch.skipped_markers += 1
        return
    if kind is TimeKind.INVALID:
        batch.skipped_invalid += 1
        return
    batch.records.append(
        LogRecord(
            tag=batch.tag,
            time=ns / _NS,
            time_ns=ns,
            record=(
                record
                if text and _flat_text(record)
                else decode_tree(record, limits.max_nesting_depth)
            ),
            metadata=metadata,
        )
    )


_SCALARS = frozenset({str, int, float, bool, type(None)})


_STR = frozenset({str})


def _flat_text(record: dict[Any, Any]) -> bool:
    """True when the record needs no conversion: str keys, scalar values (no bytes).

    The common log record (``{"log": ..., "host": ...}`` from a raw=False unpack);
    anything else (bin values, nested maps that need a depth check) goes through
    :func:`decode_tree`. (``issuperset`` of ``map``: the loop runs in C.)
    """
    return _STR.issuperset(map(type, record)) and _SCALARS.issuperset(map(type, record.values()))


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return f"an array of {len(value)}"
    return f"{type(value).__name__} ({value!r:.40})"
