"""decode_request: the four modes, times, metadata, signals, options, bad types."""

from __future__ import annotations

import gzip
import struct
from typing import Any

import msgpack
import pytest
from fluent.sender import EventTime as FluentEventTime
from fluent.sender import FluentSender
from hypothesis import given, settings
from hypothesis import strategies as st

from logsieve.agent_plugin.forward import (
    EventTime,
    ForwardLimits,
    FrameDecoder,
    Heartbeat,
    IgnoredRequest,
    LogRecord,
    RecordBatch,
    decode_request,
)
from logsieve.errors import ProtocolError

from .wire import (
    ET_EXT8,
    ET_FIXEXT8,
    FLUENTBIT_CHUNK,
    FLUENTD_CHUNK,
    FWD_LEGACY,
    FWD_V15,
    GROUP_END,
    GROUP_START,
    REC_HI,
    T_NS,
    T_SEC,
    TAG,
    bin32,
    entry,
    et,
    fluentd_packed,
    gzip_members,
    packb,
    str32,
)

NOW_NS = 1_700_000_000_500_000_000


def _now() -> int:
    return NOW_NS


def decode_any(data: bytes, limits: ForwardLimits | None = None) -> Any:
    decoder = FrameDecoder(limits)
    decoder.feed(data)
    frames = list(decoder)
    assert len(frames) == 1, "test input must be exactly one frame"
    return decode_request(frames[0], limits, _now)


def decode(data: bytes, limits: ForwardLimits | None = None) -> RecordBatch:
    batch = decode_any(data, limits)
    assert isinstance(batch, RecordBatch)
    return batch


def hi(time_ns: int = T_NS, metadata: dict[Any, Any] | None = None) -> LogRecord:
    return LogRecord("app.log", time_ns / 1e9, time_ns, {"msg": "hi"}, metadata)


# -- Forward mode -----------------------------------------------------------------


def test_forward_legacy_entry_golden_bytes() -> None:
    batch = decode(FWD_LEGACY)
    assert batch.mode == "forward"
    assert batch.tag == "app.log"
    assert batch.records == [hi()]
    assert batch.records[0].time == pytest.approx(1672531200.123456789)
    assert batch.chunk is None and not batch.needs_ack
    assert batch.size == len(FWD_LEGACY)
    assert batch.signal == 0


def test_forward_v15_metadata_entry_golden_bytes() -> None:
    batch = decode(FWD_V15)
    assert batch.records == [hi(metadata={})]


def test_forward_v15_metadata_map_is_kept_and_decoded() -> None:
    data = packb(["app.log", [[[et(T_SEC, 123456789), {"otlp": {"k": "v"}}], {"msg": "hi"}]]])
    assert decode(data).records == [hi(metadata={"otlp": {"k": "v"}})]


def test_fluent_bit_group_markers_are_skipped_and_counted() -> None:
    # OTLP chunk as Fluent Bit >= 5.0.5 sends it: start marker, record, end marker.
    start = b"\x92\x92" + GROUP_START + packb({"resource": {}}) + packb({"attr": 1})
    end = b"\x92\x92" + GROUP_END + b"\x80\x80"
    record = b"\x92\x92" + ET_FIXEXT8 + b"\x80" + REC_HI
    data = b"\x92" + TAG + b"\x93" + start + record + end
    batch = decode(data)
    assert batch.records == [hi(metadata={})]
    assert batch.skipped_markers == 2


def test_integer_group_markers_are_skipped_too() -> None:
    batch = decode(packb(["t", [[-1, {}], [-2, {}], [5, {"a": 1}]]]))
    assert [r.time_ns for r in batch.records] == [5_000_000_000]
    assert batch.skipped_markers == 2


def test_forward_with_fluent_bit_options_and_ack_chunk() -> None:
    option = {
        "chunk": FLUENTBIT_CHUNK.decode(),
        "size": 1,
        "fluent_signal": 0,
        "x-added": "by add_option",
    }
    data = packb(["app.log", [[et(T_SEC, 123456789), {"msg": "hi"}]], option])
    batch = decode(data)
    assert batch.chunk == FLUENTBIT_CHUNK
    assert batch.records == [hi()]


def test_time_as_integer_forward_compat() -> None:
    batch = decode(packb(["app.log", [[T_SEC, {"msg": "hi"}], [T_SEC + 1, {"msg": "hi"}]]]))
    assert [r.time_ns for r in batch.records] == [T_SEC * 10**9, (T_SEC + 1) * 10**9]
    assert batch.records[0].time == float(T_SEC)


