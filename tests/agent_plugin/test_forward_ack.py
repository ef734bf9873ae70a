"""encode_ack: the chunk echoed as a msgpack str, byte for byte."""

from __future__ import annotations

import msgpack
import pytest

from logsieve.agent_plugin.forward import FrameDecoder, RecordBatch, decode_request, encode_ack
from logsieve.agent_plugin.forward.ack import str_header

from .wire import ACK_FLUENTD, FLUENTBIT_CHUNK, FLUENTD_CHUNK, entry, fluentd_packed


def test_fluentd_chunk_ack_matches_the_golden_bytes() -> None:
    assert encode_ack(FLUENTD_CHUNK) == ACK_FLUENTD
    # What a naive packb of the raw bytes would give, and Fluent Bit rejects: bin8.
    assert msgpack.packb({"ack": FLUENTD_CHUNK})[5] == 0xC4
    assert ACK_FLUENTD[5] == 0xB9  # fixstr of 25


def test_chunk_from_a_decoded_fluentd_frame_round_trips_exactly() -> None:
    decoder = FrameDecoder()
    decoder.feed(fluentd_packed(entry(1, {"a": 1}), {"chunk": FLUENTD_CHUNK.decode()}))
    batch = decode_request(next(iter(decoder)))
    assert isinstance(batch, RecordBatch) and batch.chunk is not None
    assert encode_ack(batch.chunk) == ACK_FLUENTD


@pytest.mark.parametrize(
    "chunk",
    [
        FLUENTBIT_CHUNK,  # 24-char Base64 (Fluent Bit >= 5.0.9)
        b"0123456789abcdef0123456789abcdef",  # 32-char hex (older Fluent Bit): str8
        b"",
        b"x" * 31,
        b"x" * 255,
        b"x" * 256,
        b"x" * 65535,
        b"x" * 65536,
    ],
    ids=lambda c: f"len{len(c)}",
)
def test_ack_equals_what_a_normal_packer_writes_for_a_str(chunk: bytes) -> None:
    assert encode_ack(chunk) == msgpack.packb({"ack": chunk.decode("ascii")})


def test_non_utf8_chunk_is_still_a_str_with_the_same_bytes() -> None:
    chunk = bytes(range(0x80, 0x90))
    ack = encode_ack(chunk)
    assert ack == b"\x81\xa3ack\xb0" + chunk
    unpacked = msgpack.unpackb(ack, raw=True)
    assert unpacked == {b"ack": chunk}
    # raw=False would decode a str: proves the type byte is str, not bin.
    with pytest.raises(UnicodeDecodeError):
        msgpack.unpackb(ack, raw=False)


def test_str_header_forms_and_range() -> None:
    assert str_header(5) == b"\xa5"
    assert str_header(32) == b"\xd9\x20"
    assert str_header(300) == b"\xda\x01\x2c"
    assert str_header(70000) == b"\xdb\x00\x01\x11\x70"
    with pytest.raises(ValueError, match="out of range"):
        str_header(-1)
