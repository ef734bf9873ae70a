"""Hand-written Forward-protocol bytes shared by the forward tests.

Byte strings follow FORWARD.md §2 (golden fixtures) and §3-4 (what Fluent Bit
and Fluentd actually send); helpers build the rest with ``msgpack.packb``.
"""

from __future__ import annotations

import gzip
import struct
from typing import Any

import msgpack

# EventTime 1672531200.123456789 (FORWARD.md §2).
T_SEC = 1672531200
T_NSEC = 123456789
T_NS = T_SEC * 1_000_000_000 + T_NSEC
ET_FIXEXT8 = bytes.fromhex("d7 00 63b0cd00 075bcd15")
ET_EXT8 = bytes.fromhex("c7 08 00 63b0cd00 075bcd15")
GROUP_START = bytes.fromhex("d7 00 ffffffff 00000000")
GROUP_END = bytes.fromhex("d7 00 fffffffe 00000000")

REC_HI = b"\x81\xa3msg\xa2hi"  # {"msg": "hi"}
TAG = b"\xa7app.log"

# Forward, legacy entry [t, rec] (Fluent Bit < 5.0.5, retain_metadata... false).
FWD_LEGACY = b"\x92" + TAG + b"\x91\x92" + ET_FIXEXT8 + REC_HI
# Forward, v1.5 entry [[t, {}], rec] (Fluent Bit >= 5.0.5 default).
FWD_V15 = b"\x92" + TAG + b"\x91\x92\x92" + ET_FIXEXT8 + b"\x80" + REC_HI

# Fluentd's chunk id: Base64 of 16 bytes with the trailing newline.
FLUENTD_CHUNK = b"TlcZBvAx/vf4KtNvA1YeRw==\n"
ACK_FLUENTD = bytes.fromhex(
    "81 a3 61 63 6b b9 54 6c 63 5a 42 76 41 78 2f 76 66 34 4b 74 4e 76 41 31 59 65 52 77 3d 3d 0a"
)
# Fluent Bit >= 5.0.9: 24 chars, no newline.
FLUENTBIT_CHUNK = b"3q2+7wAAAAAAAAAAAAAAAA=="


def packb(obj: Any) -> bytes:
    """msgpack bytes with Python str as str and bytes as bin (the modern default)."""
    return bytes(msgpack.packb(obj, use_bin_type=True))


def et(sec: int, nsec: int = 0) -> msgpack.ExtType:
    """An EventTime ext object (packs as fixext8)."""
    return msgpack.ExtType(0, struct.pack(">II", sec, nsec))


def str32(payload: bytes) -> bytes:
    """``payload`` as a msgpack str32, the way Fluentd's out_forward writes entries."""
    return b"\xdb" + struct.pack(">I", len(payload)) + payload


def bin32(payload: bytes) -> bytes:
    """``payload`` as a msgpack bin32 (Fluent Bit's compressed payloads use bin)."""
    return b"\xc6" + struct.pack(">I", len(payload)) + payload


def entry(sec: int, record: dict[str, Any], nsec: int = 0) -> bytes:
    """One legacy ``[EventTime, record]`` entry."""
    return packb([et(sec, nsec), record])


def fluentd_packed(entries: bytes, option: dict[str, Any], *, tag: str = "app.log") -> bytes:
    """``93 <tag> db <len> <entries> <option>``: Fluentd out_forward's only frame shape."""
    return b"\x93" + packb(tag) + str32(entries) + packb(option)


def gzip_members(*parts: bytes) -> bytes:
    """Concatenated gzip members, one per part (Fluentd compresses per append)."""
    return b"".join(gzip.compress(p) for p in parts)