def test_forward_entry_count_is_bounded() -> None:
    limits = ForwardLimits(max_records_per_frame=3)
    data = packb(["t", [[1, {}]] * 4])
    with pytest.raises(ProtocolError, match=r"4 entries.*max_records_per_frame=3"):
        decode(data, limits)


# -- Times ---------------------------------------------------------------------------


@pytest.mark.parametrize("time_bytes", [ET_FIXEXT8, ET_EXT8], ids=["fixext8", "ext8"])
def test_eventtime_both_encodings(time_bytes: bytes) -> None:
    data = b"\x93" + TAG + time_bytes + REC_HI
    batch = decode(data)
    assert batch.mode == "message"
    assert batch.records == [hi()]


@pytest.mark.parametrize(
    ("time_bytes", "expected_ns"),
    [
        (b"\xce" + struct.pack(">I", T_SEC), T_SEC * 10**9),  # uint32
        (b"\xcb" + struct.pack(">d", 1672531200.5), 1672531200_500_000_000),  # float64
        (b"\xca" + struct.pack(">f", 2.5), 2_500_000_000),  # float32
        (b"\xd6\xff" + struct.pack(">I", T_SEC), T_SEC * 10**9),  # msgpack Timestamp ext -1
        (b"\x00", NOW_NS),  # 0 means now
        (b"\xc0", NOW_NS),  # nil means now
        (bytes.fromhex("d7 00 00000000 00000000"), NOW_NS),  # EventTime 0 means now
    ],
    ids=["uint", "float64", "float32", "timestamp-ext", "zero", "nil", "eventtime-zero"],
)
def test_other_time_encodings(time_bytes: bytes, expected_ns: int) -> None:
    batch = decode(b"\x93" + TAG + time_bytes + REC_HI)
    assert [r.time_ns for r in batch.records] == [expected_ns]


@pytest.mark.parametrize(
    "bad_time",
    [
        -5, -0.5, float("nan"), float("inf"), et(1, 1_000_000_000),
        # Values no EventTime can carry upstream (uint32 seconds, markers excluded):
        2**32, 2**64 - 1, 1e300, 4_294_967_294.5, msgpack.Timestamp(2**33, 0),
    ],
    ids=[
        "negative-int", "negative-float", "nan", "inf", "nsec-overflow",
        "int-2^32", "int-2^64-1", "float-1e300", "float-past-2106", "timestamp-past-2106",
    ],
)  # fmt: skip
def test_unusable_time_values_skip_the_entry_and_count_it(bad_time: Any) -> None:
    batch = decode(packb(["t", [[bad_time, {"a": 1}], [7, {"b": 2}]]]))
    assert [r.record for r in batch.records] == [{"b": 2}]
    assert batch.skipped_invalid == 1


