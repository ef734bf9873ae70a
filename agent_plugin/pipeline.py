"""The streaming pipeline: a :class:`~.sink.RecordSink` that turns records into flags.

::

    put(batch) ── record → line text → LogRecord ──► LinePipeline (keys, templates, windows)
                  (a whole raw line: the bundle's line parser → time, host, content)
                                                          │ closed windows
                                       bounded queue ◄────┘   (put awaits when full)
                                             │ batcher: batch_size windows or max_wait_ms
                                             ▼
                         WindowEngine.score_ids_async: the engine's own process (the
                         default) or one worker thread; the loop stays responsive
                                             │ ScoredWindow
                                             ▼
                         FlagBuilder → upstream.send(flag_tag, flag)   (+ verdicts, pass-through)

Backpressure (STYLE.md §3): ``put`` returns only once every window its records closed
is in the queue; when the engine falls behind the queue fills, ``put`` waits, the
server stops reading that socket and the client's buffer holds the data. Nothing is
dropped. ``put`` returning means the records are in the windower (in memory): they
are flagged after their window closes, including at shutdown (:meth:`close` flushes
every open window through the engine).

Windows close on later records (the windower's own event-time rules), on a clock
tick (``advance_interval``; see :class:`~.pipeline_config.PipelineConfig` for the
watermark), and at :meth:`close`. Everything in the windower runs on the event loop;
only the engine call leaves it (to the engine process, or to a single worker thread),
and the batcher awaits each batch before the next, so engine calls never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from logsieve.bundle import Bundle
from logsieve.engine.windows import WindowEngine
from logsieve.errors import BundleError, LogsieveError
from logsieve.logs.lineformat import LineParser
from logsieve.logs.pipeline import Event, LinePipeline
from logsieve.logs.records import LogRecord
from logsieve.logs.templates import TemplateMatcher
from logsieve.logs.windows import Window
from logsieve.verdict import Verdict, scored_windows, template_ids

from .flags import FlagBuilder, enrich
from .forward import LogRecord as ForwardRecord
from .forward import RecordBatch
from .pipeline_config import PipelineConfig
from .pipeline_metrics import PipelineMetrics

__all__ = ["FlagSender", "PipelineClosedError", "StreamingPipeline"]

log = logging.getLogger(__name__)

_STOP = object()  # queue sentinel: the batcher finishes what is queued, then returns


class FlagSender(Protocol):
    """Where records go upstream (:class:`~.upstream.UpstreamClient` implements it)."""

    async def send(self, tag: str, record: dict[Any, Any], time: float | None = None) -> bool:
        """Queue one record for delivery; False if a drop policy dropped it."""
        ...


class PipelineClosedError(LogsieveError, RuntimeError):
    """``put`` after :meth:`StreamingPipeline.close` began (the batch is refused, not acked)."""


class StreamingPipeline:
    """Records in, flags out; see the module docstring.

    Usage::

        pipeline = StreamingPipeline(config, bundle, engine, upstream, PipelineMetrics())
        await pipeline.start()
        server = ForwardServer(server_config, pipeline, metrics)   # pipeline is the sink
        ...
        await server.stop(); await pipeline.close(); await upstream.stop()
    """

    def __init__(
        self,
        config: PipelineConfig,
        bundle: Bundle,
        engine: WindowEngine,
        upstream: FlagSender,
        metrics: PipelineMetrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if bundle.templates_state is None or bundle.vocab is None:
            raise BundleError(
                f"{bundle.path}: trained on pre-parsed template ids, it cannot read raw "
                "lines (serve a bundle trained on raw lines)"
            )
        self.config = config
        self.upstream = upstream
        log_config = bundle.log_config
        self.text_fields = config.text_fields or log_config.text_fields
        # Only per-host (sliding) windows read a record's host; session keys never do.
        self._needs_host = log_config.windows.kind == "sliding"
        self.lines = LinePipeline(log_config, TemplateMatcher.from_state(bundle.templates_state))
        # A record whose text is a whole raw line (Fluent Bit tail without a parser) is
        # split by the training data's own parser, so it templates and windows as in
        # training; text that does not parse as a raw line is content already.
        line_format = bundle.line_format if config.raw_lines else None
        self.raw_parser = LineParser(line_format) if line_format is not None else None
        self.raw_counts = {"parsed": 0, "as_is": 0}
        self.engine = engine
        self.vocab = bundle.vocab
        self.threshold = bundle.threshold
        self.builder = FlagBuilder(
            model_id=bundle.model_id,
            detector=bundle.detector,
            top_k=config.top_k,
            every_verdict=config.every_verdict,
            tag=config.flag_tag,
        )
        self.metrics = metrics if metrics is not None else PipelineMetrics()
        self._clock = clock
        self._queue: asyncio.Queue[Window[Event] | object] = asyncio.Queue(config.queue_size)
        self._held: dict[int, tuple[Event, ForwardRecord]] = {}  # pass-through, by id(event)
        self._max_time: float | None = None
        self._max_time_seen_at = 0.0
        self._state = "new"
        self._batcher: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.metrics.bind(
            open_windows=lambda: self.lines.windower.open_windows,
            unknown_rate=lambda: self.lines.matcher.unknown_rate,
            queue_depth=lambda: self.queue_depth,
            held_records=lambda: self.held_records,
            engine_restarts=lambda: engine.restarts,
        )

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the batcher and the clock."""
        if self._state != "new":
            raise RuntimeError(f"start() on a pipeline that is {self._state}")
        self._state = "running"
        self._batcher = asyncio.create_task(self._run_batcher(), name="logsieve-batcher")
        if self.config.advance_interval > 0:
            self._ticker = asyncio.create_task(self._run_clock(), name="logsieve-clock")

    async def close(self) -> None:
        """Flush every open window through the engine and send its flags; idempotent.

        Call after the server stopped (no ``put`` in flight) and before the upstream
        client stops (flags are handed to it here).
        """
        if self._state in ("closing", "closed"):
            return
        was_running, self._state = self._state == "running", "closing"
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if was_running and self._batcher is not None:
            for window in self.lines.flush():
                await self._enqueue(window)
            await self._queue.put(_STOP)
            await self._batcher
        # Anything still held joined no window that closed (cannot happen after flush,
        # but never drop a record silently).
        for _event, rec in list(self._held.values()):
            await self._pass(rec, None)
        self._held.clear()
        self._state = "closed"
        log.info("pipeline closed: %s", self.stats())

    # -- the sink ------------------------------------------------------------

    async def put(self, batch: RecordBatch) -> None:
        """Window the batch's records; waits while the inference queue is full."""
        if self._state != "running":
            raise PipelineClosedError(f"pipeline is {self._state}; batch refused")
        m = self.metrics
        no_text = unknown = parsed = 0
        # Hoisted: this loop runs once per record and is most of the server's Python.
        text_of, feed, pass_through = self._text, self.lines.feed_event, self.config.pass_through
        host_of = self._host if self._needs_host else None
        parse_raw = self.raw_parser.parse_raw if self.raw_parser is not None else None
        for rec in batch.records:
            text = text_of(rec.record)
            if text is None:
                no_text += 1
                if pass_through:
                    await self._pass(rec, None)
                continue
            host = host_of(rec.record) if host_of is not None else None
            if parse_raw is not None and (line := parse_raw(text)) is not None:
                # The line's own time and host win over the record's: Forward records
                # always carry a time, which for tail without a parser is when the agent
                # read the line; training windowed on the line's time and node.
                parsed += 1
                if line.time is None or (line.host is None and host is not None):
                    own = line.time if line.time is not None else rec.time
                    line = LogRecord(own, line.host or host, line.text)
                record = line
            else:
                record = LogRecord(rec.time, host, text)
            event, keys, closed = feed(record, rec.record)
            if event.unknown:
                unknown += 1
            when = record.time
            if when is not None and (self._max_time is None or when > self._max_time):
                self._max_time, self._max_time_seen_at = when, self._clock()
            if pass_through:
                if keys:
                    self._held[id(event)] = (event, rec)
                else:
                    await self._pass(rec, None)
            for window in closed:
                await self._enqueue(window)
        # Counted once per frame: a labelled lookup per record cost 6% of a loaded run.
        if unknown:
            m.unknown_lines.inc(unknown)
        if parse_raw is not None:
            windowed = len(batch.records) - no_text
            m.raw_lines.labels(outcome="parsed").inc(parsed)
            m.raw_lines.labels(outcome="as_is").inc(windowed - parsed)
            self.raw_counts["parsed"] += parsed
            self.raw_counts["as_is"] += windowed - parsed
        m.records.labels(outcome="no_text").inc(no_text)
        m.records.labels(outcome="windowed").inc(len(batch.records) - no_text)

    def _text(self, record: Mapping[Any, Any]) -> str | None:
        for name in self.text_fields:
            value = record.get(name)
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            if isinstance(value, str) and value:
                # One line per record: a trailing newline from tail inputs is not content.
                return value.rstrip("\r\n") or None
        return None

    def _host(self, record: Mapping[Any, Any]) -> str | None:
        for name in self.config.host_fields:
            value = record.get(name)
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            if isinstance(value, str) and value:
                return value
        return None

    async def _enqueue(self, window: Window[Event]) -> None:
        self.metrics.windows_closed.labels(reason=window.closed_by).inc()
        await self._queue.put(window)

    # -- the clock -----------------------------------------------------------

    def watermark(self) -> float | None:
        """Largest event time seen plus wall-clock seconds since; None before any record."""
        if self._max_time is None:
            return None
        return self._max_time + (self._clock() - self._max_time_seen_at)

    async def _run_clock(self) -> None:
        while True:
            await asyncio.sleep(self.config.advance_interval)
            watermark = self.watermark()
            if watermark is None:
                continue
            for window in self.lines.advance(watermark):
                await self._enqueue(window)

    # -- the batcher ---------------------------------------------------------

    async def _run_batcher(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is _STOP:
                return
            batch: list[Window[Event]] = [first]  # type: ignore[list-item]
            deadline = loop.time() + self.config.max_wait_ms / 1000.0
            while len(batch) < self.config.batch_size:
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            await self._process(batch)

    async def _next(self, timeout: float) -> object | None:
        """The next queued item, or None after ``timeout`` s (never loses an item)."""
        with contextlib.suppress(asyncio.QueueEmpty):
            return self._queue.get_nowait()
        if timeout <= 0:
            return None
        getter = asyncio.ensure_future(self._queue.get())
        done, _ = await asyncio.wait({getter}, timeout=timeout)
        if done or not getter.cancel():
            return getter.result()
        # Cancelled before it got an item: the item (if any) stays in the queue.
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        return None

    async def _process(self, windows: list[Window[Event]]) -> None:
        m = self.metrics
        t0 = time.perf_counter()
        try:
            scores = await self.engine.score_ids_async(template_ids(windows))
            # Inside the try, as before: a reply that does not fit its windows (a broken
            # engine) is counted as failed, not allowed to kill the batcher.
            scored = scored_windows(windows, scores, self.vocab, self.threshold)
        except Exception:
            # A failing engine must not take the server down; the windows are counted.
            m.windows_failed.inc(len(windows))
            log.exception("engine failed on a batch of %d window(s)", len(windows))
            return
        m.engine_seconds.observe(time.perf_counter() - t0)
        m.batch_windows.observe(len(windows))
        anomalies = 0
        for window, sw in zip(windows, scored, strict=True):
            anomaly = sw.anomaly
            anomalies += anomaly
            record = self.builder.build(sw)
            if record is not None:
                await self.upstream.send(self.builder.tag, record, time=sw.end)
                m.sent.labels(kind="flag" if anomaly else "verdict").inc()
            if self.config.pass_through:
                verdict = self.builder.verdict(sw)  # its flag id: only pass-through needs it
                for item in window.items:
                    held = self._held.pop(id(item), None)
                    if held is not None:
                        await self._pass(held[1], verdict)
        # Counted once per batch, like records per frame in put().
        m.verdicts.labels(verdict="anomaly").inc(anomalies)
        m.verdicts.labels(verdict="normal").inc(len(windows) - anomalies)

    async def _pass(self, rec: ForwardRecord, verdict: Verdict | None) -> None:
        record = enrich(rec.record, verdict) if verdict is not None else dict(rec.record)
        tag = self.config.pass_through_tag or rec.tag
        await self.upstream.send(tag, record, time=rec.time)
        self.metrics.sent.labels(kind="pass_through").inc()

    # -- introspection -------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Closed windows waiting for the engine."""
        return self._queue.qsize()

    @property
    def held_records(self) -> int:
        """Pass-through records waiting for their window to close."""
        return len(self._held)

    def stats(self) -> dict[str, Any]:
        """The line pipeline's counters, the queue depth, and how many record texts were
        whole raw lines (``raw_parsed``) or content as it came (``raw_as_is``)."""
        return {
            **self.lines.stats(),
            "queue_depth": self.queue_depth,
            "raw_parsed": self.raw_counts["parsed"],
            "raw_as_is": self.raw_counts["as_is"],
        }
