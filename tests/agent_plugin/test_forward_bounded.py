"""Sans-IO: what the decoder allocates follows the bytes received, not declared lengths."""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable

import msgpack
import pytest

from logsieve.agent_plugin.forward import (
    ConnectionState,
    ForwardLimits,
    FrameDecoder,
    HandshakeFailed,
    RawFrame,
    SecurityConfig,
    ServerConnection,
    decode_request,
)
from logsieve.errors import LimitExceeded, ProtocolError

from .wire import FWD_LEGACY, T_SEC, et, packb

ARRAY32 = b"\xdd" + struct.pack(">I", 250_000)
AMPLIFY = b"\x92\xa2am" + ARRAY32 * 1000  # 5,004 bytes declaring 250 G items


def traced_peak(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_nested_huge_headers_allocate_nothing_until_the_frame_completes() -> None:
    decoder = FrameDecoder()

    def feed() -> None:
        decoder.feed(AMPLIFY)
        assert list(decoder) == []

    # Before: each header pre-allocated its 250,000-slot list (2 MB apiece).
    assert traced_peak(feed) < 256 * 1024
    assert decoder.buffered == len(AMPLIFY)


def test_byte_at_a_time_still_frames_and_the_next_frame_follows() -> None:
    decoder = FrameDecoder()
    frames: list[RawFrame] = []
    for b in FWD_LEGACY * 3:
        decoder.feed(bytes([b]))
        frames += list(decoder)
    assert [f.size for f in frames] == [len(FWD_LEGACY)] * 3
    assert decoder.frames == 3 and decoder.buffered == 0


def test_nested_header_over_its_limit_is_refused_once_the_frame_completes() -> None:
    decoder = FrameDecoder(ForwardLimits(max_collection_len=10, max_records_per_frame=10))
    decoder.feed(b"\x92\xa2am\xdc\x00\x0b" + b"\xc0" * 11)
    with pytest.raises(LimitExceeded, match="max_array_len"):
        list(decoder)


def test_packed_payload_with_dangling_headers_allocates_nothing() -> None:
    entries = packb([et(T_SEC), {"log": "a"}]) + b"\x92" + ARRAY32 * 1000
    frame = packb(["app.log", entries, {"chunk": "c"}])
    (raw,) = list(_decode(frame))

    def decode() -> None:
        with pytest.raises(ProtocolError, match="ends inside entry 1"):
            decode_request(raw, ForwardLimits(), lambda: 0)

    assert traced_peak(decode) < 256 * 1024 + 2 * len(entries)


def test_unauthenticated_peer_buffers_max_handshake_bytes_then_the_frame_bound() -> None:
    limits = ForwardLimits(max_handshake_bytes=2048)
    conn = ServerConnection(limits, SecurityConfig("srv", "k"), random_bytes=lambda n: b"s" * n)
    conn.initiate()
    conn.feed(b"\x96\xdb\x00\x01\x00\x00" + b"x" * 4096)  # a PING whose str declares 64 KiB
    (event,) = list(conn.events())
    assert isinstance(event, HandshakeFailed) and "max_handshake_bytes" in str(event.error)
    assert msgpack.unpackb(event.reply)[:2] == ["PONG", False]
    assert conn.state is ConnectionState.CLOSED
    open_conn = ServerConnection(limits)  # no handshake: only max_frame_bytes applies
    open_conn.feed(packb(["app.log", [[et(T_SEC), {"log": "y" * 4096}]]]))
    assert len(list(open_conn.events())) == 1


def _decode(data: bytes) -> list[RawFrame]:
    decoder = FrameDecoder()
    decoder.feed(data)
    return list(decoder)


@pytest.mark.parametrize("split", [1, 2, 3, 7])
def test_top_level_header_over_its_limit_is_refused_in_any_split(split: int) -> None:
    # Two whole frames first, so the bad header starts inside a piece.
    data = FWD_LEGACY * 2 + b"\xdd\xff\xff\xff\xff"
    decoder = FrameDecoder(ForwardLimits(max_collection_len=1000, max_records_per_frame=1000))
    frames: list[RawFrame] = []
    with pytest.raises(LimitExceeded, match=r"4294967295 exceeds max_array_len\(1000\)"):
        for at in range(0, len(data), split):
            decoder.feed(data[at : at + split])
            for frame in decoder:  # not list(): keep the frames before the error
                frames.append(frame)
    assert len(frames) == 2


def test_top_level_header_within_its_limit_waits_for_its_items() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\xdc\x00\x03\xc0")
    assert list(decoder) == []
    decoder.feed(b"\xc0")
    assert list(decoder) == []
    decoder.feed(b"\xc0" + FWD_LEGACY[:3])
    assert [f.obj for f in decoder] == [[None, None, None]]
    assert decoder.buffered == 3
