"""``logsieve worker``: own some partitions, window, score, send flags, ack.

::

    JetStream <stream>.p.<n> ──pull (one durable consumer per owned partition)──►
        feed (keys of this partition only) ──► StreamingPipeline (windows, engine,
        cache, incidents, flags → upstream)            ClusterTracker (when to ack)
                                                             │ every commit_interval
        state bucket ◄── done keys of unacked messages ◄─────┤
        JetStream    ◄── ack (every window of the message judged and delivered)

One pipeline (one engine, one batcher) serves every partition the worker owns;
partitions only decide which keys it sees. Taking a partition (:mod:`.lease`): read
what the previous owner finished (state bucket), delete its consumer and create a
new one that delivers everything still in the work-queue stream, in stream order:
exactly the messages not acked yet, each windowed again except its done keys.
Giving one back (rebalancing, :meth:`Worker._release`): stop fetching, drop its open
session windows unjudged (the next owner forms them whole from the unacked
messages), wait until its closed windows are delivered and acked and its state is
written, delete the lease. A lease lost without giving it back
(a stalled worker) is dropped at once: its messages are the next owner's.

Shutdown (SIGTERM) gives every partition back the same way, the leases renewed until
the closed windows are delivered and acked: stop taking and fetching → drop the open
session windows (sliding ones are flushed, as ``serve`` does) → wait for upstream
acks (spooled otherwise) → ack → delete the leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.errors import ConfigError
from logsieve.logs.windows import SessionWindower

from ..app import start_scoring, start_window_engine
from ..metrics import Metrics
from ..metrics_http import MetricsServer
from ..pipeline import StreamingPipeline
from ..pipeline_metrics import PipelineMetrics
from ..serve_config import ServeSettings
from ..supervision import Supervisor
from ..upstream import UpstreamClient
from .cluster_config import ClusterConfig
from .cluster_metrics import WorkerMetrics
from .feed import drop_open, feed_message
from .lease import Leases
from .progress import commit, report_lag
from .streams import (
    Buckets,
    connect,
    consumer_created,
    ensure_buckets,
    ensure_stream,
    fresh_consumer,
    read_state,
)
from .tracker import ClusterTracker
from .wire import WireError, decode

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker:
    """One scoring worker (module docstring)."""

    def __init__(
        self,
        settings: ServeSettings,
        cluster: ClusterConfig,
        bundle: Bundle,
        engine: Engine | None = None,
    ) -> None:
        if cluster.nats_url is None:
            raise ConfigError("cluster.nats_url", None, "nats://host:port (a worker needs NATS)")
        self.url: str = cluster.nats_url
        self.settings, self.cluster, self.bundle = settings, cluster, bundle
        self.name = cluster.name
        self.engine = start_window_engine(settings.pipeline, bundle, engine)
        self.metrics = Metrics()
        self.supervisor = Supervisor()
        self.pipeline_metrics = PipelineMetrics(self.metrics.registry)
        self.worker_metrics = WorkerMetrics(self.metrics.registry)
        self.upstream = UpstreamClient(settings.upstream)
        self.pipeline_metrics.bind_upstream(self.upstream)
        self.pipeline = StreamingPipeline(
            settings.pipeline, bundle, self.engine, self.upstream, self.pipeline_metrics
        )
        self.sessions = isinstance(self.pipeline.lines.windower, SessionWindower)
        self.tracker = ClusterTracker(self.upstream, sessions=self.sessions)
        self.pipeline.ledger = self.tracker
        server = settings.server
        self.http = MetricsServer(
            self.metrics.registry, server.metrics_host, server.metrics_port, health=self.health
        )
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.buckets: Buckets | None = None
        self.leases: Leases | None = None
        self._fetchers: dict[int, asyncio.Task[None]] = {}
        self._releasing: dict[int, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = False
        self._stopping = False
        self._started: list[str] = []
        self.acquired_at: dict[int, float] = {}  # partition -> monotonic time taken
        self._consumers: dict[int, object] = {}  # partition -> our consumer's creation time

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the stream and buckets if absent, start serving partitions."""
        try:
            self.nc = await connect(self.url, f"worker {self.name}", self._connection)
            self._started.append("nats")
            self.js = self.nc.jetstream()
            await ensure_stream(self.js, self.cluster)
            self.buckets = await ensure_buckets(self.js, self.cluster)
            self.leases = Leases(self.buckets, self.name, self.cluster.partitions)
            await start_scoring(self.upstream, self.pipeline, self.supervisor, self._started)
            await self.http.start()
            self._started.append("http")
            self._tasks = [
                asyncio.create_task(self._run_leases(), name="logsieve-leases"),
                asyncio.create_task(self._run_commits(), name="logsieve-commits"),
                asyncio.create_task(self._run_lag(), name="logsieve-lag"),
            ]
            for task in self._tasks:
                self.supervisor.watch(task, task.get_name())
        except BaseException:
            await self.stop()
            raise
        log.info("worker %s: %s, stream %s", self.name, self.cluster.nats_url, self.cluster.stream)

    async def stop(self) -> None:
        """The ordered shutdown (module docstring); safe to call twice."""
        started, self._started = self._started, []
        self._stopping = True  # the lease round only renews from now on
        self.supervisor.stopping()
        await self._stop_fetchers(list(self._fetchers))
        for task in self._releasing.values():
            task.cancel()
        await asyncio.gather(*self._releasing.values(), return_exceptions=True)
        if self.sessions and self._tasks:
            # As a release: open windows are left whole to the next owner (their
            # messages stay unacked); the closed ones are delivered and acked first,
            # while the leases are still renewed.
            for p in self.owned:
                self._drop_open(p)
            deadline = time.monotonic() + self.settings.pipeline.flush_timeout
            while time.monotonic() < deadline and not all(
                self.tracker.settled(p) for p in self.owned
            ):
                await asyncio.sleep(self.cluster.commit_interval)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if "pipeline" in started:
            await self.pipeline.close()  # sliding windows: flushed, as serve does
        if "upstream" in started:
            await self.upstream.flush(self.settings.pipeline.flush_timeout)
            await self.upstream.stop(timeout=0.5)
        self.engine.close()
        if "nats" in started and self.nc is not None:
            with contextlib.suppress(Exception):
                await self._commit()
                if self.leases is not None:
                    await self.leases.leave()
            with contextlib.suppress(Exception):
                await self.nc.close()
        if "http" in started:
            await self.http.stop()

    @property
    def metrics_port(self) -> int:
        return self.http.port

    def health(self) -> str | None:
        """None while healthy, else why not (``/health`` 503)."""
        if self.supervisor.failure is not None:
            return self.supervisor.failure
        if not self._connected:
            return f"NATS connection to {self.cluster.nats_url} lost"
        return None

    async def failed(self) -> str:
        """Wait until a task that must run until shutdown ends early; its reason."""
        return await self.supervisor.failed()

    def _connection(self, up: bool) -> None:
        self._connected = up

    # -- partitions --------------------------------------------------------------

    @property
    def owned(self) -> list[int]:
        return sorted(self.leases.owned) if self.leases is not None else []

    async def _run_leases(self) -> None:
        assert self.leases is not None
        period = self.cluster.lease_ttl / 3
        while True:
            try:
                await self._lease_round(self.leases)
            except Exception as exc:  # NATS away for a moment: try again next round
                log.warning("worker %s: lease round failed: %s", self.name, exc)
            await asyncio.sleep(period)

    async def _lease_round(self, leases: Leases) -> None:
        # Renewals first and together: a busy loop must not let a lease age out.
        owned = list(leases.owned)
        outcomes = await asyncio.gather(*map(leases.renew, owned))
        for p, outcome in zip(owned, outcomes, strict=True):
            if outcome == "retaken" and await self._consumer_is_ours(p):
                log.warning("worker %s: lease of partition %d renewed late", self.name, p)
            elif outcome != "kept":
                log.error("worker %s: lease of partition %d lost", self.name, p)
                self.worker_metrics.moves.labels(kind="lost").inc()
                await self._stop_fetchers([p])
                self._drop_open(p)  # its windows are the next owner's now
                self.tracker.forget(p)
                if outcome == "retaken":  # ours again, after someone consumed it
                    await self._take(p)
        members = await leases.announce()
        self.worker_metrics.members.set(len(members))
        if self._stopping:
            return
        share = leases.fair_share(members)
        keeping = [p for p in leases.owned if p not in self._releasing]
        if len(keeping) > share and self.sessions:
            # Sliding windows cannot be closed early without changing them: partitions
            # move only when their worker is gone (README).
            p = keeping[-1]
            self._releasing[p] = asyncio.create_task(self._release(p), name=f"release-{p}")
        elif len(keeping) < share:
            for p in (await leases.free())[: share - len(keeping)]:
                if await leases.acquire(p):
                    try:
                        await self._take(p)
                    except Exception:
                        await leases.release(p)  # someone else may manage; not half-taken
                        raise
        self.worker_metrics.owned.set(len(leases.owned))

    def _drop_open(self, p: int) -> int:
        return drop_open(self.pipeline, self.tracker, p, self.cluster.partitions)

    async def _take(self, p: int) -> None:
        """Start consuming partition ``p`` (lease already ours)."""
        assert self.js is not None and self.buckets is not None
        done = await read_state(self.buckets.state, p)
        sub, info, replayed = await fresh_consumer(self.js, self.cluster, p)
        self.acquired_at[p] = time.monotonic()
        self.worker_metrics.moves.labels(kind="acquired").inc()
        self._consumers[p] = info.created
        log.warning(
            "worker %s: took partition %d: %d message(s) waiting, %d of them partly judged",
            self.name,
            p,
            info.num_pending or 0,
            len(done),
        )
        fetch = self._fetch(p, sub, done, replayed)
        self._fetchers[p] = asyncio.create_task(fetch, name=f"fetch-{p}")

    async def _consumer_is_ours(self, p: int) -> bool:
        """Whether partition ``p``'s consumer is still the one we made (nobody took the
        partition while our lease had aged out)."""
        assert self.js is not None
        made = await consumer_created(self.js, self.cluster, p)
        return p in self._fetchers and made is not None and made == self._consumers.get(p)

    async def _fetch(
        self,
        p: int,
        sub: JetStreamContext.PullSubscription,
        done: dict[int, Any],
        replayed: int,
    ) -> None:
        """Feed partition ``p`` in stream order; messages up to ``replayed`` had been
        delivered to the previous consumer (counted as redeliveries)."""
        cfg, tracker, m = self.cluster, self.tracker, self.worker_metrics
        last = 0
        try:
            while True:
                try:
                    msgs = await sub.fetch(cfg.fetch_batch, timeout=1.0)
                except (NatsTimeout, TimeoutError):
                    continue  # nothing new
                except Exception as exc:  # NATS away for a moment: the lease round decides
                    log.warning("worker %s: fetch on partition %d: %s", self.name, p, exc)
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    meta = msg.metadata
                    seq = meta.sequence.stream
                    if meta.num_delivered > 1 or seq <= replayed:
                        m.redeliveries.inc()
                    if seq <= last:
                        if not tracker.held(p, seq):
                            await msg.ack()  # acked before, the ack lost: again
                        continue  # still held here (its ack_wait lapsed): keep it
                    last = seq
                    try:
                        body = decode(msg.data)
                    except WireError as exc:
                        m.bad_messages.inc()
                        log.error("partition %d message %d: %s", p, seq, exc)
                        await msg.term()
                        continue
                    await feed_message(
                        self.pipeline, tracker, p, cfg.partitions, seq, msg, body,
                        done.pop(seq, ()),
                    )  # fmt: skip
                    await asyncio.sleep(0)  # let the lease round and the commits run
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _stop_fetchers(self, partitions: list[int]) -> None:
        tasks = [t for p in partitions if (t := self._fetchers.pop(p, None)) is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _release(self, p: int) -> None:
        """Give partition ``p`` back without splitting a window: its open windows are
        dropped unjudged (their messages stay unacked, so the next owner forms them
        whole); the windows already closed are judged, delivered and acked first, and
        the done keys of what stays unacked are written for the next owner."""
        assert self.leases is not None
        try:
            await self._stop_fetchers([p])
            dropped = self._drop_open(p)
            deadline = time.monotonic() + self.cluster.ack_wait
            while not self.tracker.settled(p) and time.monotonic() < deadline:
                await asyncio.sleep(self.cluster.commit_interval)
            if not self.tracker.settled(p):
                log.error("worker %s: partition %d given back before all was acked", self.name, p)
            self.tracker.forget(p)
            await self.leases.release(p)
            self.worker_metrics.moves.labels(kind="released").inc()
            log.warning(
                "worker %s: gave back partition %d (%d open window(s) left to the next owner)",
                self.name,
                p,
                dropped,
            )
        finally:
            self._releasing.pop(p, None)

    # -- progress ----------------------------------------------------------------

    async def _run_commits(self) -> None:
        while True:
            await asyncio.sleep(self.cluster.commit_interval)
            try:
                await self._commit()
            except Exception as exc:
                log.warning("worker %s: commit failed: %s", self.name, exc)

    async def _commit(self) -> None:
        assert self.buckets is not None and self.leases is not None
        await commit(
            self.tracker,
            self.buckets.state,
            set(self.leases.owned),
            self.cluster,
            self.worker_metrics,
            self.pipeline.open_lsns,
        )

    async def _run_lag(self) -> None:
        assert self.js is not None
        while True:
            await asyncio.sleep(1.0)
            await report_lag(self.js, self.cluster.stream, set(self._fetchers), self.worker_metrics)
