"""``logsieve serve --nats``: Forward in, JetStream out; the Forward ack follows the
JetStream ack.

:class:`IngressSink` is the :class:`~..sink.RecordSink` the Forward server calls
instead of the pipeline. For each record it finds the window keys with the bundle's
settings (the pipeline's own :class:`~..record_reader.RecordReader` and
:class:`~logsieve.logs.keys.KeyExtractor`), groups the frame's records by partition
(a record whose keys fall in several partitions goes to each; one with no key goes to
its tag's partition), publishes one message per partition concurrently and returns,
so the frame is acked, only once JetStream acknowledged every one. A publish that
fails or times out raises: the frame is not acked and the client resends it; message
ids taken from the frame's chunk id make the repeats harmless (:mod:`.wire`).

:class:`Ingress` wires the sink to a :class:`~..server.ForwardServer` and a metrics
endpoint (``/health`` 503 while the NATS connection is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from logsieve.bundle import Bundle
from logsieve.errors import ConfigError, LogsieveError
from logsieve.logs.keys import KeyExtractor

from ..forward import LogRecord, RecordBatch
from ..metrics import Metrics
from ..metrics_http import MetricsServer
from ..pipeline_metrics import PipelineMetrics
from ..record_reader import RecordReader
from ..serve_config import ServeSettings
from ..server import ForwardServer
from .cluster_config import ClusterConfig
from .cluster_metrics import IngressMetrics
from .partition import partition_of, partitions_of
from .streams import connect, ensure_stream
from .wire import PARTITION_HEADER, encode, msg_id

__all__ = ["Ingress", "IngressSink", "PublishError"]

log = logging.getLogger(__name__)


class PublishError(LogsieveError, RuntimeError):
    """JetStream did not acknowledge a frame's messages: the frame is not acked."""


class IngressSink:
    """Publishes each frame to the partitions of its records' window keys."""

    def __init__(
        self,
        js: JetStreamContext,
        cluster: ClusterConfig,
        reader: RecordReader,
        keys: KeyExtractor,
        metrics: IngressMetrics,
    ) -> None:
        self.js = js
        self.cluster = cluster
        self.reader = reader
        self.keys = keys
        self.metrics = metrics

    def partitions(self, rec: LogRecord, trusted_until: float) -> list[int]:
        """The partitions ``rec`` goes to (module docstring)."""
        n = self.cluster.partitions
        try:
            # As the pipeline's put reads it: (time, host, text, raw) or None (no text).
            read = self.reader.read(rec.record, rec.time, trusted_until)
            found = (
                partitions_of(self.keys.keys_of(read[2], read[1], rec.record), n)
                if read is not None
                else []
            )
        except Exception:  # the worker counts it as dropped; it must still arrive
            found = []
        return found or [partition_of(rec.tag, n)]

    async def put(self, batch: RecordBatch) -> None:
        """Publish ``batch``; return once JetStream acked every message, else raise."""
        groups: dict[int, list[LogRecord]] = {}
        trusted_until = self.reader.trusted_until()
        for rec in batch.records:
            for p in self.partitions(rec, trusted_until):
                groups.setdefault(p, []).append(rec)
        cfg = self.cluster
        results = await asyncio.gather(
            *(
                self.js.publish(
                    cfg.subject(p),
                    encode(batch.tag, recs),
                    timeout=cfg.publish_timeout,
                    headers={"Nats-Msg-Id": msg_id(batch.chunk, p), PARTITION_HEADER: str(p)},
                )
                for p, recs in groups.items()
            ),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            reason = type(failed[0]).__name__
            self.metrics.refused.labels(reason=reason).inc()
            raise PublishError(
                f"JetStream did not acknowledge {len(failed)} of {len(results)} message(s) "
                f"of a frame ({reason}: {failed[0]}); frame not acked, the client resends it"
            )
        for r in results:
            if getattr(r, "duplicate", False):
                self.metrics.duplicates.inc()
            else:
                self.metrics.published.inc()


class Ingress:
    """Forward server → :class:`IngressSink` → JetStream, plus /metrics and /health."""

    def __init__(self, settings: ServeSettings, cluster: ClusterConfig, bundle: Bundle) -> None:
        if cluster.nats_url is None:
            raise ConfigError("cluster.nats_url", None, "nats://host:port")
        self.url: str = cluster.nats_url
        self.settings, self.cluster, self.bundle = settings, cluster, bundle
        self.metrics = Metrics()
        self.ingress_metrics = IngressMetrics(self.metrics.registry)
        # The reader's own counters (retimed records) land on this registry too.
        self.reader = RecordReader(
            settings.pipeline,
            bundle,
            PipelineMetrics(self.metrics.registry),
            watermark=lambda: None,
        )
        self.keys = KeyExtractor(bundle.log_config.windows)
        self.nc: NATS | None = None
        self.server: ForwardServer | None = None
        srv = settings.server
        self.http = MetricsServer(
            self.metrics.registry, srv.metrics_host, srv.metrics_port, health=self.health
        )
        self._connected = False

    async def start(self) -> None:
        """Connect (creating or checking the stream), then listen."""
        self.nc = await connect(self.url, "ingress", self._connection)
        try:
            js = self.nc.jetstream()
            await ensure_stream(js, self.cluster)
            sink = IngressSink(js, self.cluster, self.reader, self.keys, self.ingress_metrics)
            self.server = ForwardServer(self.settings.server, sink, self.metrics)
            await self.http.start()
            await self.server.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop accepting, drain connections (their frames published and acked), close."""
        if self.server is not None:
            await self.server.stop(drain_timeout=self.settings.pipeline.drain_timeout)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        await self.http.stop()

    @property
    def port(self) -> int:
        return self.server.port if self.server is not None else 0

    @property
    def metrics_port(self) -> int:
        return self.http.port

    def health(self) -> str | None:
        if not self._connected:
            return f"NATS connection to {self.url} lost: frames wait unacknowledged"
        if self.server is None or not self.server.is_serving:
            return "not serving (starting or shutting down)"
        return None

    def _connection(self, up: bool) -> None:
        self._connected = up
