"""The Forward server's metrics, on a per-service ``prometheus_client`` registry.

Usage::

    metrics = Metrics()                       # its own CollectorRegistry
    metrics.acks_sent.inc()
    metrics.records_received.labels(mode="forward").inc(10)
    depth = Gauge("logsieve_queue_depth", "Batches queued.", ["queue"], registry=metrics.registry)
    depth.labels(queue="windows").set_function(q.qsize)        # read at scrape
    sample_value(metrics.acks_sent)                            # 1.0, as scraped

Each service gets its own :class:`~prometheus_client.CollectorRegistry`, never the
library's global one: tests run several services in one process, and a name can be
registered only once per registry. Other stages register their metrics on
``metrics.registry``; the HTTP endpoint serving it is :class:`~.metrics_http.MetricsServer`.

Counters are created without their ``_total`` suffix (prometheus_client adds it), so they
are exposed as ``logsieve_..._total``. The ``_created`` series prometheus_client would add
to every counter and histogram are switched off for the process: Fluent Bit's and
Prometheus' dashboards have no use for them and our exposition never had them.

The engine runs in a child process (``engine/worker.py``) that exports no metrics of its
own (the parent counts its restarts), so prometheus_client's multiprocess mode is not used.
prometheus_client's metrics take a lock, so stages in worker threads may update them too.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import disable_created_metrics as _disable_created_metrics

__all__ = ["DEFAULT_BUCKETS", "Metrics", "sample_value"]

# Latency buckets in seconds (prometheus_client's default set also has .075, .75 and 7.5).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

# The sample a read of each metric type means (a histogram's: how many observations).
_READ_SUFFIX = {"counter": "_total", "gauge": "", "histogram": "_count"}


def sample_value(metric: Counter | Gauge | Histogram, /, **labels: str) -> float:
    """What a scrape would show now for ``metric{labels}``.

    That is a counter's ``_total``, a gauge's value (its function called, if it has one)
    or a histogram's ``_count``; ``metric`` may also be one labelled child
    (``metric.labels(...)``). A label set not used yet reads 0 (and, as ``labels()``
    does, starts its series); label names the metric lacks raise ``ValueError``.
    """
    (family,) = metric.collect()
    name = family.name + _READ_SUFFIX[family.type]
    for sample in family.samples:
        if sample.name == name and sample.labels == labels:
            return sample.value
    metric.labels(**labels)  # checks the label names
    return 0.0


class Metrics:
    """The Forward server's metrics, as named attributes on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = reg = registry if registry is not None else CollectorRegistry()
        p = "logsieve_forward_"
        self.records_received = Counter(
            p + "records_received", "Log records decoded, by carrier mode.", ["mode"], registry=reg
        )
        self.records_skipped = Counter(
            p + "records_skipped",
            "Entries dropped while decoding (group_marker, invalid_time).",
            ["reason"],
            registry=reg,
        )
        self.bytes_received = Counter(
            p + "bytes_received", "Bytes read from clients.", registry=reg
        )
        self.frames = Counter(
            p + "frames", "Data requests decoded, by mode.", ["mode"], registry=reg
        )
        self.non_log_signals = Counter(
            p + "non_log_signals",
            "Metrics/traces requests skipped (acked).",
            ["signal"],
            registry=reg,
        )
        self.ignored_requests = Counter(
            p + "ignored_requests", "Top-level values that are not arrays (ignored).", registry=reg
        )
        self.connections_open = Gauge(p + "connections_open", "Open TCP connections.", registry=reg)
        self.connections_total = Counter(
            p + "connections", "TCP connections accepted (refused ones excluded).", registry=reg
        )
        self.connections_refused = Counter(
            p + "connections_refused",
            "Connections closed at once: max_connections or max_connections_per_peer.",
            registry=reg,
        )
        self.connections_closed = Counter(
            p + "connections_closed",
            "Closed connections by reason (peer, idle, protocol, handshake, sink, shutdown, "
            "handshake_timeout, frame_timeout, overload).",
            ["reason"],
            registry=reg,
        )
        self.buffered_bytes = Gauge(
            p + "buffered_bytes",
            "Bytes received but not yet decoded, all connections.",
            registry=reg,
        )
        self.acks_sent = Counter(p + "acks_sent", "Acks written after acceptance.", registry=reg)
        self.handshake_failures = Counter(
            p + "handshake_failures", "Failed shared-key/user handshakes.", registry=reg
        )
        self.malformed_frames = Counter(
            p + "malformed_frames",
            "Requests that closed their connection, by reason class.",
            ["reason"],
            registry=reg,
        )
        self.heartbeats = Counter(
            p + "heartbeats",
            "Heartbeats: udp datagrams, nil requests, connect (empty TCP connections).",
            ["kind"],
            registry=reg,
        )
        self.put_seconds = Histogram(
            p + "sink_put_seconds",
            "Time a request waited for the sink to accept it.",
            buckets=DEFAULT_BUCKETS,
            registry=reg,
        )