@pytest.mark.parametrize(
    ("bad_time", "message"),
    [
        ([[b"x", {}]], "bad type bytes"),
        ([[True, {}]], "bad type bool"),
        ([[{}, {}]], "bad type dict"),
        ([[msgpack.ExtType(5, b"\0" * 8), {}]], "ext type 5"),
        ([[msgpack.ExtType(0, b"\0" * 4), {}]], "must carry 8 bytes, got 4"),
        ([[[[1], {}], {}]], "bad type list"),
    ],
)
def test_time_of_a_bad_type_is_a_protocol_error(bad_time: Any, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(packb(["t", bad_time]))


# -- Message mode --------------------------------------------------------------------


def test_message_mode_from_fluent_logger_int_time() -> None:
    sender = FluentSender("app")
    data = sender._make_packet("log", T_SEC, {"msg": "hi", "n": 3})
    batch = decode(data)
    assert batch.mode == "message"
    assert batch.tag == "app.log"
    assert batch.records[0].record == {"msg": "hi", "n": 3}
    assert batch.records[0].time_ns == T_SEC * 10**9
    assert batch.chunk is None


def test_message_mode_from_fluent_logger_eventtime() -> None:
    sender = FluentSender("app", nanosecond_precision=True)
    data = sender._make_packet("log", FluentEventTime(1672531200.5), {"msg": "hi"})
    assert data[len(b"\x93\xa7app.log") : len(b"\x93\xa7app.log") + 2] == b"\xd7\x00"
    assert decode(data).records == [hi(1672531200_500_000_000)]


def test_message_mode_fluent_bit_dynamic_tag_with_metadata_and_chunk() -> None:
    option = {"fluent_signal": 0, "chunk": FLUENTBIT_CHUNK.decode(), "metadata": {"m": 1}}
    data = packb(["app.log", et(T_SEC, 123456789), {"msg": "hi"}, option])
    batch = decode(data)
    assert batch.records == [hi(metadata={"m": 1})]
    assert batch.chunk == FLUENTBIT_CHUNK


def test_message_mode_needs_a_map_record() -> None:
    with pytest.raises(ProtocolError, match="message record must be a map, got list"):
        decode(packb(["t", 1, [1, 2]]))
    with pytest.raises(ProtocolError, match="no record"):
        decode(packb(["t", 1]))


# -- PackedForward / CompressedPackedForward ----------------------------------------------


ENTRIES = entry(T_SEC, {"msg": "hi"}, 123456789) + entry(T_SEC, {"msg": "hi"}, 123456789)


def test_fluentd_packed_forward_str32_with_text_and_newline_chunk() -> None:
    option = {"size": 2, "compressed": "text", "chunk": FLUENTD_CHUNK.decode()}
    data = fluentd_packed(ENTRIES, option)
    assert data[0] == 0x93 and data[9] == 0xDB  # the exact Fluentd frame shape
    batch = decode(data)
    assert batch.mode == "packed_forward"
    assert batch.records == [hi(), hi()]
    assert batch.chunk == FLUENTD_CHUNK  # trailing "\n" kept


def test_packed_forward_entries_as_bin_or_str_decode_the_same() -> None:
    as_bin = b"\x92" + TAG + bin32(ENTRIES)
    as_str = b"\x92" + TAG + str32(ENTRIES)
    assert decode(as_bin).records == decode(as_str).records == [hi(), hi()]


def test_packed_forward_entries_may_use_the_v15_form() -> None:
    v15 = b"\x92\x92" + ET_FIXEXT8 + b"\x81\xa1k\x01" + REC_HI
    assert decode(b"\x92" + TAG + bin32(v15)).records == [hi(metadata={"k": 1})]


def test_fluent_bit_compressed_packed_forward_bin_gzip() -> None:
    option = {"size": 2, "compressed": "gzip", "fluent_signal": 0, "chunk": "abc"}
    data = packb(["app.log", gzip.compress(ENTRIES), option])
    batch = decode(data)
    assert batch.mode == "compressed_packed_forward"
    assert batch.records == [hi(), hi()]
    assert batch.chunk == b"abc"


def test_fluentd_gzip_with_two_concatenated_members_in_str32() -> None:
    first, second = entry(1, {"n": 1}), entry(2, {"n": 2}) + entry(3, {"n": 3})
    data = fluentd_packed(gzip_members(first, second), {"size": 3, "compressed": "gzip"})
    assert [r.record["n"] for r in decode(data).records] == [1, 2, 3]


def test_gzip_is_sniffed_from_magic_even_without_the_option() -> None:
    batch = decode(fluentd_packed(gzip.compress(ENTRIES), {"compressed": "text"}))
    assert batch.mode == "compressed_packed_forward"
    assert len(batch.records) == 2


def test_gzip_bomb_is_bounded() -> None:
    bomb = gzip.compress(b"\x00" * 2_000_000)  # ~2 KB that inflates to 2 MB
    limits = ForwardLimits(max_decompressed_bytes=100_000)
    with pytest.raises(ProtocolError, match=r"exceeds max_decompressed_bytes.*100000"):
        decode(fluentd_packed(bomb, {"compressed": "gzip"}), limits)


def test_gzip_bound_counts_all_concatenated_members() -> None:
    payload = gzip_members(ENTRIES, ENTRIES)
    limits = ForwardLimits(max_decompressed_bytes=len(ENTRIES) * 2)
    assert len(decode(fluentd_packed(payload, {"compressed": "gzip"}), limits).records) == 4
    limits = ForwardLimits(max_decompressed_bytes=len(ENTRIES) * 2 - 1)
    with pytest.raises(ProtocolError, match="max_decompressed_bytes"):
        decode(fluentd_packed(payload, {"compressed": "gzip"}), limits)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (gzip.compress(ENTRIES)[:-12], "truncated"),
        (gzip.compress(ENTRIES) + b"garbage!", "member 1 .* corrupt"),
        (b"\x1f\x8b" + b"\x00" * 20, "member 0 .* corrupt"),
    ],
    ids=["truncated", "trailing-garbage", "bad-header"],
)
def test_broken_gzip_is_a_protocol_error(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(fluentd_packed(payload, {"compressed": "gzip"}))


def test_zstd_is_refused_clearly() -> None:
    with pytest.raises(ProtocolError, match="zstd is not supported"):
        decode(fluentd_packed(b"\x28\xb5\x2f\xfd" + b"\x00" * 8, {"compressed": "zstd"}))


def test_packed_entries_are_bounded_and_must_be_complete() -> None:
    with pytest.raises(ProtocolError, match="more than 1 entries"):
        decode(fluentd_packed(ENTRIES, {}), ForwardLimits(max_records_per_frame=1))
    with pytest.raises(ProtocolError, match="ends inside entry"):
        decode(fluentd_packed(ENTRIES[:-3], {}))
    with pytest.raises(ProtocolError, match="malformed msgpack in PackedForward entry"):
        decode(fluentd_packed(ENTRIES + b"\xc1", {}))


def test_empty_packed_payload_is_an_empty_batch() -> None:
    batch = decode(fluentd_packed(b"", {"chunk": "c"}))
    assert batch.records == [] and batch.chunk == b"c"


# -- Signals and options -------------------------------------------------------------


@pytest.mark.parametrize("signal", [1, 2])
def test_metrics_and_traces_are_skipped_but_keep_the_chunk(signal: int) -> None:
    # The payload is not a log entry stream (and not even valid msgpack): it must
    # not be decoded at all.
    data = packb(["metrics", b"\xc1cmetrics-bytes", {"fluent_signal": signal, "chunk": "c1"}])
    batch = decode(data)
    assert batch.records == []
    assert batch.signal == signal
    assert batch.chunk == b"c1"


def test_gzip_metrics_are_not_decompressed() -> None:
    bomb = gzip.compress(b"\x00" * 2_000_000)
    data = packb(["m", bomb, {"fluent_signal": 1, "compressed": "gzip"}])
    assert decode(data, ForwardLimits(max_decompressed_bytes=1000)).signal == 1


@pytest.mark.parametrize("signal", [3, -1, "1", True, 1.0])
def test_unknown_fluent_signal_is_a_protocol_error(signal: Any) -> None:
    with pytest.raises(ProtocolError, match="fluent_signal"):
        decode(packb(["t", [[1, {}]], {"fluent_signal": signal}]))


def test_option_nil_from_docker_is_no_option() -> None:
    batch = decode(packb(["app.log", et(T_SEC, 123456789), {"msg": "hi"}, None]))
    assert batch.records == [hi()] and batch.chunk is None
    assert decode(packb(["app.log", [[1, {}]], None])).chunk is None


def test_option_must_be_a_map_and_chunk_a_string() -> None:
    with pytest.raises(ProtocolError, match="option must be a map, got list"):
        decode(packb(["t", [[1, {}]], [1]]))
    with pytest.raises(ProtocolError, match="chunk must be a string, got int"):
        decode(packb(["t", [[1, {}]], {"chunk": 5}]))


def test_unknown_option_keys_of_any_type_are_ignored() -> None:
    option = {"size": 9, 7: "x", b"\xff\xfe": 1, "compressed": "lz4"}
    batch = decode(packb(["t", [[1, {}]], option]))
    assert batch.mode == "forward" and len(batch.records) == 1


# -- Non-minimal encodings, records, strings ---------------------------------------------------


def test_array32_and_map32_are_accepted() -> None:
    record = b"\xdf\x00\x00\x00\x01" + b"\xa3msg\xa2hi"  # map32 {"msg": "hi"}
    entry32 = b"\xdd\x00\x00\x00\x02" + ET_FIXEXT8 + record  # array32 [t, rec]
    entries32 = b"\xdd\x00\x00\x00\x01" + entry32
    option = b"\xdf\x00\x00\x00\x01\xa5chunk\xa1z"
    data = b"\xdd\x00\x00\x00\x03" + b"\xdb\x00\x00\x00\x07app.log" + entries32 + option
    batch = decode(data)
    assert batch.records == [hi()]
    assert batch.chunk == b"z"


def test_record_strings_utf8_become_str_other_bytes_stay_bytes() -> None:
    record = {
        "text": "héllo",
        "bin_utf8": b"plain",  # bin that is valid UTF-8: indistinguishable, becomes str
        "latin1": "é".encode("latin-1"),  # not UTF-8: stays bytes, nothing replaced
        "nested": {"list": ["a", b"\xff", 1, None, 2.5, True]},
        1: "int key kept",
        "é".encode("latin-1"): "non-UTF-8 key stays bytes",
    }
    (rec,) = decode(packb(["t", [[1, record]]])).records
    assert rec.record == {
        "text": "héllo",
        "bin_utf8": "plain",
        "latin1": b"\xe9",
        "nested": {"list": ["a", b"\xff", 1, None, 2.5, True]},
        1: "int key kept",
        b"\xe9": "non-UTF-8 key stays bytes",
    }


@pytest.mark.parametrize("with_latin1", [False, True], ids=["all-utf8", "one-non-utf8"])
def test_packed_forward_applies_the_same_string_rule(with_latin1: bool) -> None:
    # PackedForward payloads are unpacked with raw=False first (strings decoded in C)
    # and fall back to raw=True on the first non-UTF-8 str: the records must come out
    # exactly as the Forward-mode rule above makes them, in either case.
    plain = {"log": "héllo", "host": "h1", "n": 3, "ok": True, "none": None}
    odd = {"bin_utf8": b"plain", "nested": {"list": ["a", b"\xff", 1]}, 1: "int key"}
    latin1 = {"latin1": "é".encode("latin-1"), "é".encode("latin-1"): "key"}
    payload = b"".join(packb([1, r]) for r in (plain, odd))
    if with_latin1:  # msgpack *str* (old spec, as Fluentd packs) holding non-UTF-8 bytes
        payload += msgpack.packb([1, latin1], use_bin_type=False)
    batch = decode(packb(["t", payload]))
    assert [r.record for r in batch.records] == [
        plain,
        {"bin_utf8": "plain", "nested": {"list": ["a", b"\xff", 1]}, 1: "int key"},
        *([{"latin1": b"\xe9", b"\xe9": "key"}] if with_latin1 else []),
    ]
    assert batch.mode == "packed_forward"


def test_packed_forward_nesting_depth_is_bounded() -> None:
    deep: Any = {"leaf": 1}
    for _ in range(10):
        deep = {"d": deep}
    with pytest.raises(ProtocolError, match="max_nesting_depth=5"):
        decode(packb(["t", packb([1, deep])]), ForwardLimits(max_nesting_depth=5))


def test_record_nesting_depth_is_bounded() -> None:
    deep: Any = {"leaf": 1}
    for _ in range(10):
        deep = {"d": deep}
    limits = ForwardLimits(max_nesting_depth=5)
    with pytest.raises(ProtocolError, match="max_nesting_depth=5"):
        decode(packb(["t", [[1, deep]]]), limits)
    assert decode(packb(["t", [[1, deep]]])).records[0].record["d"]["d"]


# -- Wrong shapes and types ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([5, [[1, {}]]], "tag must be a string, got int"),
        (["t"], "1 element"),
        ([], "0 element"),
        (["t", {"a": 1}], "second element .* is dict"),
        (["t", True, {}], "second element .* is bool"),
        (["t", [[1, {}]], {}, {}], "forward request has 4 elements; at most 3"),
        (["t", 1, {}, {}, {}], "message request has 5 elements; at most 4"),
        (["t", [5]], "entry 0 must be a \\[time, record\\] array, got int"),
        (["t", [[1, {}, 3]]], "entry 0 must be .* an array of 3"),
        (["t", [[1, {}], [1, "rec"]]], "entry 1 record must be a map, got bytes"),
        (["t", [[[], {}]]], "empty \\[time, metadata\\] header"),
        (["t", [[[1, "meta"], {}]]], "entry 0 metadata must be a map"),
    ],
)
def test_wrong_types_name_what_was_wrong(obj: Any, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(packb(obj))


def test_tag_must_be_utf8() -> None:
    with pytest.raises(ProtocolError, match=r"tag is not valid UTF-8: b'\\xff\\xfe"):
        decode(b"\x92\xa2\xff\xfe\x90")


def test_nil_request_is_a_heartbeat_and_non_arrays_are_ignored() -> None:
    assert decode_any(b"\xc0") == Heartbeat(1)
    ignored = decode_any(packb({"not": "an array"}))
    assert isinstance(ignored, IgnoredRequest)
    assert "dict" in ignored.reason
    assert isinstance(decode_any(b"\x05"), IgnoredRequest)


# -- Property: whatever records go in come out -------------------------------------------------

_text = st.text(max_size=20)
_scalar = st.one_of(st.integers(-(2**63), 2**64 - 1), _text, st.booleans(), st.none())
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=10,
)
_record = st.dictionaries(_text, _value, max_size=6)


