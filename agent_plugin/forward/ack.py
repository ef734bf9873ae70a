"""The ``{"ack": chunk}`` response, byte-exact.

Fluent Bit's client accepts an ack only if the value is a msgpack **str**
whose bytes equal the chunk id it sent (``forward_read_ack``); a bin-typed
value makes it retry the whole chunk. The codec unpacks with ``raw=True``, so
the chunk is ``bytes``; packing that with msgpack would give bin, and decoding
it to ``str`` first would re-encode any non-ASCII byte. So the response is
written by hand: a one-entry map, the key ``"ack"``, then a str header and the
chunk's exact bytes (Fluentd's trailing ``"\\n"`` included).
"""

from __future__ import annotations

import struct

__all__ = ["encode_ack", "str_header"]

# fixmap of 1 entry, then fixstr "ack".
_ACK_PREFIX = b"\x81\xa3ack"


def str_header(length: int) -> bytes:
    """msgpack str header for ``length`` bytes, in the smallest form.

    The same choice ``msgpack.packb`` makes for a ``str`` (fixstr, str8,
    str16, str32), so the output matches a normal packer byte for byte.
    """
    if length < 0 or length > 0xFFFFFFFF:
        raise ValueError(f"msgpack str length {length} out of range (limit {0xFFFFFFFF})")
    if length < 32:
        return bytes((0xA0 | length,))
    if length <= 0xFF:
        return struct.pack(">BB", 0xD9, length)
    if length <= 0xFFFF:
        return struct.pack(">BH", 0xDA, length)
    return struct.pack(">BI", 0xDB, length)


def encode_ack(chunk: bytes) -> bytes:
    """Encode ``{"ack": chunk}`` with ``chunk`` as a msgpack str of the same bytes.

    Pass :attr:`~.events.RecordBatch.chunk` unchanged.
    """
    return _ACK_PREFIX + str_header(len(chunk)) + chunk
