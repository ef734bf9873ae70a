"""A worker's progress: the commit every ``commit_interval`` (state first, then acks)
and the lag of its partitions.

Order matters for failover (:mod:`.tracker`): the done keys of every unacked message
of a partition are in the state bucket before any message of that partition is
acked, so whoever owns the partition next never windows a done key again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterable

import msgpack
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from .cluster_config import ClusterConfig
from .cluster_metrics import WorkerMetrics
from .tracker import ClusterTracker

__all__ = ["commit", "report_lag"]


async def commit(
    tracker: ClusterTracker,
    state: KeyValue,
    owned: Collection[int],
    cfg: ClusterConfig,
    metrics: WorkerMetrics,
    open_lsns: Callable[[], Iterable[int]],
) -> None:
    """Write the done keys of unacked messages, then ack the messages that are done,
    then keep the rest alive (``in_progress`` well before ``ack_wait``)."""
    ready = tracker.take_ackable(open_lsns)
    dirty, tracker.dirty = tracker.dirty, set()
    for p in sorted(dirty):
        if p not in owned:
            continue  # not ours any more: the state is the next owner's to write
        try:
            await state.put(f"p{p}", msgpack.packb(tracker.state(p)))
        except Exception:
            tracker.dirty |= dirty  # nothing acked: try it all again next time
            for h in ready:
                tracker.retry(h)
            raise
    results = await asyncio.gather(
        *(h.msg.ack_sync(timeout=cfg.publish_timeout) for h in ready), return_exceptions=True
    )
    for h, result in zip(ready, results, strict=True):
        if isinstance(result, BaseException):
            tracker.retry(h)
        else:
            tracker.acked(h)
            metrics.acks.inc()
    now = time.monotonic()
    for h in tracker.stale(now - cfg.ack_wait / 3):
        await h.msg.in_progress()
        h.touched = now
    metrics.unacked.set(sum(tracker.pending(p) for p in owned))


async def report_lag(
    js: JetStreamContext, stream: str, partitions: set[int], metrics: WorkerMetrics
) -> None:
    """Set ``partition_lag`` for ``partitions`` (the ones consumed here), from each
    consumer's ``num_pending``; drop the samples of partitions no longer ours."""
    lag = metrics.lag
    for p in metrics.lagging - partitions:
        lag.remove(str(p))  # the new owner reports it
    metrics.lagging = set(partitions)
    for p in sorted(partitions):
        try:
            info = await js.consumer_info(stream, f"p{p}")
        except Exception:
            continue  # NATS away for a moment: the next sample
        lag.labels(partition=str(p)).set(info.num_pending or 0)
