"""Bounded decompression of CompressedPackedForward payloads.

Only gzip is supported (the standard library has no zstd before Python 3.14).
A payload may be several gzip members back to back: Fluentd compresses each
buffer append separately and concatenates them (FORWARD.md §1.2, Fluent Bit
PR #8665), so every member is inflated in turn. Output is bounded as it is
produced, so a small "gzip bomb" fails fast instead of allocating gigabytes.
"""

from __future__ import annotations

import zlib
from typing import Literal

from logsieve.errors import CompressionError, LimitExceeded

__all__ = ["Compression", "gunzip_bounded", "sniff_compression"]

Compression = Literal["none", "gzip", "zstd"]

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# wbits 16 + MAX_WBITS: expect a gzip header and trailer (and check the CRC).
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def sniff_compression(payload: bytes, declared: Compression) -> Compression:
    """Decide how a PackedForward payload is compressed.

    Like Fluent Bit's in_forward, magic bytes win over the ``compressed``
    option. This is safe: an uncompressed entry stream starts with an array
    header (0x90-0x9f, 0xdc, 0xdd), never with 0x1f or 0x28.
    """
    if payload.startswith(_GZIP_MAGIC):
        return "gzip"
    if payload.startswith(_ZSTD_MAGIC):
        return "zstd"
    return declared


def gunzip_bounded(payload: bytes, limit: int) -> bytes:
    """Inflate one or more concatenated gzip members, at most ``limit`` bytes.

    Raises ProtocolError when the output would exceed ``limit``, when a member
    is corrupt or truncated, or when bytes after a member are not gzip.
    """
    # Members' outputs are joined once at the end (one member, the usual case: no
    # copy at all); growing one buffer would hold two or three copies at the peak.
    parts: list[bytes] = []
    total = 0
    data = payload
    member = 0
    while data:
        inflater = zlib.decompressobj(_GZIP_WBITS)
        room = limit - total
        try:
            # Ask for one byte more than allowed: getting it proves the bound is
            # exceeded without inflating the rest.
            part = inflater.decompress(data, room + 1)
        except zlib.error as exc:
            raise CompressionError(
                f"gzip member {member} of a CompressedPackedForward payload is corrupt: {exc}"
            ) from None
        total += len(part)
        if total > limit:
            raise LimitExceeded(
                f"decompressed PackedForward payload exceeds max_decompressed_bytes "
                f"(more than {limit} bytes from {len(payload)} compressed)"
            )
        parts.append(part)
        # Output below the cap means zlib consumed all the input it could; if the
        # member has not ended, its tail is missing.
        if not inflater.eof:
            raise CompressionError(
                f"gzip member {member} of a CompressedPackedForward payload is truncated"
            )
        data = inflater.unused_data
        member += 1
    return parts[0] if len(parts) == 1 else b"".join(parts)
