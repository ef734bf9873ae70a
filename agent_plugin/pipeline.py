"""The streaming pipeline: a :class:`~.sink.RecordSink` that turns records into flags.

::

    put(batch) ── record → (time, host, text) ──► LinePipeline (keys, templates, windows)
                  (a whole raw line: the bundle's line parser → time, host, content)
                                                          │ closed windows
                                       bounded queue ◄────┘   (put awaits when full)
                                             │ batcher: batch_windows windows or max_wait_ms
                                             ▼
                         WindowEngine.score_ids_async: the engine's own process (the
                         default) or one worker thread; the loop stays responsive
                                             │ ScoredWindow
                                             ▼
                         IncidentMerger (overlapping anomalous windows of a key → one)
                                             │ Incident
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
watermark; the same tick closes session windows quiet for ``idle_close`` wall-clock
seconds), and at :meth:`close`. Anomalous windows become flags through
:class:`~logsieve.incidents.IncidentMerger`, as offline: the tick also queues the
watermark behind the windows it closed, so an incident whose host went quiet is
emitted once no window can join it. Everything in the windower runs on the event loop;
only the engine call leaves it (to the engine process, or to a single worker thread),
and the batcher awaits each batch before the next, so engine calls never overlap.

Event times are checked against the wall clock first (:mod:`.timecheck`): one beyond
it by more than ``max_future_skew`` (or before 1970, or not finite) is windowed at the
current event time and counted, so no single record can close every open window.
A record, window or flag whose handling raises is dropped and counted
(``logsieve_pipeline_dropped_total``), never allowed to end the batcher or the clock;
if one of them ends anyway (:attr:`StreamingPipeline.tasks`, watched by
:mod:`.supervision`), ``put`` refuses batches and nothing waits on its queue.

A reload (SIGHUP, :meth:`StreamingPipeline.swap_model`) changes the model between two
records: each queued window is scored by the model current when it closed (its ids
come from that model's templates), open windows are re-matched with the new model's
templates, and the old engine is closed after its last window (:mod:`.served_model`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from logsieve.bundle import Bundle
from logsieve.engine.windows import WindowEngine
from logsieve.engine.worker import EngineLostError
from logsieve.errors import LogsieveError
from logsieve.incidents import Incident, IncidentMerger
from logsieve.logs.pipeline import Event, LinePipeline
from logsieve.logs.vocab import Vocab
from logsieve.logs.windows import Window
from logsieve.verdict import (
    ScoredWindow,
    Verdict,
    is_anomaly,
    model_inputs,
    scored_windows,
    seen_in_training,
)

from . import failpoints
from .flags import FlagBuilder, enrich
from .forward import LogRecord as ForwardRecord
from .forward import RecordBatch
from .ledger import Ledger, ReplayPlan, WindowLedger
from .novelty_outlet import NoveltyOutlet
from .pipeline_config import PipelineConfig
from .pipeline_metrics import PipelineMetrics
from .record_reader import RecordReader
from .replay import replay_records
from .served_model import ServedModel, served_model
from .supervision import RateLimitedLog
from .wal import WalRecord

__all__ = ["FlagSender", "PipelineClosedError", "PipelineFailedError", "StreamingPipeline"]

log = logging.getLogger(__name__)

_STOP = object()  # queue sentinel: the batcher finishes what is queued, then returns


class _Progress:
    """Queued behind the windows a clock tick closed: event time reached ``watermark``."""

    __slots__ = ("watermark",)

    def __init__(self, watermark: float) -> None:
        self.watermark = watermark


class FlagSender(Protocol):
    """Where records go upstream (:class:`~.upstream.UpstreamClient` implements it)."""

    async def send(self, tag: str, record: dict[Any, Any], time: float | None = None) -> bool:
        """Queue one record for delivery; False if a drop policy dropped it."""
        ...


class PipelineClosedError(LogsieveError, RuntimeError):
    """``put`` after :meth:`StreamingPipeline.close` began (the batch is refused, not acked)."""


class PipelineFailedError(PipelineClosedError):
    """The batcher task has ended: closed windows can no longer be scored, so a batch
    is refused (not acked) rather than waiting for ever on a queue nobody reads."""


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
        ledger: WindowLedger | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: monotonic seconds (idle closing, the watermark's progress);
        ``wall_clock``: Unix seconds, the bound on trusted event times (:mod:`.timecheck`)."""
        self.config = config
        self.ledger = ledger  # the write-ahead log's bookkeeping; None: acks mean memory
        self.upstream = upstream
        model = served_model(bundle, engine, config)
        log_config = bundle.log_config
        self.lines = LinePipeline(
            log_config, model.matcher, clock=clock if config.idle_close > 0 else None
        )
        self.incidents = IncidentMerger.for_windows(log_config.windows, bundle.model_id)
        self._model = model  # current; a reload replaces it (swap_model)
        self._model_of: dict[int, ServedModel] = {}  # id(queued window) -> its model
        self._retired: list[ServedModel] = []
        self._closing: set[asyncio.Future[None]] = set()  # retired engines being closed
        self.metrics = metrics if metrics is not None else PipelineMetrics()
        self.metrics.set_model(model.model_id, bundle.detector, str(bundle.path))
        self.metrics.count_cache(model.cache_stats)
        self._clock = clock
        self._wall = wall_clock
        self._drop_log = RateLimitedLog(log)
        self.reader = RecordReader(
            config,
            bundle,
            self.metrics,
            watermark=lambda: self.lines.windower.watermark,
            wall_clock=wall_clock,
            log=self._drop_log,
        )
        self._queue: asyncio.Queue[Window[Event] | object] = asyncio.Queue(config.queue_size)
        self._held: dict[int, tuple[Event, ForwardRecord]] = {}  # pass-through, by id(event)
        self._max_time: float | None = None
        self._max_time_seen_at = 0.0
        self._unqueued = 0  # put() calls holding closed windows not yet all queued
        self._state = "new"
        self._batcher: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stop_clock: asyncio.Event | None = None  # close() sets it: the clock ends
        self.novelty = NoveltyOutlet(config, self.lines.novelty, upstream, self.metrics, clock)
        self.novelty.load()
        self.metrics.bind(
            open_windows=lambda: self.lines.windower.open_windows,
            unknown_rate=lambda: self.lines.matcher.unknown_rate,
            queue_depth=lambda: self.queue_depth,
            held_records=lambda: self.held_records,
            engine_restarts=lambda: self._model.engine.restarts,
            novelty_patterns=lambda: self.novelty.patterns,
        )

    # -- the served model ----------------------------------------------------

    @property
    def model(self) -> ServedModel:
        """The current model: windows closing from now on are scored by it."""
        return self._model

    @property
    def engine(self) -> WindowEngine:
        return self._model.engine

    @property
    def vocab(self) -> Vocab | None:
        return self._model.vocab

    @property
    def threshold(self) -> float:
        return self._model.threshold

    @property
    def builder(self) -> FlagBuilder:
        return self._model.builder

    def swap_model(self, model: ServedModel) -> None:
        """Make ``model`` current (on the event loop, between records: no await).

        Windows already closed stay queued for the model current when they closed;
        open windows are re-matched with the new model's templates and will be scored
        by it. The old model is retired: its engine is closed (off the loop) once its
        last queued window is scored. The caller owns nothing more of either engine.
        """
        old, self._model = self._model, model
        self.incidents.model_id = model.model_id  # incidents opened from now on
        self.metrics.set_model(model.model_id, model.bundle.detector, str(model.bundle.path))
        self.metrics.count_cache(model.cache_stats)
        old.retired = True
        self._retired.append(old)
        for old_id, new in self.lines.use_matcher(model.matcher).items():
            held = self._held.pop(old_id, None)
            if held is not None:
                self._held[id(new)] = (new, held[1])
        self._close_drained()

    def _close_drained(self) -> None:
        for m in [m for m in self._retired if m.drained]:
            m.closed = True
            self._retired.remove(m)
            # EngineWorker.close joins a process: never on the loop.
            done = asyncio.get_running_loop().run_in_executor(None, m.engine.close)
            self._closing.add(done)
            done.add_done_callback(self._closing.discard)

    # -- lifecycle -----------------------------------------------------------

    @property
    def tasks(self) -> dict[str, asyncio.Task[None]]:
        """The long-lived tasks :meth:`start` made, by name, for a supervisor to watch:
        each runs until :meth:`close` and ends early only by a fault."""
        named = {"batcher": self._batcher, "clock": self._ticker}
        return {name: task for name, task in named.items() if task is not None}

    async def start(self) -> None:
        """Start the batcher and the clock."""
        if self._state != "new":
            raise RuntimeError(f"start() on a pipeline that is {self._state}")
        self._state = "running"
        self._batcher = asyncio.create_task(self._run_batcher(), name="logsieve-batcher")
        if self.config.advance_interval > 0:
            self._stop_clock = asyncio.Event()
            self._ticker = asyncio.create_task(self._run_clock(), name="logsieve-clock")

    async def close(self) -> None:
        """Flush every open window through the engine and send its flags; idempotent.

        Call after the server stopped (no ``put`` in flight) and before the upstream
        client stops (flags are handed to it here).
        """
        if self._state in ("closing", "closed"):
            return
        was_running, self._state = self._state == "running", "closing"
        if self._ticker is not None and self._stop_clock is not None:
            # Not cancelled: a tick waiting for room in the queue holds windows it took
            # from the windower; it finishes (the batcher drains) or fails (no batcher).
            self._stop_clock.set()
            await asyncio.wait({self._ticker})  # an error it died of is the supervisor's
        if was_running and self._batcher is not None:
            try:
                await self._enqueue_all(self.lines.flush())
                await self._put(_STOP)
            except PipelineFailedError:
                pass  # the batcher is gone (and was reported): don't wait on its queue
            await asyncio.wait({self._batcher})  # its end, error or not, is the supervisor's
            self._lost(self._drain_queue())
        # Anything still held joined no window that closed (cannot happen after flush,
        # but never drop a record silently).
        for _event, rec in list(self._held.values()):
            await self._pass(rec, None)
        self._held.clear()
        self.novelty.save()
        for retired in self._retired:  # windows lost with a cancelled batcher: close anyway
            await asyncio.to_thread(retired.engine.close)
        self._retired.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._state = "closed"
        log.info("pipeline closed: %s", self.stats())

    # -- the sink ------------------------------------------------------------

    async def put(self, batch: RecordBatch) -> None:
        """Window the batch's records; waits while the inference queue is full."""
        if self._state != "running":
            raise PipelineClosedError(f"pipeline is {self._state}; batch refused")
        if self._batcher is not None and self._batcher.done():
            raise PipelineFailedError("the batcher has stopped; batch refused")
        m = self.metrics
        no_text = unknown = parsed = dropped = 0
        # Hoisted: this loop runs once per record and is most of the server's Python.
        read, feed, pass_through = self.reader.read, self.lines.feed_line, self.config.pass_through
        trusted_until = self.reader.trusted_until()  # read once per frame
        # The latest event time of the frame so far, committed to the watermark's base
        # (note_time) before any await and at the end: one clock read per frame.
        latest: float | None = None
        # Written (and under fsync "always" synced) before windowing: the ack follows.
        first = None
        if self.ledger is not None:
            if self.ledger.repeated(batch):
                m.records.labels(outcome="repeat").inc(len(batch.records))
                return  # a resend of a frame whose ack was lost: its records are in
            first = await self.ledger.append(batch)
        seq = -1
        for i, rec in enumerate(batch.records):
            fields = rec.record
            try:
                got = read(fields, rec.time, trusted_until)
                if got is None:
                    no_text += 1
                    if pass_through:
                        self.note_time(latest)
                        await self._pass(rec, None)
                    continue
                when, host, text, raw = got
                parsed += raw
                if first is not None:
                    seq = first + i
                event, keys, closed = feed(when, host, text, fields, seq)
            except Exception as exc:  # one bad record never ends the connection's batch
                dropped += 1
                self._drop("record", exc, f"tag {batch.tag!r}")
                continue
            if closed:
                self._unqueued += 1
            if event.template_id < 0:  # Event.unknown, without a property call
                unknown += 1
            if when is not None and (latest is None or when > latest):
                latest = when
            if pass_through:
                if keys:
                    self._held[id(event)] = (event, rec)
                else:
                    self.note_time(latest)
                    await self._pass(rec, None)
            if closed:
                self.note_time(latest)
                try:
                    await self._enqueue_all(closed)
                finally:
                    self._unqueued -= 1
        self.note_time(latest)
        # Counted once per frame: a labelled lookup per record cost 6% of a loaded run.
        if unknown:
            m.unknown_lines.inc(unknown)
        windowed = len(batch.records) - no_text - dropped
        self.reader.count_raw(parsed, windowed)
        m.records.labels(outcome="no_text").inc(no_text)
        m.records.labels(outcome="windowed").inc(windowed)

    def _drop(self, item: str, exc: Exception, where: str) -> None:
        """Count and (rate-limited) log one ``item`` whose handling raised ``exc``."""
        reason = type(exc).__name__
        self.metrics.dropped.labels(item=item, reason=reason).inc()
        self._drop_log.warn(
            f"{item}:{reason}", "dropped a %s (%s): %s: %s", item, where, reason, exc, exc=exc
        )

    async def replay(self, records: list[WalRecord], plan: ReplayPlan) -> None:
        """Window again the records a restart found in the write-ahead log, before the
        server accepts anything (:func:`.replay.replay_records`)."""
        assert isinstance(self.ledger, Ledger) and self._state == "running"
        await replay_records(self, self.ledger, records, plan)

    def note_time(self, when: float | None) -> None:
        """Move the watermark's base to ``when`` if it is the latest event time yet."""
        if when is not None and (self._max_time is None or when > self._max_time):
            self._max_time, self._max_time_seen_at = when, self._clock()

    def hold(self, event: Event, rec: ForwardRecord) -> None:
        """Keep a pass-through record until its window closes."""
        self._held[id(event)] = (event, rec)

    def open_lsns(self) -> Iterable[int]:
        """The write-ahead-log numbers of the records in open windows."""
        for items in self.lines.windower.open_items():
            for event in items:
                yield event.seq

    async def enqueue(self, window: Window[Event]) -> None:
        """Queue a closed window for the engine (waits while the queue is full)."""
        await self._enqueue(window)

    async def _enqueue(self, window: Window[Event]) -> None:
        ledger = self.ledger
        if ledger is not None:
            if ledger.already_done(window):
                return  # formed again by a restart; its verdict went out before
            ledger.closed(window)
        self.metrics.windows_closed.labels(reason=window.closed_by).inc()
        # Tagged before the put: a reload while this waits for room must not change
        # which model (whose template ids the window holds) scores it.
        model = self._model
        model.pending += 1
        self._model_of[id(window)] = model
        await self._put(window)

    async def _enqueue_all(self, windows: list[Window[Event]]) -> None:
        """:meth:`_enqueue` each window; if the batcher is gone, the rest are counted lost."""
        for i, window in enumerate(windows):
            try:
                await self._enqueue(window)
            except PipelineFailedError:
                self._lost(len(windows) - i)
                raise

    async def _put(self, item: object) -> None:
        """Queue ``item`` for the batcher, waiting while the queue is full; raises
        :class:`PipelineFailedError` (the item not queued) once the batcher has ended,
        instead of waiting for ever on a queue nobody reads."""
        batcher = self._batcher
        if batcher is None or batcher.done():
            raise PipelineFailedError("the batcher has stopped")
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(item)
            return
        putter = asyncio.ensure_future(self._queue.put(item))
        try:
            await asyncio.wait({putter, batcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not putter.done():
                putter.cancel()
                # Settled: cancelled (the queue as it was), or in just before it.
                await asyncio.wait({putter})
        if putter.cancelled():
            raise PipelineFailedError("the batcher stopped while a window waited for room")

    # -- the clock -----------------------------------------------------------

    def watermark(self) -> float | None:
        """Largest event time seen plus wall-clock seconds since, never past the wall
        clock plus ``max_future_skew`` (:mod:`.timecheck`); None before any record."""
        if self._max_time is None:
            return None
        since = self._max_time + (self._clock() - self._max_time_seen_at)
        return min(since, self._wall() + self.config.max_future_skew)

    async def _run_clock(self) -> None:
        assert self._stop_clock is not None  # made by start()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_clock.wait(), self.config.advance_interval)
            if self._stop_clock.is_set():
                return
            try:
                await self._tick()
            except PipelineFailedError:
                raise  # the batcher is gone: nothing to tick for (the supervisor says so)
            except Exception as exc:  # a bad tick must not stop the clock for good
                self._drop("tick", exc, "clock")

    async def _tick(self) -> None:
        watermark = self.watermark()
        if watermark is None:
            return
        # Windows a put() closed but has not queued yet could join an incident:
        # report progress only when every closed window is queued ahead of it.
        settled = self._unqueued == 0
        await self._enqueue_all(self.lines.advance(watermark))
        idle_close = self.config.idle_close
        if idle_close > 0:
            await self._enqueue_all(self.lines.close_idle(idle_close))
        if settled and self.incidents.pending:
            await self._put(_Progress(watermark))
        self.novelty.save_due()
        if self.ledger is not None:
            self.ledger.settle(self.open_lsns)

    # -- the batcher ---------------------------------------------------------

    async def _run_batcher(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is _STOP:
                break
            if isinstance(first, _Progress):
                await self._send_incidents(self.incidents.expire(first.watermark))
                continue
            batch: list[Window[Event]] = [first]  # type: ignore[list-item]
            progress: _Progress | None = None
            deadline = loop.time() + self.config.max_wait_ms / 1000.0
            while len(batch) < self.config.batch_windows:
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                if item is _STOP:
                    stop = True
                    break
                if isinstance(item, _Progress):
                    progress = item
                    break
                batch.append(item)  # type: ignore[arg-type]
            await self._process(batch)
            if self.ledger is not None:
                self.ledger.settle(self.open_lsns)
            if progress is not None:
                await self._send_incidents(self.incidents.expire(progress.watermark))
        # Every window is in: the incidents still open are complete.
        await self._send_incidents(self.incidents.flush())

    def _drain_queue(self) -> int:
        """Empty the queue (after the batcher ended); returns how many windows it held."""
        windows = 0
        while not self._queue.empty():
            item = self._queue.get_nowait()
            windows += item is not _STOP and not isinstance(item, _Progress)
        return windows

    def _lost(self, windows: int) -> None:
        if windows:
            self.metrics.windows_failed.inc(windows)
            log.error(
                "%d closed window(s) lost: the batcher had stopped; their records got no verdict",
                windows,
            )

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
        """Score a batch, each window by the model it was queued for (runs of one
        model; two runs only in the batch that straddles a reload)."""
        models = [self._model_of.pop(id(w), self._model) for w in windows]
        start = 0
        for end in range(1, len(windows) + 1):
            if end == len(windows) or models[end] is not models[start]:
                model = models[start]
                try:
                    await self._score(model, windows[start:end])
                finally:
                    model.pending -= end - start
                    self._close_drained()
                start = end

    async def _score(self, model: ServedModel, windows: list[Window[Event]]) -> None:
        m = self.metrics
        t0 = time.perf_counter()
        ledger = self.ledger
        try:
            # Judged now, when the windows closed: the spread of their new templates so far.
            ids, judged = model_inputs(windows, self.lines.novelty)
            await self.novelty.send()
            scores = await model.engine.score_ids_async(ids)
            # Inside the try, as before: a reply that does not fit its windows (a broken
            # engine) is counted as failed, not allowed to kill the batcher.
            # Looked up only where the score would flag the window (the only case
            # where being seen in training changes the verdict).
            flagged = [is_anomaly(score, model.threshold) for score, _ in scores]
            seen = seen_in_training(ids, model.bundle, where=flagged)
            scored = scored_windows(windows, scores, model.vocab, model.threshold, judged, seen)
        except EngineLostError:
            # No engine any more, none coming back: end the batcher, so the service
            # turns unhealthy and exits (supervision) instead of failing every window.
            m.windows_failed.inc(len(windows))
            raise
        except Exception:
            # A failing engine must not take the server down; the windows are counted.
            m.windows_failed.inc(len(windows))
            log.exception("engine failed on a batch of %d window(s)", len(windows))
            if ledger is not None:
                for window in windows:
                    ledger.scored(window, None)
            return
        except BaseException:
            m.windows_failed.inc(len(windows))  # lost with the batcher, which ends here
            raise
        failpoints.hit("pipeline.scoring")
        if ledger is not None:
            await ledger.before_send()
        m.engine_seconds.observe(time.perf_counter() - t0)
        m.batch_windows.observe(len(windows))
        anomalies = 0
        for window, sw in zip(windows, scored, strict=True):
            anomalies += sw.anomaly
            waiting = None
            try:
                waiting = await self._deliver(model, window, sw)
            except Exception as exc:  # one window that cannot be sent never stops the batcher
                self._drop("window", exc, f"key {window.key!r}")
            if ledger is not None:
                # An anomaly whose incident is still open is done when its flag is.
                ledger.scored(window, waiting)
        # Counted once per batch, like records per frame in put().
        m.verdicts.labels(verdict="anomaly").inc(anomalies)
        m.verdicts.labels(verdict="normal").inc(len(windows) - anomalies)

    async def _deliver(
        self, model: ServedModel, window: Window[Event], sw: ScoredWindow
    ) -> str | None:
        """Send what one scored window gives: its incident's flag once complete, its
        verdict (``every_verdict``), its held pass-through records. Returns the id of
        the window's incident while that is still open (its flag goes out later)."""
        # Anomalies leave as incidents (logsieve.incidents), normal windows as
        # verdicts when every_verdict asks for them.
        flag_id, done = self.incidents.push(sw, window.items)
        if done:
            await self._send_incidents(done)
        record = None if sw.anomaly else model.builder.build(sw)
        if record is not None:
            await self.upstream.send(model.builder.tag, record, time=sw.end)
            self.metrics.sent.labels(kind="verdict").inc()
        if self.config.pass_through:
            # The id of the window's incident: only pass-through needs it.
            verdict = model.builder.verdict(sw, flag_id)
            for item in window.items:
                held = self._held.pop(id(item), None)
                if held is not None:
                    await self._pass(held[1], verdict)
        if sw.anomaly and not any(i.flag_id == flag_id for i in done):
            return flag_id
        return None

    async def _send_incidents(self, incidents: list[Incident]) -> None:
        for incident in incidents:
            try:
                record = self.builder.build_incident(incident)
                await self.upstream.send(self.builder.tag, record, time=incident.window.end)
            except Exception as exc:  # as in _score: one flag, not the batcher
                self._drop("flag", exc, f"key {incident.window.key!r}")
            else:
                self.metrics.sent.labels(kind="flag").inc()
            if self.ledger is not None:  # sent, or dropped and counted: done either way
                self.ledger.flagged(incident.flag_id)

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
            "raw_parsed": self.reader.raw_counts["parsed"],
            "raw_as_is": self.reader.raw_counts["as_is"],
        }
