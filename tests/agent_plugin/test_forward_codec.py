"""FrameDecoder: msgpack framing, odd splits, the frame bound, malformed input."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logsieve.agent_plugin.forward import ForwardLimits, FrameDecoder, RawFrame
from logsieve.errors import ConfigError, ProtocolError

from .wire import FWD_LEGACY, FWD_V15, packb


def _frames(decoder: FrameDecoder, *chunks: bytes) -> list[RawFrame]:
    out: list[RawFrame] = []
    for chunk in chunks:
        decoder.feed(chunk)
        out.extend(decoder)
    return out


def test_one_frame_keeps_raw_bytes_and_reports_wire_size() -> None:
    frames = _frames(FrameDecoder(), FWD_LEGACY)
    assert len(frames) == 1
    assert frames[0].size == len(FWD_LEGACY)
    tag, entries = frames[0].obj
    assert tag == b"app.log"  # raw=True: str arrives as bytes
    assert entries[0][1] == {b"msg": b"hi"}
    assert isinstance(entries[0][0], msgpack.ExtType)


def test_many_frames_in_one_feed_come_out_in_order_with_sizes() -> None:
    stream = FWD_LEGACY + b"\xc0" + FWD_V15 + packb([1, 2])
    frames = _frames(FrameDecoder(), stream)
    assert [f.size for f in frames] == [len(FWD_LEGACY), 1, len(FWD_V15), 3]
    assert frames[1].obj is None
    assert frames[3].obj == [1, 2]


def test_byte_at_a_time_yields_the_frame_only_on_its_last_byte() -> None:
    decoder = FrameDecoder()
    for index, byte in enumerate(FWD_V15):
        decoder.feed(bytes([byte]))
        got = list(decoder)
        if index < len(FWD_V15) - 1:
            assert got == [], f"frame emitted early at byte {index}"
        else:
            assert [f.size for f in got] == [len(FWD_V15)]
    assert decoder.buffered == 0


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=30))
def test_random_splits_give_the_same_frames(cuts: list[int]) -> None:
    stream = FWD_LEGACY + FWD_V15 + b"\xc0" + packb(["t", 1, {"k": "v" * 40}]) + FWD_LEGACY
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    expected = _frames(FrameDecoder(), stream)
    assert _frames(FrameDecoder(), *chunks) == expected
    assert len(expected) == 5


def test_bytearray_is_snapshotted_on_feed() -> None:
    decoder = FrameDecoder()
    buf = bytearray(FWD_LEGACY[:10])
    decoder.feed(buf)
    buf[:] = b"\xff" * 10  # the caller reuses its read buffer
    decoder.feed(FWD_LEGACY[10:])
    assert [f.obj[0] for f in decoder] == [b"app.log"]


def test_frame_over_the_limit_raises_naming_size_and_limit() -> None:
    limits = ForwardLimits(max_frame_bytes=100)
    big = packb(["t", "x" * 200])
    decoder = FrameDecoder(limits)
    decoder.feed(big)
    with pytest.raises(ProtocolError, match=r"max_frame_bytes.*100 bytes.*limit 100"):
        list(decoder)


def test_frame_over_the_limit_is_caught_when_it_arrives_in_small_pieces() -> None:
    # An array of many small items: the C unpacker consumes it element by
    # element, so its own buffer limit alone would never trip.
    limits = ForwardLimits(max_frame_bytes=100)
    frame = packb(["t", list(range(500))])
    decoder = FrameDecoder(limits)
    with pytest.raises(ProtocolError, match="limit 100"):
        for start in range(0, len(frame), 7):
            decoder.feed(frame[start : start + 7])
            list(decoder)


def test_frame_of_exactly_the_limit_passes_and_many_small_frames_may_exceed_it() -> None:
    frame = packb(["t", "x" * 80])
    limits = ForwardLimits(max_frame_bytes=len(frame))
    decoder = FrameDecoder(limits)
    # Ten frames in one feed: 10x the limit in total, but each frame fits.
    frames = _frames(decoder, frame * 10)
    assert len(frames) == 10
    assert decoder.buffered == 0


def test_malformed_msgpack_raises_and_poisons_the_decoder() -> None:
    decoder = FrameDecoder()
    decoder.feed(FWD_LEGACY + b"\xc1")  # 0xc1 is never used in msgpack
    it = iter(decoder)
    assert next(it).obj[0] == b"app.log"
    with pytest.raises(ProtocolError, match="malformed msgpack at stream offset"):
        next(it)
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.feed(FWD_LEGACY)
    with pytest.raises(ProtocolError, match="already failed"):
        list(decoder)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x81\x91\x01\x02", "unhashable"),  # map keyed by an array
        (b"\xdd\xff\xff\xff\xff", "max_array_len"),  # 4G-element array header
        (b"\xdf\xff\xff\xff\xff", "max_map_len"),
        (b"\x91" * 1100 + b"\x00", "StackError"),  # deeper than msgpack's stack
        (b"\xc7\x05\xffabcde", "timestamp"),  # ext -1 with a bad length
    ],
)
def test_hostile_headers_are_protocol_errors(data: bytes, why: str) -> None:
    decoder = FrameDecoder(ForwardLimits(max_collection_len=1000, max_records_per_frame=1000))
    decoder.feed(data)
    with pytest.raises(ProtocolError, match=why):
        list(decoder)


def test_integer_map_keys_are_allowed() -> None:
    frames = _frames(FrameDecoder(), packb({1: "a", "b": 2}))
    assert frames[0].obj == {1: b"a", b"b": 2}


def test_ext_values_come_out_as_msgpack_ext_types_and_timestamps() -> None:
    """The unpacker's cheaper ext hook builds the very ``ExtType`` msgpack would."""
    ts = msgpack.Timestamp(5, 6)
    obj = [msgpack.ExtType(0, b"\0\0\0\1\0\0\0\2"), {"k": msgpack.ExtType(5, b"xyz")}, ts]
    decoder = FrameDecoder(ForwardLimits())
    decoder.feed(packb(obj))
    (frame,) = list(decoder)
    assert frame.obj == msgpack.unpackb(packb(obj), raw=True)  # msgpack's own ExtType
    ext0, record, stamp = frame.obj  # raw=True: the key "k" is bytes
    assert type(ext0) is msgpack.ExtType and (ext0.code, ext0.data) == (0, obj[0].data)
    assert type(record[b"k"]) is msgpack.ExtType and record[b"k"].code == 5
    assert stamp == ts and type(stamp) is msgpack.Timestamp


def test_empty_feed_is_a_no_op() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"")
    assert list(decoder) == []
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("max_frame_bytes", 0, "positive integer"),
        ("max_frame_bytes", 10, "at least 64"),
        ("max_records_per_frame", True, "positive integer"),
        ("max_decompressed_bytes", 1.5, "positive integer"),
        ("max_nesting_depth", 900, "at most 500"),
    ],
)
def test_limits_are_validated_with_config_errors(field: str, value: object, allowed: str) -> None:
    with pytest.raises(ConfigError, match=f"forward.{field}=.*{allowed}") as info:
        kwargs: dict[str, Any] = {field: value}
        ForwardLimits(**kwargs)
    assert info.value.field == f"forward.{field}"
