"""Counters, gauges and histograms in Prometheus text format 0.0.4.

No ``prometheus_client`` dependency: the exposition format is a few lines of
text (https://prometheus.io/docs/instrumenting/exposition_formats/). Usage::

    metrics = Metrics()                       # the network layer's metrics
    metrics.acks_sent.inc()
    metrics.records_received.labels(mode="forward").inc(10)
    depth = metrics.registry.gauge("logsieve_queue_depth", "Batches queued.", ["queue"])
    depth.labels(queue="windows").set_function(lambda: q.qsize())   # read at scrape

The HTTP endpoint serving a registry is :class:`~.metrics_http.MetricsServer`.

Other stages register their own metrics on ``metrics.registry``. Updates take
a lock, so stages running in worker threads (the inference engine) may update
them too.
"""

from __future__ import annotations

import copy
import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "Metrics",
    "MetricsRegistry",
]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_F = TypeVar("_F", bound="_Family")


class _Family:
    """One metric name with its label names and one child per label-value tuple."""

    kind = ""

    def __init__(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL.fullmatch(label) or label.startswith("__") or label == "le":
                raise ValueError(f"invalid label name {label!r} for {name}")
        self.name = name
        self.help = help_
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], Any] = {}
        self._labelvalues: tuple[str, ...] = ()
        self._init_value()

    def _init_value(self) -> None:
        """Set up the per-child value state."""

    def labels(self: _F, **values: str) -> _F:
        """The child for these label values (created on first use)."""
        if set(values) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {sorted(values)}")
        key = tuple(str(values[n]) for n in self.labelnames)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                # A shallow copy shares name, help, lock and buckets; the value
                # state is then reset for this label set.
                child = copy.copy(self)
                child._labelvalues = key
                child._children = {}
                child._init_value()
                self._children[key] = child
        return child

    def _series(self) -> Iterable[_Family]:
        # An unlabelled metric is its own single series (so it shows as 0 at once).
        if not self.labelnames:
            return [self]
        with self._lock:
            return list(self._children.values())

    def _labelstr(self, extra: str = "") -> str:
        parts = [
            f'{n}="{_escape_label(v)}"'
            for n, v in zip(self.labelnames, self._labelvalues, strict=True)
        ]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def _samples(self) -> list[str]:
        raise NotImplementedError

    def render(self) -> str:
        """This family's HELP, TYPE and sample lines."""
        help_ = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines = [f"# HELP {self.name} {help_}", f"# TYPE {self.name} {self.kind}"]
        for child in sorted(self._series(), key=lambda c: c._labelvalues):
            lines.extend(child._samples())
        return "\n".join(lines) + "\n"

    def _check_unlabelled(self) -> None:
        if self.labelnames and not self._labelvalues:
            raise ValueError(f"{self.name} has labels {self.labelnames}: call .labels() first")


