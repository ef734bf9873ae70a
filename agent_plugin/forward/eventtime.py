"""Forward-protocol timestamps: EventTime (ext 0), integers, floats, markers.

The wire allows several time encodings (FORWARD.md §1.5, §5.1): EventTime as
msgpack ext type 0 with 8 bytes (uint32 BE seconds, uint32 BE nanoseconds) in
either fixext8 (``d7 00``) or ext8 (``c7 08 00``) form, a plain unsigned
integer of seconds, a float (Fluentd drops it, Fluent Bit only rejects it in
Message mode; we accept it), and msgpack's own Timestamp (ext -1). ``0`` or nil
means "now". Fluent Bit's group start/end markers are times -1/-2, which travel
as EventTime seconds 0xFFFFFFFF/0xFFFFFFFE with nanoseconds 0.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgpack

from logsieve.errors import ProtocolError

__all__ = ["MAX_EVENT_SECONDS", "EventTime", "TimeKind", "classify_time"]

_SEC_NSEC = struct.Struct(">II")
_NS = 1_000_000_000
_GROUP_MARKER_SECONDS = (0xFFFFFFFF, 0xFFFFFFFE)
# A usable time re-encodes as EventTime upstream (uint32 seconds, the two markers
# excluded): an integer 2**64 - 1 or a float 1e300 is a value, not a time; both used to
# get through (one crashed the flag writer, one raised OverflowError here).
_END_SECONDS = 0xFFFFFFFE
MAX_EVENT_SECONDS = float(_END_SECONDS)
"""Event times at or past this (2106-02-07) cannot travel as an EventTime."""


@dataclass(frozen=True, slots=True)
class EventTime:
    """Seconds and nanoseconds, as Forward's ext type 0 carries them."""

    seconds: int
    nanoseconds: int

    def __post_init__(self) -> None:
        if not (0 <= self.seconds <= 0xFFFFFFFF and 0 <= self.nanoseconds < _NS):
            raise ValueError(
                f"EventTime({self.seconds}, {self.nanoseconds}) out of range: "
                "seconds must fit uint32, nanoseconds must be < 1e9"
            )

    @classmethod
    def from_ext(cls, data: bytes) -> EventTime:
        """Decode the 8-byte payload of ext type 0 (ProtocolError otherwise)."""
        sec, nsec = _unpack_ext0(data)
        if nsec >= _NS:
            raise ProtocolError(f"EventTime nanoseconds {nsec} out of range (at most {_NS - 1})")
        return cls(sec, nsec)

    @classmethod
    def from_ns(cls, ns: int) -> EventTime:
        """EventTime for a nanosecond Unix timestamp (e.g. ``time.time_ns()``)."""
        sec, nsec = divmod(ns, _NS)
        return cls(sec, nsec)

    def to_ext(self) -> msgpack.ExtType:
        """The msgpack ext object; ``msgpack.packb`` writes it as fixext8 ``d7 00``."""
        return msgpack.ExtType(0, _SEC_NSEC.pack(self.seconds, self.nanoseconds))

    @property
    def ns(self) -> int:
        """Nanoseconds since the Unix epoch."""
        return self.seconds * _NS + self.nanoseconds


def _unpack_ext0(data: bytes) -> tuple[int, int]:
    if len(data) != 8:
        raise ProtocolError(
            f"EventTime (ext type 0) must carry 8 bytes, got {len(data)}: {data[:16]!r}"
        )
    sec, nsec = _SEC_NSEC.unpack(data)
    return int(sec), int(nsec)


class TimeKind(Enum):
    """What a decoded entry time means for the record that carries it."""

    VALID = "valid"
    GROUP_MARKER = "group_marker"  # Fluent Bit group start/end: never an event
    INVALID = "invalid"  # negative, not finite or past 2106: skipped and counted


def classify_time(value: Any, now_ns: Callable[[], int]) -> tuple[TimeKind, int]:
    """Normalise a wire time to Unix nanoseconds and say whether it is usable.

    Returns ``(kind, ns)``; ``ns`` is 0 unless ``kind`` is ``VALID``. A *type*
    that can never be a time (str, bin, map, array, bool, an ext other than 0 or
    -1) raises ProtocolError, since it means the peer speaks something else;
    a well-typed but unusable *value* is reported as ``INVALID`` so the caller
    can skip one record instead of dropping the connection.
    """
    if type(value) is msgpack.ExtType and value.code == 0 and len(value.data) == 8:
        # EventTime, what Fluent Bit and Fluentd send: the common case, tested first.
        sec, nsec = _SEC_NSEC.unpack(value.data)
        if nsec == 0 and sec in _GROUP_MARKER_SECONDS:
            return TimeKind.GROUP_MARKER, 0
        if nsec >= _NS:
            return TimeKind.INVALID, 0
        ns = sec * _NS + nsec
        return TimeKind.VALID, (ns if ns else now_ns())
    if value is None:
        return TimeKind.VALID, now_ns()
    if isinstance(value, bool):
        # msgpack true/false unpack as bool, an int subclass: not a time.
        raise ProtocolError(f"event time has bad type bool ({value!r})")
    if isinstance(value, int):
        if value in (-1, -2):
            return TimeKind.GROUP_MARKER, 0
        if value < 0 or value >= _END_SECONDS:
            return TimeKind.INVALID, 0
        return TimeKind.VALID, (value * _NS if value else now_ns())
    if isinstance(value, msgpack.ExtType):
        if value.code != 0:
            raise ProtocolError(
                f"event time is ext type {value.code}; only EventTime (ext 0) is a time"
            )
        _unpack_ext0(value.data)  # raises: a length other than 8
        # A well-formed ext 0 of an ExtType subclass: decode it as the fast path does.
        return classify_time(msgpack.ExtType(0, bytes(value.data)), now_ns)
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0 or value >= _END_SECONDS:
            if value in (-1.0, -2.0):
                return TimeKind.GROUP_MARKER, 0
            return TimeKind.INVALID, 0
        # round() keeps e.g. 1.5 -> 1_500_000_000 exact despite binary floats.
        return TimeKind.VALID, (round(value * _NS) if value else now_ns())
    if isinstance(value, msgpack.Timestamp):
        ns = int(value.to_unix_nano())
        if ns < 0 or ns >= _END_SECONDS * _NS:
            return TimeKind.INVALID, 0
        return TimeKind.VALID, (ns if ns else now_ns())
    raise ProtocolError(
        f"event time has bad type {type(value).__name__} ({value!r:.60}); "
        "expected EventTime, integer or float"
    )
