"""Metrics of the streaming pipeline and the upstream flag writer, on the shared registry.

Counters are incremented where things happen; depths and the upstream client's state
are gauges read at scrape time (``set_function``), so they cost nothing per record.
Names start with ``logsieve_pipeline_`` and ``logsieve_upstream_``; counters are created
without the ``_total`` that prometheus_client appends (see :mod:`.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from logsieve.engine.cache import CacheStats

if TYPE_CHECKING:
    from .ledger import Ledger
    from .upstream import UpstreamClient
    from .wal import WriteAheadLog

__all__ = ["PipelineMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# UpstreamStats fields exported as gauges (read from a snapshot at scrape time).
_UPSTREAM = {
    "records_acked": "Records delivered upstream (acked, or written without acks).",
    "records_sent": "Records written to the upstream socket, resends included.",
    "buffered_records": "Records in memory waiting for delivery.",
    "spilled_chunks": "Chunks spilled to the spool because memory was full.",
    "spool_chunks": "Chunks in the spool now.",
    "spool_bytes": "Bytes in the spool now.",
    "dropped_records": "Records lost: drop policy, or unsent at stop without a spool.",
    "retries": "Chunk resends after a failure.",
    "reconnects": "Upstream connections made after the first.",
    "connected": "1 while connected upstream.",
}


class PipelineMetrics:
    """The pipeline's metric families (``registry`` is shared with the server's)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = reg = registry if registry is not None else CollectorRegistry()
        p = "logsieve_pipeline_"
        self.records = Counter(
            p + "records",
            "Records taken by the pipeline, by outcome (windowed, no_text, repeat: a resent "
            "frame already in the write-ahead log).",
            ["outcome"],
            registry=reg,
        )
        self.raw_lines = Counter(
            p + "raw_lines",
            "Record texts by how the bundle's line format read them: parsed (a whole raw "
            "line, split into time/host/content) or as_is (content already).",
            ["outcome"],
            registry=reg,
        )
        self.unknown_lines = Counter(
            p + "unknown_template_lines",
            "Lines no training template matched ([UNK]).",
            registry=reg,
        )
        self.unknown_rate = Gauge(
            p + "unknown_template_rate", "Share of lines that matched no template.", registry=reg
        )
        self.windows_open = Gauge(p + "windows_open", "Windows open now.", registry=reg)
        self.windows_closed = Counter(
            p + "windows_closed",
            "Windows closed, by reason (idle, idle_wall, watermark, max_lines, evicted, "
            "flush, late).",
            ["reason"],
            registry=reg,
        )
        self.windows_failed = Counter(
            p + "windows_failed",
            "Windows not scored: the engine raised, or the batcher had stopped.",
            registry=reg,
        )
        self.queue_depth = Gauge(
            p + "queue_depth", "Closed windows waiting for the engine.", registry=reg
        )
        self.held_records = Gauge(
            p + "held_records",
            "Pass-through records waiting for their window to close.",
            registry=reg,
        )
        self.batch_windows = Histogram(
            p + "batch_windows", "Windows per engine call.", buckets=_BATCH_BUCKETS, registry=reg
        )
        self.engine_seconds = Histogram(
            p + "engine_seconds",
            "Engine latency per batch.",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.engine_restarts = Gauge(
            p + "engine_process_restarts",
            "Times the engine process died mid-batch and was started again.",
            registry=reg,
        )
        # Each served model's verdict cache (count_cache); exported as
        # logsieve_pipeline_cache_{hits,misses,batch_duplicates,evictions}_total,
        # logsieve_pipeline_cache_entries and logsieve_pipeline_cache_bytes.
        self._caches = _CacheCollector()
        reg.register(self._caches)
        self.verdicts = Counter(
            p + "verdicts", "Scored windows by verdict.", ["verdict"], registry=reg
        )
        self.novelty = Counter(
            p + "novelty_decisions",
            "New-template decisions: lines_rare, lines_admitted, lines_untracked, "
            "windows_rare (flagged for a rare new template), windows_drift_only (new "
            "templates all admitted), patterns_new, patterns_admitted.",
            ["decision"],
            registry=reg,
        )
        self.novelty_patterns = Gauge(
            p + "novelty_patterns", "New patterns tracked now.", registry=reg
        )
        self.sent = Counter(
            p + "records_sent_upstream",
            "Records handed to the upstream writer, by kind (flag, verdict, pattern, "
            "pass_through).",
            ["kind"],
            registry=reg,
        )
        self.retimed = Counter(
            p + "retimed_records",
            "Records whose event time could not be trusted, windowed at the current event "
            "time instead, by reason (future: beyond the wall clock + max_future_skew; "
            "before_epoch; not_finite).",
            ["reason"],
            registry=reg,
        )
        self.dropped = Counter(
            p + "dropped",
            "Records (item=record), closed windows (item=window), incident flags (item=flag) "
            "or clock ticks (item=tick) dropped because handling them raised, by the error's "
            "type (reason); the task handling them lives on.",
            ["item", "reason"],
            registry=reg,
        )
        # Reloads (SIGHUP): "failed" means the old model kept serving.
        self.reloads = Counter(
            "logsieve_model_reloads",
            "Bundle reloads (SIGHUP), by result (ok, failed: the old model kept serving).",
            ["result"],
            registry=reg,
        )
        self.model = Info(
            "logsieve_model", "The model serving now (its id, detector and bundle).", registry=reg
        )

    def count_cache(self, stats: CacheStats) -> None:
        """Export a served model's verdict-cache counters (each model has its own cache;
        the metrics sum every cache counted, so a reload does not reset them)."""
        if not any(s is stats for s in self._caches.stats):
            self._caches.stats.append(stats)

    def set_model(self, model_id: str, detector: str, path: str) -> None:
        """Publish the model now serving (``logsieve_model_info``)."""
        self.model.info({"model_id": model_id, "detector": detector, "bundle": path})

    def bind(
        self,
        *,
        open_windows: Callable[[], float],
        unknown_rate: Callable[[], float],
        queue_depth: Callable[[], float],
        held_records: Callable[[], float],
        engine_restarts: Callable[[], float],
        novelty_patterns: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """Read the pipeline's depths at scrape time, through the functions handed in."""
        self.windows_open.set_function(open_windows)
        self.unknown_rate.set_function(unknown_rate)
        self.queue_depth.set_function(queue_depth)
        self.held_records.set_function(held_records)
        self.engine_restarts.set_function(engine_restarts)
        self.novelty_patterns.set_function(novelty_patterns)

    def bind_upstream(self, client: UpstreamClient) -> None:
        """Export the upstream client's counters and gauges (flags sent/buffered/spilled)."""
        for name, help_ in _UPSTREAM.items():
            gauge = Gauge(f"logsieve_upstream_{name}", help_, registry=self.registry)
            gauge.set_function(_stat(client, name))

    def bind_wal(self, wal: WriteAheadLog, ledger: Ledger) -> None:
        """Export the write-ahead log's state (size, health, replay and undone windows)."""
        gauges: dict[str, tuple[str, Callable[[], float]]] = {
            "bytes": ("Bytes in the write-ahead log's segments.", lambda: wal.size_bytes),
            "segments": ("Segment files of the write-ahead log.", lambda: wal.segment_count),
            "writable": (
                "1 while the log accepts appends; 0 while frames wait unacked (disk full, "
                "unwritable, or max_bytes reached).",
                lambda: float(wal.error is None),
            ),
            "appended_records": ("Records appended since start.", lambda: wal.appended_records),
            "fsyncs": ("fsync calls since start.", lambda: wal.fsyncs),
            "undone_windows": (
                "Closed windows whose verdict is not yet acked or spooled upstream.",
                lambda: ledger.undone,
            ),
            "replayed_records": (
                "Records windowed again from the log at start.",
                lambda: ledger.replayed_records,
            ),
        }
        for name, (help_, read) in gauges.items():
            gauge = Gauge(f"logsieve_wal_{name}", help_, registry=self.registry)
            gauge.set_function(read)


class _CacheCollector(Collector):
    """``logsieve_pipeline_cache_*``: the verdict caches' counters, read at scrape time."""

    _COUNTERS: ClassVar[dict[str, str]] = {
        "hits": "Windows whose score came from the verdict cache (no engine call).",
        "misses": "Windows the engine scored (one per distinct window of a batch).",
        "batch_duplicates": "Windows identical to another in the same batch, scored once with it.",
        "evictions": "Verdict cache entries dropped to stay within its entries/bytes bounds.",
    }

    def __init__(self) -> None:
        self.stats: list[CacheStats] = []  # one per model served since start

    def collect(self) -> Iterator[Metric]:
        p = "logsieve_pipeline_cache_"
        for name, help_ in self._COUNTERS.items():
            field = "duplicates" if name == "batch_duplicates" else name
            total = sum(getattr(s, field) for s in self.stats)
            yield CounterMetricFamily(p + name, help_, value=total)
        yield GaugeMetricFamily(
            p + "entries", "Entries in the verdict caches now.", sum(s.entries for s in self.stats)
        )
        yield GaugeMetricFamily(
            p + "bytes",
            "Estimated bytes held by the verdict caches now.",
            sum(s.bytes for s in self.stats),
        )


def _stat(client: UpstreamClient, name: str) -> Callable[[], float]:
    return lambda: float(getattr(client.stats, name))