class Counter(_Family):
    """A value that only goes up (name it ``..._total``)."""

    kind = "counter"

    def _init_value(self) -> None:
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0)."""
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (got {amount})")
        self._check_unlabelled()
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        """The current value."""
        return self._value

    def _samples(self) -> list[str]:
        return [f"{self.name}{self._labelstr()} {_fmt(self._value)}"]


class Gauge(_Family):
    """A value that goes up and down, set directly or read from a function at scrape time."""

    kind = "gauge"

    def _init_value(self) -> None:
        self._value = 0.0
        self._function: Callable[[], float] | None = None

    def set(self, value: float) -> None:
        """Set the value."""
        self._check_unlabelled()
        with self._lock:
            self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (may be negative)."""
        self._check_unlabelled()
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount``."""
        self.inc(-amount)

    def set_function(self, function: Callable[[], float]) -> None:
        """Read the value from ``function`` at every scrape (e.g. a queue's ``qsize``)."""
        self._check_unlabelled()
        self._function = function

    @property
    def value(self) -> float:
        """The current value (calls the function if one is set)."""
        return float(self._function()) if self._function is not None else self._value

    def _samples(self) -> list[str]:
        return [f"{self.name}{self._labelstr()} {_fmt(self.value)}"]


class Histogram(_Family):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if not bounds or bounds != sorted(set(bounds)):
            raise ValueError(f"histogram {name} buckets must be increasing, got {buckets}")
        self.buckets = (*bounds, math.inf)
        super().__init__(name, help_, labelnames)

    def _init_value(self) -> None:
        self._counts = [0] * len(self.buckets)  # per bucket, not cumulative
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self._check_unlabelled()
        index = next(i for i, bound in enumerate(self.buckets) if value <= bound)
        with self._lock:
            self._counts[index] += 1
            self._sum += value
            self._count += 1

    @property
    def count(self) -> int:
        """Number of observations."""
        return self._count

    def _samples(self) -> list[str]:
        with self._lock:  # one consistent snapshot of counts, sum and count
            counts, total, count_all = list(self._counts), self._sum, self._count
        lines, running = [], 0
        for bound, count in zip(self.buckets, counts, strict=True):
            running += count
            le = 'le="' + ("+Inf" if math.isinf(bound) else repr(bound)) + '"'
            lines.append(f"{self.name}_bucket{self._labelstr(le)} {running}")
        lines.append(f"{self.name}_sum{self._labelstr()} {_fmt(total)}")
        lines.append(f"{self.name}_count{self._labelstr()} {count_all}")
        return lines


class MetricsRegistry:
    """Named metric families, rendered together in registration order."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()

    def _register(self, family: _F) -> _F:
        with self._lock:
            if family.name in self._families:
                raise ValueError(f"metric {family.name!r} is already registered")
            self._families[family.name] = family
        return family

    def counter(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> Counter:
        """Register and return a counter."""
        return self._register(Counter(name, help_, labelnames))

    def gauge(self, name: str, help_: str, labelnames: Sequence[str] = ()) -> Gauge:
        """Register and return a gauge."""
        return self._register(Gauge(name, help_, labelnames))

    def histogram(
        self,
        name: str,
        help_: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        """Register and return a histogram."""
        return self._register(Histogram(name, help_, labelnames, buckets))

    def render(self) -> str:
        """The whole registry in Prometheus text format 0.0.4."""
        with self._lock:
            families = list(self._families.values())
        return "".join(f.render() for f in families)


class Metrics:
    """The Forward server's metrics, as named attributes on one registry."""

    def __init__(self, registry: MetricsRegistry | None = None) -> None:
        self.registry = reg = registry if registry is not None else MetricsRegistry()
        p = "logsieve_forward_"
        self.records_received = reg.counter(
            p + "records_received_total", "Log records decoded, by carrier mode.", ["mode"]
        )
        self.records_skipped = reg.counter(
            p + "records_skipped_total",
            "Entries dropped while decoding (group_marker, invalid_time).",
            ["reason"],
        )
        self.bytes_received = reg.counter(p + "bytes_received_total", "Bytes read from clients.")
        self.frames = reg.counter(p + "frames_total", "Data requests decoded, by mode.", ["mode"])
        self.non_log_signals = reg.counter(
            p + "non_log_signals_total", "Metrics/traces requests skipped (acked).", ["signal"]
        )
        self.ignored_requests = reg.counter(
            p + "ignored_requests_total", "Top-level values that are not arrays (ignored)."
        )
        self.connections_open = reg.gauge(p + "connections_open", "Open TCP connections.")
        self.connections_total = reg.counter(
            p + "connections_total", "TCP connections accepted (refused ones excluded)."
        )
        self.connections_refused = reg.counter(
            p + "connections_refused_total", "Connections closed at once: max_connections."
        )
        self.connections_closed = reg.counter(
            p + "connections_closed_total",
            "Closed connections by reason (peer, idle, protocol, handshake, sink, shutdown).",
            ["reason"],
        )
        self.buffered_bytes = reg.gauge(
            p + "buffered_bytes", "Bytes received but not yet decoded, all connections."
        )
        self.acks_sent = reg.counter(p + "acks_sent_total", "Acks written after acceptance.")
        self.handshake_failures = reg.counter(
            p + "handshake_failures_total", "Failed shared-key/user handshakes."
        )
        self.malformed_frames = reg.counter(
            p + "malformed_frames_total",
            "Requests that closed their connection, by reason class.",
            ["reason"],
        )
        self.heartbeats = reg.counter(
            p + "heartbeats_total",
            "Heartbeats: udp datagrams, nil requests, connect (empty TCP connections).",
            ["kind"],
        )
        self.put_seconds = reg.histogram(
            p + "sink_put_seconds", "Time a request waited for the sink to accept it."
        )
