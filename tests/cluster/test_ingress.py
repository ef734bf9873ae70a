"""``serve --nats``: frames published by window-key partition, acked only after JetStream.

In-process :class:`Ingress` against a real ``nats-server -js``; the Forward client is
the project's acking :class:`UpstreamClient` (chunk ids, waits for acks).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import nats
import pytest

from logsieve.agent_plugin.cluster.cluster_config import ClusterConfig
from logsieve.agent_plugin.cluster.ingress import Ingress, PublishError
from logsieve.agent_plugin.cluster.partition import partition_of
from logsieve.agent_plugin.cluster.wire import PARTITION_HEADER, decode
from logsieve.agent_plugin.forward import LogRecord, RecordBatch
from logsieve.agent_plugin.metrics import sample_value
from logsieve.bundle import Bundle
from logsieve.errors import ConfigError
from logsieve.export.data.synth import generate_hdfs
from tests.agent_plugin.serve_proc import free_port
from tests.agent_plugin.served import agent, hdfs_events, settings
from tests.cluster.nats import NatsServer

pytestmark = pytest.mark.asyncio

TWO = "Deleting blk_111 and blk_222 together"  # a line in two windows


def cluster(url: str, **kw: Any) -> ClusterConfig:
    return ClusterConfig(nats_url=url, partitions=4, publish_timeout=1.0, **kw)


async def stored(url: str) -> list[tuple[str, dict[str, str], Any]]:
    """(subject, headers, decoded body) of every message in the stream."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("LOGSIEVE")
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("LOGSIEVE", seq)
            out.append((msg.subject, dict(msg.headers or {}), decode(msg.data or b"")))
        return out
    finally:
        await nc.close()


async def test_each_record_goes_to_the_partitions_of_its_window_keys(
    tiny_bundle: Bundle, nats_server: NatsServer
) -> None:
    ingress = Ingress(settings(free_port()), cluster(nats_server.url), tiny_bundle)
    await ingress.start()
    c = agent(ingress.port, ack_timeout=1.0)
    await c.start()
    events = hdfs_events(generate_hdfs(8, seed=3).lines)
    try:
        for t, rec in events:
            await c.send("hdfs", rec, time=t)
        await c.send("hdfs", {"log": TWO}, time=events[-1][0])
        await c.send("hdfs", {"other": 1}, time=events[-1][0])  # no text: no key
        assert await c.flush(10.0), c.last_error  # acked: JetStream has all of it
    finally:
        await c.stop(timeout=1.0)
        await ingress.stop()
    messages = await stored(nats_server.url)
    where: dict[str, list[int]] = {}
    for subject, headers, body in messages:
        p = int(subject.rsplit(".", 1)[1])
        assert headers[PARTITION_HEADER] == str(p) and headers["Nats-Msg-Id"].endswith(f".{p}")
        for rec in body.records:
            where.setdefault(rec.record.get("log", "<none>"), []).append(p)
    for _t, rec in events:
        (blk,) = [w for w in rec["log"].split() if w.startswith("blk_")]
        assert set(where[rec["log"]]) == {partition_of(blk, 4)}
    assert sorted(where[TWO]) == sorted({partition_of("blk_111", 4), partition_of("blk_222", 4)})
    assert where["<none>"] == [partition_of("hdfs", 4)]  # its tag's partition
    two = {partition_of("blk_111", 4), partition_of("blk_222", 4)}
    assert sum(len(ps) for ps in where.values()) == len(events) + len(two) + 1  # none lost
    per_frame = [(h["Nats-Msg-Id"].rsplit(".", 1)[0], s) for s, h, _ in messages]
    assert len(per_frame) == len(set(per_frame))  # one message per (frame, partition)


async def test_a_resent_frame_is_stored_once(tiny_bundle: Bundle, nats_server: NatsServer) -> None:
    ingress = Ingress(settings(free_port()), cluster(nats_server.url), tiny_bundle)
    await ingress.start()
    try:
        records = [
            LogRecord("hdfs", 1.0, 1_000_000_000, {"log": f"Receiving blk_{i} src"})
            for i in range(20)
        ]
        batch = RecordBatch("hdfs", records, b"chunk-7", "forward", 100)
        sink = ingress.server.sink  # type: ignore[union-attr]
        await sink.put(batch)
        first = len(await stored(nats_server.url))
        await sink.put(batch)  # the client never got the ack and sends it again
        assert len(await stored(nats_server.url)) == first
        metrics = ingress.ingress_metrics
        assert sample_value(metrics.duplicates) == first == sample_value(metrics.published)
    finally:
        await ingress.stop()


async def test_without_jetstream_a_frame_is_not_acked_and_health_says_why(
    tiny_bundle: Bundle, nats_server: NatsServer
) -> None:
    ingress = Ingress(settings(free_port()), cluster(nats_server.url), tiny_bundle)
    await ingress.start()
    c = agent(ingress.port, ack_timeout=1.0)
    await c.start()
    try:
        await c.send("hdfs", {"log": "Receiving blk_1 src"}, time=1.0)
        assert await c.flush(5.0)
        assert ingress.health() is None
        nats_server.kill()
        await asyncio.sleep(0.3)
        assert "NATS connection" in (ingress.health() or "")
        await c.send("hdfs", {"log": "Receiving blk_2 src"}, time=2.0)
        assert not await c.flush(3.0)  # refused: no ack, the client keeps it to resend
        refused = ingress.ingress_metrics.refused
        assert (
            sum(s.value for m in refused.collect() for s in m.samples if s.name.endswith("_total"))
            >= 1
        )
        batch = RecordBatch("hdfs", [LogRecord("hdfs", 1.0, 1, {"log": "x"})], None, "forward", 1)
        with pytest.raises(PublishError, match="not acked"):
            await ingress.server.sink.put(batch)  # type: ignore[union-attr]
    finally:
        await c.stop(timeout=0.5)
        await ingress.stop()


async def test_partitions_are_fixed_when_the_stream_is_made(
    tiny_bundle: Bundle, nats_server: NatsServer
) -> None:
    first = Ingress(settings(free_port()), cluster(nats_server.url), tiny_bundle)
    await first.start()
    await first.stop()
    other = Ingress(
        settings(free_port()), replace(cluster(nats_server.url), partitions=8), tiny_bundle
    )
    with pytest.raises(ConfigError, match="partitions=4"):
        await other.start()
