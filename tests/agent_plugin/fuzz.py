"""Seeded hostile Forward requests for the fuzz tests.

:func:`hostile_frame` extends the mutation fuzzer of ``test_robustness`` (bit flips,
truncations, wrong types, huge length headers, random bytes, corrupt gzip, deep
nesting, over valid requests of all four modes) with what a hostile peer adds:
invalid UTF-8 in tags, keys and values, extreme and non-finite times, gzip bombs,
and nested container headers declaring far more than they carry.
"""

from __future__ import annotations

import functools
import gzip
import random
import struct
from typing import Any

import msgpack

from .test_robustness import fuzz_frame, valid_frame
from .wire import T_SEC, et, packb

EXTREME_TIMES: tuple[Any, ...] = (
    2**64 - 1, 2**63, 2**32, 2**32 - 2, -1, -(2**63), 0,
    1e300, -1e300, float("inf"), float("-inf"), float("nan"), 4102444800.0,  # 2100-01-01
    et(0xFFFFFFFF, 999_999_999), et(0, 0), et(T_SEC, 2**32 - 1),
    msgpack.Timestamp(2**63 - 1, 999_999_999), msgpack.Timestamp(-(2**63), 0),
    msgpack.ExtType(0, b"\x00" * 7), msgpack.ExtType(0, b"\x00" * 12),
)  # fmt: skip
BAD_UTF8 = (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"caf\xe9", b"\xf4\x90\x80\x80")


@functools.cache
def bombs() -> tuple[bytes, ...]:
    """gzip payloads that inflate past any sane ``max_decompressed_bytes`` (made once)."""
    zeros = gzip.compress(bytes(80 * 1024 * 1024), compresslevel=9)  # 80 MiB from ~80 KB
    members = gzip.compress(bytes(1024 * 1024), compresslevel=9) * 100  # 100 x 1 MiB
    # Under the default limit but 60 M one-byte entries: over max_records_per_frame.
    entries = gzip.compress(bytes(60 * 1024 * 1024), compresslevel=9)
    return zeros, members, entries


def _as_str(data: bytes) -> bytes:
    """``data`` packed as a msgpack *str* (raw, unchecked), not bin."""
    return bytes(msgpack.packb(data, use_bin_type=False))


def invalid_utf8(rng: random.Random, i: int) -> bytes:
    """A valid-looking request whose tag, a key or a value is a str that is not UTF-8."""
    bad = rng.choice(BAD_UTF8)
    record = {b"log": b"Receiving block blk_" + bad, bad: b"v", b"k": bad + b"x"}
    tag = rng.choice((b"app.log", b"app." + bad))
    option = {b"chunk": f"u{i}".encode()}
    where = rng.randrange(3)
    if where == 0:  # Message
        obj: list[Any] = [tag, et(T_SEC, i), record, option]
    elif where == 1:  # Forward
        obj = [tag, [[et(T_SEC, i), record]], option]
    else:  # PackedForward with the entries as a str, the way Fluentd sends them
        entries = bytes(msgpack.packb([et(T_SEC, i), record], use_bin_type=False))
        return b"\x93" + _as_str(tag) + _as_str(entries) + packb({"chunk": f"u{i}"})
    return bytes(msgpack.packb(obj, use_bin_type=False))


def extreme_time(rng: random.Random, i: int) -> bytes:
    """A request of a random mode whose entries carry extreme or malformed times."""
    t = rng.choice(EXTREME_TIMES)
    record = {"log": f"Receiving block blk_{i} src: /10.0.0.1:1"}
    option = {"chunk": f"t{i}"}
    mode = rng.randrange(4)
    if mode == 0:
        return packb(["app.log", t, record, option])
    if mode == 1:
        return packb(["app.log", [[t, record], [et(T_SEC), record]], option])
    entries = packb([t, record]) + packb([et(T_SEC), record])
    if mode == 2:
        return packb(["app.log", entries, option])
    return packb(["app.log", gzip.compress(entries), {**option, "compressed": "gzip"}])


def gzip_bomb(rng: random.Random, i: int) -> bytes:
    payload = rng.choice(bombs())
    return packb(["bomb", payload, {"compressed": "gzip", "chunk": f"b{i}"}])


def amplifier(rng: random.Random) -> bytes:
    """A request start followed by nested array/map headers declaring huge lengths,
    never completed: the bytes are few, the declared items millions."""
    header = rng.choice((b"\xdd" + struct.pack(">I", 250_000), b"\xdf" + struct.pack(">I", 100_000),
                         b"\xdc\xff\xff", b"\xde\xff\xff"))  # fmt: skip
    return rng.choice((b"\x92\xa2am", b"\x93\xa3app")) + header * rng.randint(10, 1000)


def hostile_frame(rng: random.Random, i: int) -> bytes:
    """One seeded hostile request; two in five are mutations from
    ``test_robustness`` (over all four modes), the rest spread over the kinds here."""
    kind = rng.randrange(10)
    if kind < 4:
        return fuzz_frame(rng, i)
    if kind == 4:
        return invalid_utf8(rng, i)
    if kind == 5:
        return extreme_time(rng, i)
    if kind == 6:
        return amplifier(rng)
    if kind == 7 and rng.random() < 0.05:
        return gzip_bomb(rng, i)
    if kind == 7:  # deep nesting inside a record rather than at the top
        depth = rng.randint(90, 1100)
        inner = b"\x91" * depth + b"\xc0"
        return b"\x94\xa7app.log" + packb(et(T_SEC, i)) + b"\x81\xa3log" + inner + packb({})
    if kind == 8:  # a valid request of any mode, whole
        return packb(valid_frame(rng, i, f"v{i}"))
    return packb(valid_frame(rng, i, None))[: rng.randrange(1, 40)]  # truncated early
