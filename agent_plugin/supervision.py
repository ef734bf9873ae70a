"""Supervision of the service's long-lived tasks, and rate-limited logging of dropped input.

An asyncio task that raises only stores its exception: nothing notices. That is how a
batcher killed by one record once went unseen while every later frame waited on its
full queue (no acks), ``/health`` kept answering 200 and SIGTERM hung. The rule now:

* bad *input* (one record, one window) is dropped, counted by reason and logged at a
  bounded rate where it is handled (:class:`RateLimitedLog`); it never ends a task;
* a long-lived task (batcher, clock, upstream sender) that ends anyway, by an error or
  by returning or being cancelled while nobody is stopping it, is a *failure*:
  :class:`Supervisor` records the first one, ``/health`` answers 503 with it, and
  :func:`~.app.run_service` shuts down (bounded) and returns
  :data:`~.app.EXIT_TASK_FAILED`, so an orchestrator restarts the process.

Usage::

    supervisor = Supervisor()
    supervisor.watch(task, "batcher")
    supervisor.failure            # None, or "batcher died: RuntimeError: ..."
    await supervisor.failed()     # returns the failure once there is one
    supervisor.stopping()         # from now on a cancelled or finished task is expected
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

from logsieve.errors import LogsieveError

__all__ = ["RateLimitedLog", "Supervisor"]

log = logging.getLogger(__name__)


class Supervisor:
    """Watches tasks that must run until shutdown; see the module docstring."""

    def __init__(self) -> None:
        self.failure: str | None = None
        self._failed: asyncio.Event | None = None  # made on first use, on the loop
        self._stopping = False

    def watch(self, task: asyncio.Task[object] | asyncio.Task[None], what: str) -> None:
        """Report ``task`` as failed if it ends before :meth:`stopping`, or with an error."""
        task.add_done_callback(functools.partial(self._ended, what))

    def stopping(self) -> None:
        """Shutdown began: tasks that are cancelled or return from now on are expected.
        An error still counts: a task that raises while flushing lost work."""
        self._stopping = True

    def fail(self, what: str, reason: str, exc: BaseException | None = None) -> None:
        """Record a failure (the first one is kept and reported) and wake :meth:`failed`."""
        message = f"{what} {reason}"
        # Our own errors say what happened; anything else is a bug: keep its traceback.
        trace = None if isinstance(exc, LogsieveError) else exc
        log.error("%s; the service is unhealthy and exits", message, exc_info=trace)
        if self.failure is None:
            self.failure = message
            self._event().set()

    async def failed(self) -> str:
        """Wait for the first failure and return it."""
        await self._event().wait()
        assert self.failure is not None
        return self.failure

    def _event(self) -> asyncio.Event:
        if self._failed is None:
            self._failed = asyncio.Event()
            if self.failure is not None:
                self._failed.set()
        return self._failed

    def _ended(self, what: str, task: asyncio.Task[object] | asyncio.Task[None]) -> None:
        if task.cancelled():
            if not self._stopping:
                self.fail(what, "was cancelled")
            return
        exc = task.exception()  # retrieved: asyncio logs no "never retrieved" later
        if exc is not None:
            self.fail(what, f"died: {type(exc).__name__}: {exc}", exc)
        elif not self._stopping:
            self.fail(what, "ended")


class RateLimitedLog:
    """Log each kind of dropped input at most once per ``interval`` seconds, with the
    number suppressed since: a flood of bad records must not flood the log too.

    ``warn(reason, message, *args)``: ``reason`` is the stable label the input is
    counted under; each reason has its own budget.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(
        self, reason: str, message: str, *args: object, exc: BaseException | None = None
    ) -> bool:
        """Log ``message % args`` (with ``exc``'s traceback, if given) now if ``reason``
        has not been logged within the interval (True), else count it as suppressed."""
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self._interval:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return False
        self._last[reason] = now
        skipped = self._suppressed.pop(reason, 0)
        suffix = f" ({skipped} more like it not logged)" if skipped else ""
        self._log.warning(message + suffix, *args, exc_info=exc)
        return True
