"""Partitioning, the message body, the [cluster] settings and the ack tracker: no server."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest

from logsieve.agent_plugin.cluster.cluster_config import ClusterConfig
from logsieve.agent_plugin.cluster.partition import partition_of, partitions_of
from logsieve.agent_plugin.cluster.tracker import ClusterTracker
from logsieve.agent_plugin.cluster.wire import WireError, decode, encode, msg_id
from logsieve.agent_plugin.forward import LogRecord
from logsieve.agent_plugin.serve_config import load_serve_settings
from logsieve.errors import ConfigError
from logsieve.logs.pipeline import Event
from logsieve.logs.windows import Window


def test_partition_is_crc32_of_the_key_the_same_in_every_process() -> None:
    # A fixed value: Python's salted hash() would differ between processes.
    assert (
        partition_of("blk_-1608999687919862906", 16) == zlib.crc32(b"blk_-1608999687919862906") % 16
    )
    assert partition_of("blk_-1608999687919862906", 16) == 15
    keys = [f"blk_{i}" for i in range(2000)]
    counts = [sum(partition_of(k, 8) == p for k in keys) for p in range(8)]
    assert min(counts) > 200  # spread, not all in one
    assert partitions_of(["a", "a", "b"], 1) == [0]


def test_a_message_round_trips_records_with_bytes_and_metadata() -> None:
    records = [
        LogRecord("hdfs", 1.5, 1_500_000_001, {"log": "x", "raw": b"\xff"}, {"m": 1}),
        LogRecord("hdfs", 2.0, 2_000_000_000, {"log": "y"}, None),
    ]
    body = decode(encode("hdfs", records))
    assert body.tag == "hdfs"
    assert [(r.time_ns, r.record, r.metadata) for r in body.records] == [
        (1_500_000_001, {"log": "x", "raw": b"\xff"}, {"m": 1}),
        (2_000_000_000, {"log": "y"}, None),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # not msgpack
        msgpack.packb([1, 2]),
        msgpack.packb({"v": 2, "tag": "t", "records": []}),
        msgpack.packb({"v": 1, "tag": 3, "records": []}),
        msgpack.packb({"v": 1, "tag": "t", "records": [[1.5, {}, None]]}),
        msgpack.packb({"v": 1, "tag": "t", "records": [[1, "x", None]]}),
    ],
)
def test_a_body_that_is_not_ours_is_a_wire_error(body: bytes) -> None:
    with pytest.raises(WireError):
        decode(body)


def test_message_ids_come_from_the_chunk_so_a_resent_frame_repeats_them() -> None:
    assert msg_id(b"chunk-1", 3) == msg_id(b"chunk-1", 3)
    assert msg_id(b"chunk-1", 3) != msg_id(b"chunk-1", 4)
    assert msg_id(None, 3) != msg_id(None, 3)  # no chunk: the client never resends


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nats_url", "http://x:4222"),
        ("stream", "has space"),
        ("partitions", 0),
        ("partitions", True),
        ("lease_ttl", 0.5),
        ("ack_wait", 0.1),
        ("worker_name", "a.b"),
    ],
)
def test_bad_cluster_settings_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"cluster.{field}"):
        ClusterConfig(**{field: value})


def test_cluster_table_comes_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[upstream]\nport = 24225\n[cluster]\npartitions = 8\nstream = 'LOGS'\n")
    env = {"LOGSIEVE_CLUSTER_NATS_URL": "nats://127.0.0.1:4222"}
    settings = load_serve_settings(path, env)
    assert settings.cluster == ClusterConfig(
        nats_url="nats://127.0.0.1:4222", partitions=8, stream="LOGS"
    )
    assert settings.cluster.subject(3) == "LOGS.p.3"
    assert not load_serve_settings(path, {}).cluster.enabled  # the default: one process
    path.write_text("[cluster]\npartition = 8\n")
    with pytest.raises(ConfigError, match="partition"):
        load_serve_settings(path, {})


class _Sender:
    """The upstream client's two counters, moved by hand."""

    def __init__(self) -> None:
        self.sent_count = 0
        self.durable_count = 0


def _window(key: str, seqs: list[int]) -> Window[Event]:
    return Window(key, 0.0, 1.0, [Event(0.0, 1, "x", s) for s in seqs])


def test_a_message_is_acked_only_when_every_window_of_its_records_is_delivered() -> None:
    sender = _Sender()
    tracker = ClusterTracker(sender, sessions=True)
    m1 = tracker.begin(0, 10, "m1", 2)  # records: block A, block B
    m2 = tracker.begin(0, 11, "m2", 1)  # record: block A
    tracker.placed(m1, ("A",))
    tracker.placed(m1, ("B",))
    tracker.placed(m2, ("A",))
    a = _window("A", [m1.first, m2.first])
    tracker.closed(a)
    assert tracker.take_ackable(lambda: ()) == []  # A closed, not judged; B open
    sender.sent_count = 1  # its verdict handed to the upstream client, then scored()
    tracker.scored(a, None)
    assert tracker.take_ackable(lambda: ()) == []  # A sent, not yet acked upstream
    sender.durable_count = 1
    ready = tracker.take_ackable(lambda: ())
    assert ready == [m2]  # m1 still has B's record in an open window
    # Before m2's ack goes out, the next owner must learn that m1's A is done.
    assert tracker.state(0) == {10: ["A"], 11: True}
    tracker.acked(m2)
    assert tracker.state(0) == {10: ["A"]}
    b = _window("B", [m1.first + 1])
    tracker.closed(b)
    tracker.scored(b, "flag-1")  # an anomaly whose incident is still open
    sender.sent_count = sender.durable_count = 2
    assert tracker.take_ackable(lambda: ()) == []
    sender.sent_count = 3  # the incident's flag is handed over, then flagged()
    tracker.flagged("flag-1")
    assert tracker.take_ackable(lambda: ()) == []
    sender.durable_count = 3
    assert tracker.take_ackable(lambda: ()) == [m1]
    tracker.acked(m1)
    assert tracker.state(0) == {} and tracker.pending(0) == 0


def test_sliding_windows_hold_a_message_while_any_open_window_has_its_records() -> None:
    sender = _Sender()
    tracker = ClusterTracker(sender, sessions=False)
    m = tracker.begin(1, 5, "m", 1)
    tracker.placed(m, ("host-a",))  # in the windows [0, 300) and [60, 360) of host-a
    first = _window("host-a", [m.first])
    tracker.closed(first)
    tracker.scored(first, None)
    tracker.settle(lambda: ())
    assert tracker.take_ackable(lambda: [m.first]) == []  # still in [60, 360)
    assert tracker.state(1) == {}  # sliding: no done keys to skip on a failover
    assert tracker.take_ackable(lambda: []) == [m]
