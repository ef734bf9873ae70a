"""Partition leases: one live owner each; a joining worker gets its share without a
record lost or a window split."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace

import nats
import pytest
from prometheus_client import generate_latest

from logsieve.agent_plugin.cluster.cluster_config import ClusterConfig
from logsieve.agent_plugin.cluster.ingress import Ingress
from logsieve.agent_plugin.cluster.lease import Leases
from logsieve.agent_plugin.cluster.streams import ensure_buckets
from logsieve.agent_plugin.cluster.worker import Worker
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.bundle import Bundle
from logsieve.export.data.synth import generate_hdfs
from tests.agent_plugin.served import agent, hdfs_events, settings
from tests.cluster.nats import NatsServer

pytestmark = pytest.mark.asyncio


@contextlib.asynccontextmanager
async def two_workers(server: NatsServer) -> AsyncIterator[tuple[Leases, Leases]]:
    """The leases of workers "a" and "b" over 4 partitions (lease_ttl 1 s)."""
    cfg = ClusterConfig(nats_url=server.url, lease_ttl=1.0)
    nc = await nats.connect(server.url)
    try:
        buckets = await ensure_buckets(nc.jetstream(), cfg)
        yield Leases(buckets, "a", 4), Leases(buckets, "b", 4)
    finally:
        await nc.close()


async def test_a_lease_has_one_live_owner_and_moves_once_it_lapses(
    nats_server: NatsServer,
) -> None:
    async with two_workers(nats_server) as (a, b):
        assert await a.acquire(2)
        assert not await b.acquire(2)  # held
        assert await a.renew(2) == "kept"
        assert 2 not in await b.free()
        began = time.monotonic()
        while not await b.acquire(2):  # a stopped renewing (as if SIGKILLed)
            assert time.monotonic() - began < 5.0
            await asyncio.sleep(0.1)
        assert time.monotonic() - began >= 0.5
        assert await a.renew(2) == "lost" and 2 not in a.owned  # a learns it lost it
        await b.release(2)
        assert await a.acquire(2)
        assert a.fair_share(["a", "b", "c"]) == 2  # 4 partitions over 3: 2, 1, 1
        assert b.fair_share(["a", "b", "c"]) == 1
        assert sorted(await a.announce()) == ["a"]
        assert await b.announce() == ["a", "b"]
        await b.leave()  # deleted, not aged out: gone at once
        assert await a.announce() == ["a"]
        assert await a.free() == [p for p in a.order if p not in a.owned]


async def test_members_renewing_together_always_see_each_other(
    nats_server: NatsServer,
) -> None:
    # Two workers in one loop renew in lockstep, each rewriting its key while the other
    # lists the bucket: the listing must not lose the key being rewritten (a missed
    # member doubles the other's share, and it then keeps partitions it must give back).
    async with two_workers(nats_server) as (a, b):
        await b.announce()

        async def rounds(leases: Leases, offset: float) -> list[list[str]]:
            await asyncio.sleep(offset)
            seen = []
            for _ in range(40):
                seen.append(await leases.announce())
                await asyncio.sleep(0.02)
            return seen

        for offset in (0.0, 0.005, 0.011):
            for seen in await asyncio.gather(rounds(a, 0.0), rounds(b, offset)):
                assert all(names == ["a", "b"] for names in seen), seen


async def test_a_joining_worker_takes_its_share_and_no_record_is_lost(
    tiny_bundle: Bundle, nats_server: NatsServer
) -> None:
    rx = FlagReceiver()
    await rx.start()
    s = settings(rx.port, every_verdict=True, idle_close=1.0, engine_process=False)
    cfg = ClusterConfig(
        nats_url=nats_server.url, partitions=4, lease_ttl=1.0, commit_interval=0.1,
        ack_wait=5.0, worker_name="w1",
    )  # fmt: skip
    w1 = Worker(s, cfg, tiny_bundle)
    await w1.start()
    w2 = Worker(s, replace(cfg, worker_name="w2"), tiny_bundle)
    ingress = Ingress(s, cfg, tiny_bundle)
    await ingress.start()
    c = agent(ingress.port)
    await c.start()
    log = generate_hdfs(16, seed=5)
    by_block: dict[str, list[tuple[float, dict[str, str]]]] = {k: [] for k in log.labels}
    for t, rec in hdfs_events(log.lines):
        (key,) = [k for k in by_block if k in rec["log"]]
        by_block[key].append((t, rec))
    try:
        deadline = time.monotonic() + 10
        while len(w1.owned) < 4:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        joined = False
        for i, events in enumerate(by_block.values()):
            for t, rec in events:  # lines of one block 0.1 s apart: it is open a while
                await c.send("hdfs", rec, time=t)
                if i == 4 and not joined:
                    joined = True
                    await w2.start()  # joins mid-stream, with windows open on w1
                assert await c.flush(5.0)
                await asyncio.sleep(0.02)
        deadline = time.monotonic() + 20
        while len(rx.flags()) < len(by_block) or len(w2.owned) != 2 or len(w1.owned) != 2:
            assert time.monotonic() < deadline, (len(rx.flags()), w1.owned, w2.owned)
            await asyncio.sleep(0.1)
    finally:
        await c.stop(timeout=1.0)
        await ingress.stop()
        await w2.stop()
        await w1.stop()
        await rx.stop()
    assert sorted(w1.owned + w2.owned) == []  # both gave everything back at stop
    per_block = Counter(f["key"] for f in rx.flags())
    assert per_block == Counter({k: 1 for k in by_block})
    for f in rx.flags():
        assert f["lines"] == len(by_block[f["key"]])  # whole windows, none split
    assert sample_value(w1.worker_metrics.moves, kind="released") >= 2  # two went to w2
    assert sample_value(w2.worker_metrics.moves, kind="acquired") == 2


async def test_worker_metrics_and_health_follow_its_nats_connection(
    tiny_bundle: Bundle, nats_server: NatsServer
) -> None:
    rx = FlagReceiver()
    await rx.start()
    cfg = ClusterConfig(nats_url=nats_server.url, partitions=3, lease_ttl=1.0, worker_name="m")
    w = Worker(settings(rx.port, engine_process=False), cfg, tiny_bundle)
    await w.start()
    try:
        deadline = time.monotonic() + 10
        lag = b'logsieve_cluster_partition_lag{partition="2"} 0.0'
        while len(w.owned) < 3 or lag not in generate_latest(w.metrics.registry):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert w.health() is None
        assert sample_value(w.worker_metrics.owned) == 3
        assert sample_value(w.worker_metrics.members) == 1
        nats_server.kill()
        await asyncio.sleep(0.3)
        assert "NATS connection" in (w.health() or "")
    finally:
        await w.stop()
        await rx.stop()
