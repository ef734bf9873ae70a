"""ServerConnection: FORWARD.md §9 scenarios driven end to end, without sockets."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logsieve.agent_plugin.forward import (
    UDP_HEARTBEAT_REPLY,
    ConnectionState,
    ForwardLimits,
    HandshakeSucceeded,
    Heartbeat,
    IgnoredRequest,
    RecordBatch,
    SecurityConfig,
    ServerConnection,
    encode_ack,
    ping_digest,
)
from logsieve.errors import ProtocolError

from .wire import (
    ACK_FLUENTD,
    FLUENTBIT_CHUNK,
    FLUENTD_CHUNK,
    FWD_LEGACY,
    FWD_V15,
    T_SEC,
    entry,
    et,
    fluentd_packed,
    gzip_members,
    packb,
)

NOW_NS = 1_700_000_000_000_000_000


def conn_() -> ServerConnection:
    return ServerConnection(now_ns=lambda: NOW_NS)


def feed_all(conn: ServerConnection, *chunks: bytes) -> list[Any]:
    events: list[Any] = []
    for chunk in chunks:
        conn.feed(chunk)
        events.extend(conn.events())
    return events


def acks(events: list[Any]) -> list[bytes]:
    """What the server would write back: an ack per batch that has a chunk."""
    return [encode_ack(e.chunk) for e in events if isinstance(e, RecordBatch) and e.chunk]


def test_fluent_bit_defaults_in_two_writes_on_a_reused_connection() -> None:
    # §9.1: the header and the entries arrive as separate writes, twice.
    conn = conn_()
    split = 1 + 8  # array header + tag
    events = feed_all(conn, FWD_V15[:split], FWD_V15[split:], FWD_V15[:split], FWD_V15[split:])
    assert [type(e) for e in events] == [RecordBatch, RecordBatch]
    assert all(e.records[0].metadata == {} for e in events)
    assert acks(events) == []
    assert conn.state is ConnectionState.TRANSPORT


def test_fluent_bit_gzip_with_ack_gets_a_byte_identical_str_ack() -> None:
    # §9.3
    option = {
        "chunk": FLUENTBIT_CHUNK.decode(),
        "size": 2,
        "compressed": "gzip",
        "fluent_signal": 0,
    }
    payload = gzip.compress(entry(T_SEC, {"a": 1}) + entry(T_SEC, {"a": 2}))
    (batch,) = feed_all(conn_(), packb(["app.log", payload, option]))
    assert batch.mode == "compressed_packed_forward"
    assert [r.record for r in batch.records] == [{"a": 1}, {"a": 2}]
    assert acks([batch]) == [b"\x81\xa3ack\xb8" + FLUENTBIT_CHUNK]


def test_fluent_bit_message_mode_one_ack_per_record() -> None:
    # §9.4: dynamic tags give one Message frame, and one ack, per record.
    frames = [
        packb(["ns.a", et(T_SEC), {"n": i}, {"fluent_signal": 0, "chunk": f"c{i}", "metadata": {}}])
        for i in range(3)
    ]
    events = feed_all(conn_(), b"".join(frames))
    assert [e.records[0].record["n"] for e in events] == [0, 1, 2]
    assert acks(events) == [encode_ack(f"c{i}".encode()) for i in range(3)]


def test_fluent_bit_metrics_are_acked_but_yield_no_records() -> None:
    # §9.6
    (batch,) = feed_all(conn_(), packb(["m", b"\x00cmetrics", {"fluent_signal": 1, "chunk": "k"}]))
    assert batch.records == [] and acks([batch]) == [encode_ack(b"k")]


def test_fluentd_packed_forward_ack_keeps_the_newline() -> None:
    # §9.7 and §9.8 on one connection.
    text = fluentd_packed(
        entry(1, {"a": 1}), {"size": 1, "compressed": "text", "chunk": FLUENTD_CHUNK.decode()}
    )
    gz = fluentd_packed(
        gzip_members(entry(2, {"b": 2}), entry(3, {"c": 3})), {"size": 2, "compressed": "gzip"}
    )
    events = feed_all(conn_(), text + gz)
    assert acks(events) == [ACK_FLUENTD]
    assert [len(e.records) for e in events] == [1, 2]


def test_heartbeats_and_non_arrays_keep_the_connection_open() -> None:
    conn = conn_()
    events = feed_all(conn, b"\xc0", b"\x05", FWD_LEGACY)
    assert [type(e) for e in events] == [Heartbeat, IgnoredRequest, RecordBatch]
    assert UDP_HEARTBEAT_REPLY == b"\x00"


def test_garbage_closes_the_connection_after_the_good_frames() -> None:
    conn = conn_()
    conn.feed(FWD_LEGACY + b"\xc1garbage")
    events = conn.events()
    assert isinstance(next(events), RecordBatch)
    with pytest.raises(ProtocolError, match="malformed msgpack"):
        next(events)
    assert conn.state is ConnectionState.CLOSED
    with pytest.raises(ProtocolError, match="already closed: malformed msgpack"):
        list(conn.events())


def test_semantic_error_closes_too() -> None:
    conn = conn_()
    with pytest.raises(ProtocolError, match="tag must be a string"):
        feed_all(conn, packb([1, [[1, {}]]]))
    assert conn.state is ConnectionState.CLOSED


def test_oversized_frame_closes() -> None:
    conn = ServerConnection(ForwardLimits(max_frame_bytes=64))
    with pytest.raises(ProtocolError, match="limit 64"):
        feed_all(conn, packb(["t", [[1, {"m": "x" * 100}]]]))
    assert conn.state is ConnectionState.CLOSED


def test_iteration_can_pause_and_resume_without_losing_frames() -> None:
    conn = conn_()
    conn.feed(FWD_LEGACY * 3)
    first = next(conn.events())  # e.g. the server's queue is now full
    assert isinstance(first, RecordBatch)
    assert conn.buffered == 2 * len(FWD_LEGACY)
    assert len(list(conn.events())) == 2
    assert conn.buffered == 0


# A realistic mixed stream: handshake first, then every mode.
_SECURITY = SecurityConfig(self_hostname="server.example", shared_key="k")
_NONCE = bytes(range(0xA0, 0xB0))
_PING = bytes(
    __import__("msgpack").packb(
        [
            b"PING",
            b"fb",
            b"\xff" * 16,
            ping_digest(b"\xff" * 16, b"fb", _NONCE, "k").encode(),
            b"",
            b"",
        ],
        use_bin_type=False,
    )
)
_STREAM = (
    _PING
    + FWD_V15
    + b"\xc0"
    + FWD_LEGACY
    + fluentd_packed(entry(1, {"a": 1}) + entry(2, {"b": "é"}), {"chunk": FLUENTD_CHUNK.decode()})
    + packb(["gz", gzip_members(entry(3, {"c": 3}), entry(4, {"d": 4})), {"compressed": "gzip"}])
    + packb(["msg", et(T_SEC, 5), {"m": [1, 2]}, {"chunk": "x"}])
)


def _secure_conn() -> ServerConnection:
    conn = ServerConnection(
        security=_SECURITY, now_ns=lambda: NOW_NS, random_bytes=lambda n: _NONCE
    )
    conn.initiate()
    return conn


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_any_split_of_a_mixed_stream_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted({c % (len(_STREAM) + 1) for c in cuts})
    chunks = [_STREAM[a:b] for a, b in zip([0, *points], [*points, len(_STREAM)], strict=True)]
    expected = feed_all(_secure_conn(), _STREAM)
    assert feed_all(_secure_conn(), *chunks) == expected


def test_mixed_stream_one_byte_at_a_time() -> None:
    expected = feed_all(_secure_conn(), _STREAM)
    assert [type(e) for e in expected] == [HandshakeSucceeded, RecordBatch, Heartbeat] + [
        RecordBatch
    ] * 4
    got = feed_all(_secure_conn(), *(bytes([b]) for b in _STREAM))
    assert got == expected
    assert acks(got) == [ACK_FLUENTD, encode_ack(b"x")]
