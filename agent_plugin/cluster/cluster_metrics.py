"""Prometheus metrics of the scale-out mode (``logsieve_cluster_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["IngressMetrics", "WorkerMetrics"]

_P = "logsieve_cluster_"


class IngressMetrics:
    """What an ingress published to JetStream."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            _P + "published_messages", "Messages JetStream acknowledged.", registry=registry
        )
        self.duplicates = Counter(
            _P + "duplicate_publishes",
            "Publishes JetStream dropped as repeats of a message id (a resent frame).",
            registry=registry,
        )
        self.refused = Counter(
            _P + "refused_frames",
            "Frames not acked to the client: a publish failed or timed out.",
            ["reason"],
            registry=registry,
        )


class WorkerMetrics:
    """A worker's partitions, their lag and its acks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.owned = Gauge(
            _P + "partitions_owned", "Partitions this worker leases.", registry=registry
        )
        self.members = Gauge(
            _P + "workers_alive", "Workers with a live membership.", registry=registry
        )
        self.lag = Gauge(
            _P + "partition_lag",
            "Messages in the partition not yet delivered to this worker (consumer num_pending).",
            ["partition"],
            registry=registry,
        )
        self.lagging: set[int] = set()  # partitions with a lag sample
        self.unacked = Gauge(
            _P + "unacked_messages",
            "Messages fed whose windows are not all judged and delivered yet.",
            registry=registry,
        )
        self.redeliveries = Counter(
            _P + "redeliveries",
            "Messages delivered again (a failover or a lapsed ack_wait).",
            registry=registry,
        )
        self.acks = Counter(_P + "acks", "Messages acked (every window judged).", registry=registry)
        self.moves = Counter(
            _P + "partition_moves",
            "Partitions acquired, released (rebalancing, shutdown) or lost (lease lapsed).",
            ["kind"],
            registry=registry,
        )
        self.bad_messages = Counter(
            _P + "bad_messages",
            "Messages that were not ours to decode (terminated).",
            registry=registry,
        )
