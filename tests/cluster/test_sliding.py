"""Per-host sliding windows through the scale-out path: the verdicts of one ingress and
one worker equal the single-process pipeline's, and every message is acked.

A worker's watermark is the latest event time of the partitions it feeds, one
partition after another, so frames here span less event time (10 lines, about 5 s)
than the bundle's ``allowed_lateness`` (10 s), and each is fed before the next is sent
(README: sliding windows). Windows close on event time only (no clock tick).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats
import pytest

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.cluster.cluster_config import ClusterConfig
from logsieve.agent_plugin.cluster.ingress import Ingress
from logsieve.agent_plugin.cluster.worker import Worker
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.bundle import Bundle
from logsieve.export.data.synth import write_synth
from logsieve.export.data.synth_bgl import generate_bgl
from tests.agent_plugin.served import agent, settings, train_small_bundle
from tests.cluster.nats import NatsServer

pytestmark = pytest.mark.asyncio

Chunk = list[tuple[float, dict[str, Any]]]


@pytest.fixture(scope="module")
def bgl_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A tiny bundle with per-host sliding windows (300 s every 60 s)."""
    from logsieve.export.data.prepare import prepare

    root = tmp_path_factory.mktemp("bgl")
    write_synth(generate_bgl(8, 6 * 3600, seed=3), root / "train.log")
    return train_small_bundle(prepare("bgl", root / "train.log"), root / "bundle")


def chunks() -> list[Chunk]:
    """Generated BGL-like raw lines of 6 hosts over 15 minutes, 10 lines a frame."""
    log = generate_bgl(6, 900, anomaly_rate=0.2, seed=4)
    events = [(float(line.split()[1]), {"log": line}) for line in log.lines]
    return [events[i : i + 10] for i in range(0, len(events), 10)]


async def send(port: int, pause: float) -> None:
    c = agent(port)
    await c.start()
    try:
        for chunk in chunks():
            for t, rec in chunk:
                await c.send("bgl", rec, time=t)
            assert await c.flush(10.0), c.last_error
            await asyncio.sleep(pause)
    finally:
        await c.stop(timeout=1.0)


def verdicts(rx: FlagReceiver) -> dict[str, tuple[Any, ...]]:
    return {
        f["flag_id"]: (f["key"], f["window_start"], f["lines"], f["verdict"]) for f in rx.flags()
    }


async def test_sliding_windows_through_a_worker_are_the_single_process_ones(
    bgl_bundle: Bundle, nats_server: NatsServer, tmp_path: Path
) -> None:
    rx = FlagReceiver()
    await rx.start()
    s = settings(rx.port, every_verdict=True, advance_interval=0, engine_process=False)
    service = Service(s, bgl_bundle)
    await service.start()
    try:
        await send(service.port, 0.0)
    finally:
        await service.stop()
        await rx.stop()
    want = verdicts(rx)
    assert len(want) > 50

    rx = FlagReceiver()
    await rx.start()
    s = settings(rx.port, every_verdict=True, advance_interval=0, engine_process=False)
    cfg = ClusterConfig(nats_url=nats_server.url, partitions=4, lease_ttl=1.0, worker_name="w")
    worker = Worker(s, cfg, bgl_bundle)
    await worker.start()
    ingress = Ingress(s, cfg, bgl_bundle)
    await ingress.start()
    try:
        while len(worker.owned) < 4:
            await asyncio.sleep(0.1)
        await send(ingress.port, 0.05)
    finally:
        await ingress.stop()
        await worker.stop()  # sliding windows: flushed at stop, as serve does
        await rx.stop()
    assert verdicts(rx) == want
    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().stream_info("LOGSIEVE")
        assert info.state.messages == 0  # every message acked once its windows were sent
    finally:
        await nc.close()
