"""One running service: Forward server → streaming pipeline → engine → upstream, plus metrics.

Usage::

    service = Service(settings, bundle)          # settings: ServeSettings (serve_config)
    await service.start()                        # service.port, service.metrics_port
    ...
    await service.stop()                         # the ordered shutdown below

    exit_code = asyncio.run(run_service(settings, bundle))   # until SIGTERM/SIGINT
    await service.reload()                       # what SIGHUP does: the bundle again

Shutdown order (STYLE.md §4), each step bounded:

1. stop accepting, stop reading, drain connections: requests already received are
   put into the pipeline and acknowledged (``pipeline.drain_timeout``);
2. flush every open window through the engine; the flags go to the upstream writer;
3. wait for upstream acks of everything queued (``pipeline.flush_timeout``);
4. close upstream: what is still unacked goes to the spool (``upstream.spool_dir``),
   or is counted as lost without one;
5. stop the metrics endpoint (it answers /health 503 from step 1 on).

:func:`run_service` runs until SIGTERM or SIGINT, then shuts down in that order and
returns 0 (1 if flags could not all be delivered or spooled). A second signal during
shutdown abandons it (unacked flags are still spooled, a local write) and returns
130. Signal handlers are restored on return.

Supervision (:mod:`.supervision`): the batcher, the clock and the upstream sender run
until shutdown. If one ends early anyway, ``/health`` answers 503 naming it, and
:func:`run_service` shuts down in the same order (nothing waits on the dead task) and
returns :data:`EXIT_TASK_FAILED`, so an orchestrator restarts the process. Start-up
faults (a busy port, an address not on this host, a name that does not resolve) are
:class:`~logsieve.errors.ConfigError` naming the setting (:mod:`.startup`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from logsieve.bundle import Bundle
from logsieve.engine import Engine, load_engine
from logsieve.engine.windows import LocalWindowEngine, WindowEngine
from logsieve.engine.worker import EngineWorker

from .ledger import Ledger, ReplayPlan
from .metrics import Metrics
from .metrics_http import MetricsServer
from .pipeline import StreamingPipeline
from .pipeline_config import PipelineConfig
from .pipeline_metrics import PipelineMetrics
from .serve_config import ServeSettings
from .served_model import load_model
from .server import ForwardServer
from .startup import bind_error
from .supervision import Supervisor
from .upstream import UpstreamClient
from .wal import Recovered, WriteAheadLog

__all__ = [
    "EXIT_FAST",
    "EXIT_TASK_FAILED",
    "Service",
    "run_service",
    "start_scoring",
    "start_window_engine",
    "wait_first",
]

log = logging.getLogger(__name__)

# Garbage-collector thresholds while serving. Open windows keep every record they hold
# alive, so with the default gen-0 threshold (700 allocations) the collector walks
# them again and again; nearly all of the server's garbage is acyclic and freed by
# reference counting anyway. bench/e2e_cpu.py (--gc serving vs default) measures the
# server CPU per record saved and the peak RSS it costs (bench/RESULTS.md).
GC_THRESHOLD = (50_000, 20, 100)
EXIT_FAST = 130  # second signal: shutdown abandoned (like a shell's 128 + SIGINT)
EXIT_TASK_FAILED = 70  # a long-lived task died: sysexits' EX_SOFTWARE, restart me
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_RELOAD = signal.SIGHUP


async def start_scoring(
    upstream: UpstreamClient,
    pipeline: StreamingPipeline,
    supervisor: Supervisor,
    started: list[str],
) -> None:
    """Start the upstream sender, then the pipeline, each long-lived task watched by
    ``supervisor``; ``started`` records what to stop (``serve`` and the scale-out
    worker start them alike)."""
    await upstream.start()
    started.append("upstream")
    if upstream.task is not None:
        supervisor.watch(upstream.task, "upstream sender")
    await pipeline.start()
    started.append("pipeline")
    for name, task in pipeline.tasks.items():
        supervisor.watch(task, name)


def start_window_engine(
    cfg: PipelineConfig, bundle: Bundle, engine: Engine | None = None
) -> WindowEngine:
    """The bundle's window engine: a child process by default, else in this process
    (``engine``, if given, is used in this process as it is). The caller closes it."""
    if engine is None and cfg.engine_process:
        return EngineWorker(
            bundle.path,
            cfg.backend,
            threads=cfg.engine_threads,
            batch_size=cfg.batch_size,
            batch_timeout=cfg.engine_timeout,
        )
    if engine is None:
        engine = load_engine(bundle, cfg.backend, threads=cfg.engine_threads)
    return LocalWindowEngine.for_bundle(engine, bundle, cfg.batch_size)


class Service:
    """The wired-up server; every task it starts is owned and stopped in order."""

    def __init__(
        self,
        settings: ServeSettings,
        bundle: Bundle,
        engine: Engine | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.bundle = bundle
        self._gc_before: tuple[int, int, int] | None = None  # start() sets, stop() restores
        self._reload_lock = asyncio.Lock()
        self._stopping = False
        # Ours to close at stop(): a child process, or the in-process engine's thread.
        self.engine: WindowEngine = self._start_engine(bundle, engine)
        try:
            self._wire(settings, clock)
        except BaseException:
            self._release()
            raise

    def _wire(self, settings: ServeSettings, clock: Callable[[], float]) -> None:
        bundle = self.bundle
        self.metrics = Metrics()
        self.supervisor = Supervisor()
        self.pipeline_metrics = PipelineMetrics(self.metrics.registry)
        self.upstream = UpstreamClient(settings.upstream)
        self.pipeline_metrics.bind_upstream(self.upstream)
        durability = settings.durability
        self.wal = WriteAheadLog(durability) if durability.enabled else None
        self.ledger: Ledger | None = None  # start() opens the log and builds it
        self.pipeline = StreamingPipeline(
            settings.pipeline,
            bundle,
            self.engine,
            self.upstream,
            self.pipeline_metrics,
            clock=clock,
        )
        self.server = ForwardServer(settings.server, self.pipeline, self.metrics)
        self.http = MetricsServer(
            self.metrics.registry,
            settings.server.metrics_host,
            settings.server.metrics_port,
            health=self.health,
        )
        self._started: list[str] = []

    def _start_engine(self, bundle: Bundle, engine: Engine | None = None) -> WindowEngine:
        return start_window_engine(self.settings.pipeline, bundle, engine)

    async def reload(self, path: Path | None = None) -> bool:
        """Load the bundle again (or the one at ``path``) and serve it; what SIGHUP does.

        The bundle is read from the path it was opened by (``bundle.home``), so a
        versioned home's new ``current`` is picked up. Verifying it and starting its
        engine run off the event loop; the switch itself (:meth:`StreamingPipeline.
        swap_model`) loses and re-scores no window. Returns False, logs the reason and
        counts ``failed`` when the bundle cannot be served: the old model keeps serving.
        Reloads run one at a time; one asked for during shutdown is refused.
        """
        metrics = self.pipeline_metrics.reloads
        async with self._reload_lock:
            old = self.bundle
            source = Path(path) if path is not None else (old.home or old.path)
            if self._stopping:
                log.warning("reload of %s refused: shutting down", source)
                metrics.labels(result="failed").inc()
                return False
            loop = asyncio.get_running_loop()
            try:
                model = await loop.run_in_executor(
                    None, load_model, source, self.settings.pipeline, self._start_engine, old
                )
            except Exception as exc:
                log.error("reload of %s failed, still serving %s: %s", source, old.model_id, exc)
                metrics.labels(result="failed").inc()
                return False
            if model is None:
                log.warning("reload of %s: still model %s, nothing to do", source, old.model_id)
                metrics.labels(result="ok").inc()
                return True
            if self._stopping:  # shutdown began while the engine was loading
                await asyncio.to_thread(model.engine.close)
                metrics.labels(result="failed").inc()
                return False
            self.pipeline.swap_model(model)  # the old engine is the pipeline's to close now
            self.engine, self.bundle = model.engine, model.bundle
            metrics.labels(result="ok").inc()
            log.warning(
                "reloaded %s: model %s -> %s (%s)",
                source,
                old.model_id,
                model.model_id,
                model.engine.info.label,
            )
            return True

    @property
    def port(self) -> int:
        """The Forward server's bound port."""
        return self.server.port

    @property
    def metrics_port(self) -> int:
        """The metrics endpoint's bound port."""
        return self.http.port

    async def start(self) -> None:
        """Start upstream first and the listener last, so nothing is accepted half-wired."""
        if self._gc_before is None:
            self._gc_before = gc.get_threshold()
            gc.set_threshold(*GC_THRESHOLD)
        server = self.settings.server
        try:
            recovered = await self._open_wal()
            await start_scoring(self.upstream, self.pipeline, self.supervisor, self._started)
            if recovered is not None and recovered.records:
                await self.pipeline.replay(recovered.records, ReplayPlan.of(recovered))
            try:
                await self.http.start()
            except OSError as exc:
                raise bind_error(
                    exc, "server.metrics_", server.metrics_host, server.metrics_port
                ) from None
            self._started.append("http")
            try:
                await self.server.start()
            except OSError as exc:
                raise bind_error(exc, "server.", server.host, server.port) from None
            self._started.append("server")
        except BaseException:
            await self.stop()
            raise
        log.info(
            "serving %s (%s) on %s:%d, flags to %s:%d, metrics on %s:%d",
            self.bundle.path,
            self.engine.info.label,
            self.settings.server.host,
            self.port,
            self.settings.upstream.host,
            self.settings.upstream.port,
            self.settings.server.metrics_host,
            self.metrics_port,
        )

    async def _open_wal(self) -> Recovered | None:
        """Read the write-ahead log back (a torn tail is cut off) and start its writer."""
        wal = self.wal
        if wal is None:
            return None
        recovered = await asyncio.to_thread(wal.recover)
        await wal.start()
        self._started.append("wal")
        if wal.task is not None:
            self.supervisor.watch(wal.task, "write-ahead log writer")
        self.ledger = Ledger(wal, self.upstream, recovered.next_serial)
        for chunk in recovered.chunks:
            self.ledger.remember(chunk)
        self.pipeline.ledger = self.ledger
        self.pipeline_metrics.bind_wal(wal, self.ledger)
        log.info(
            "write-ahead log %s: %d record(s), %d window closure(s) to look at, done up to %d",
            wal.dir,
            len(recovered.records),
            len(recovered.closures),
            recovered.done,
        )
        return recovered

    async def _close_wal(self) -> None:
        """After upstream stopped: mark what it delivered or spooled as done; a log with
        nothing left undone is emptied, so the next start replays nothing."""
        ledger, wal = self.ledger, self.wal
        if wal is None:
            return
        if ledger is not None:
            ledger.settle(self.pipeline.open_lsns)
            if ledger.undone == 0 and self.pipeline.lines.windower.open_windows == 0:
                await wal.sync()
                wal.clear()
            else:
                log.warning(
                    "write-ahead log: %d window(s) without a delivered verdict; the next "
                    "start judges them again",
                    ledger.undone,
                )
        await wal.close()

    async def stop(self) -> bool:
        """The ordered shutdown (module docstring). True if every flag was delivered
        or spooled; safe to call twice."""
        started, self._started = self._started, []
        self._stopping = True
        self.supervisor.stopping()
        cfg = self.settings.pipeline
        if "server" in started:
            await self.server.stop(drain_timeout=cfg.drain_timeout)
        if "pipeline" in started:
            await self.pipeline.close()
        self._release()
        delivered = True
        if "upstream" in started:
            if not await self.upstream.flush(cfg.flush_timeout):
                log.warning(
                    "upstream %s:%d: not every flag acked within %.1f s; the rest is spooled",
                    self.settings.upstream.host,
                    self.settings.upstream.port,
                    cfg.flush_timeout,
                )
            await self.upstream.stop(timeout=0.5)
            stats = self.upstream.stats
            delivered = stats.dropped_records == 0
            log.info(
                "upstream closed: %d acked, %d spooled chunk(s), %d lost",
                stats.records_acked,
                stats.spool_chunks,
                stats.dropped_records,
            )
        if "wal" in started:
            await self._close_wal()
        if "http" in started:
            await self.http.stop()
        return delivered

    def health(self) -> str | None:
        """None while healthy, else why not: what ``/health`` answers (200 or 503)."""
        if self.supervisor.failure is not None:
            return self.supervisor.failure
        if not self.server.is_serving:
            return "not serving (starting or shutting down)"
        if self.wal is not None and self.wal.error is not None:
            return f"write-ahead log: frames wait unacknowledged: {self.wal.error}"
        return None

    async def abort(self) -> None:
        """Fast exit after an abandoned :meth:`stop`: no more waiting on the network.

        Unacked flags still go to the spool (a local write); without one they are
        lost and counted. Every step is a no-op for a part already stopped.
        """
        self._stopping = True
        self.supervisor.stopping()
        await self.server.stop(drain_timeout=0.1)
        await self.upstream.stop(timeout=0)
        if self.wal is not None:
            await self.wal.close()  # what is not done stays in it: the next start replays
        await self.http.stop()
        self._release()

    def _release(self) -> None:
        """Release the engine and restore the collector's thresholds."""
        self.engine.close()
        if self._gc_before is not None:
            gc.set_threshold(*self._gc_before)
            self._gc_before = None


