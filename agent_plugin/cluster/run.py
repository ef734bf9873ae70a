"""Run an ingress or a worker until SIGTERM/SIGINT, then stop it in order.

A second signal abandons the shutdown (exit 130); handlers are restored on return. A
worker whose batcher, clock, upstream sender or lease/commit loop ends early shuts
down the same way and exits 70 (``EX_SOFTWARE``: restart me), as ``serve`` does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any, Protocol

from logsieve.bundle import Bundle

from ..app import EXIT_TASK_FAILED, wait_first
from ..serve_config import ServeSettings
from .cluster_config import ClusterConfig

__all__ = ["run_ingress", "run_worker"]

log = logging.getLogger(__name__)
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Runnable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def _run(service: _Runnable, ready: Callable[[Any], object] | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        log.warning("%s: shutting down", signal.Signals(signum).name)
        stop.set()
        if signals > 1:
            raise SystemExit(130)

    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    for s in _SIGNALS:
        loop.add_signal_handler(s, on_signal, s)
    try:
        await service.start()
        if ready is not None:
            ready(service)
        failed = getattr(service, "failed", None)
        await wait_first(stop.wait(), *([failed()] if failed is not None else []))
        await service.stop()
        return 0 if stop.is_set() else EXIT_TASK_FAILED
    finally:
        for s in _SIGNALS:
            loop.remove_signal_handler(s)
            signal.signal(s, previous[s])


async def run_ingress(
    settings: ServeSettings,
    cluster: ClusterConfig,
    bundle: Bundle,
    ready: Callable[[Any], object] | None = None,
) -> int:
    """Serve Forward into JetStream until a signal (:mod:`.ingress`)."""
    from .ingress import Ingress

    return await _run(Ingress(settings, cluster, bundle), ready)


async def run_worker(
    settings: ServeSettings,
    cluster: ClusterConfig,
    bundle: Bundle,
    ready: Callable[[Any], object] | None = None,
) -> int:
    """Score partitions until a signal (:mod:`.worker`)."""
    from .worker import Worker

    return await _run(Worker(settings, cluster, bundle), ready)