@settings(max_examples=60, deadline=None)
@given(
    # 2**32-1 and 2**32-2 seconds are Fluent Bit group markers, never records.
    records=st.lists(st.tuples(st.integers(1, 2**32 - 3), _record), min_size=1, max_size=5),
    packed=st.booleans(),
)
def test_records_roundtrip_in_forward_and_packed_modes(
    records: list[tuple[int, dict[str, Any]]], packed: bool
) -> None:
    if packed:
        payload = b"".join(packb([et(sec, 0), rec]) for sec, rec in records)
        data = fluentd_packed(payload, {"size": len(records)}, tag="p")
    else:
        data = packb(["p", [[sec, rec] for sec, rec in records]])
    batch = decode(data)
    assert [(r.time_ns, r.record) for r in batch.records] == [
        (sec * 10**9, rec) for sec, rec in records
    ]


_ns = 1_000_000_000
_entry_time = st.one_of(
    # EventTime of every kind: usual, "now" (0), nanoseconds only, group markers,
    # nanoseconds out of range; and the other encodings the per-entry path reads.
    st.builds(et, st.integers(1, 2**32 - 3), st.integers(0, _ns - 1)),
    st.builds(et, st.sampled_from([0, 2**32 - 2, 2**32 - 1]), st.sampled_from([0, 7])),
    st.builds(et, st.integers(1, 9), st.sampled_from([_ns, 2**32 - 1])),
    st.integers(-2, 2**32),
    st.sampled_from([None, 1.5, -1.0]),
)
_flat = st.dictionaries(_text, st.one_of(_scalar, st.floats(allow_nan=False)), max_size=4)
_entry_record = st.one_of(
    _flat,
    _record,
    st.dictionaries(st.integers(0, 3), _text, max_size=2),
    st.dictionaries(st.binary(max_size=3), st.one_of(_text, st.binary(max_size=3)), max_size=2),
)
_header = st.one_of(_entry_time, st.tuples(_entry_time, st.dictionaries(_text, _text, max_size=2)))


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.tuples(_header, _entry_record), max_size=8))
def test_packed_forward_decodes_as_forward_mode_does(
    entries: list[tuple[Any, dict[Any, Any]]],
) -> None:
    """PackedForward (one unpack call, the [EventTime, flat record] shortcut) gives the
    records, times and skip counts that Forward mode's per-entry path gives."""
    as_list = [[list(h) if type(h) is tuple else h, r] for h, r in entries]
    packed = decode(fluentd_packed(b"".join(packb(e) for e in as_list), {}, tag="p"))
    forward = decode(packb(["p", as_list]))
    assert packed.records == forward.records
    assert (packed.skipped_markers, packed.skipped_invalid) == (
        forward.skipped_markers,
        forward.skipped_invalid,
    )


def test_packed_forward_names_the_bad_entry_after_the_one_call_unpack() -> None:
    """A payload that scans whole but fails to unpack (a map keyed by an array) is
    reported with its entry's number, as the per-entry unpack reports it."""
    bad = b"\x92" + ET_FIXEXT8 + b"\x81\x91\x01\x01"  # [time, {[1]: 1}]
    payload = entry(T_SEC, {"msg": "hi"}) * 2 + bad
    with pytest.raises(ProtocolError, match="malformed msgpack in PackedForward entry 2: Type"):
        decode(fluentd_packed(payload, {}))


# -- EventTime helper (for clients) ------------------------------------------------------------


def test_eventtime_packs_to_the_golden_fixext8_and_back() -> None:
    value = EventTime(T_SEC, 123456789)
    assert packb(value.to_ext()) == ET_FIXEXT8
    assert EventTime.from_ext(ET_FIXEXT8[2:]) == value
    assert EventTime.from_ns(T_NS) == value and value.ns == T_NS
    with pytest.raises(ValueError, match="out of range"):
        EventTime(2**32, 0)
    with pytest.raises(ProtocolError, match="nanoseconds 1000000000 out of range"):
        EventTime.from_ext(struct.pack(">II", 1, 1_000_000_000))