async def run_service(
    settings: ServeSettings,
    bundle: Bundle,
    *,
    engine: Engine | None = None,
    ready: Callable[[Service], Any] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT, then stop in order; returns the exit status.

    ``ready`` is called once the service is listening (the CLI prints the ports).
    """
    loop = asyncio.get_running_loop()
    service = Service(settings, bundle, engine)
    stop_requested = asyncio.Event()
    signals = 0
    shutdown: asyncio.Task[bool] | None = None

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.warning("%s: shutting down (again to exit at once)", signal.Signals(signum).name)
            stop_requested.set()
        elif shutdown is not None:
            log.error("second signal: abandoning shutdown")
            shutdown.cancel()

    reloads: set[asyncio.Task[bool]] = set()

    def on_reload() -> None:
        log.warning("SIGHUP: reloading %s", service.bundle.home or service.bundle.path)
        task = asyncio.create_task(service.reload(), name="logsieve-reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    previous = {s: signal.getsignal(s) for s in (*_SIGNALS, _RELOAD)}
    for s in _SIGNALS:
        loop.add_signal_handler(s, on_signal, s)
    loop.add_signal_handler(_RELOAD, on_reload)
    try:
        await service.start()
        if ready is not None:
            ready(service)
        await wait_first(stop_requested.wait(), service.supervisor.failed())
        shutdown = asyncio.create_task(service.stop(), name="logsieve-shutdown")
        try:
            delivered = await shutdown
        except asyncio.CancelledError:
            if signals < 2:
                raise  # cancelled from outside, not by a second signal
            await service.abort()
            return EXIT_FAST
        if service.supervisor.failure is not None:
            log.error("exit %d: %s", EXIT_TASK_FAILED, service.supervisor.failure)
            return EXIT_TASK_FAILED
        return 0 if delivered else 1
    finally:
        for s in (*_SIGNALS, _RELOAD):
            loop.remove_signal_handler(s)
            signal.signal(s, previous[s])
        if reloads:  # each refuses to swap once stopping; let them release their engines
            await asyncio.gather(*reloads, return_exceptions=True)


async def wait_first(*waits: Coroutine[Any, Any, object]) -> None:
    """Wait until one of ``waits`` finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
