"""The engine in a child process, so scoring never competes with the event loop for the GIL.

:class:`EngineWorker` is a :class:`~logsieve.engine.windows.WindowEngine`, like the
in-process :class:`~logsieve.engine.windows.LocalWindowEngine`: the pipeline cannot
tell them apart.

Why a process and not the worker thread alone: the event loop is busy Python at full
load, and a scoring thread beside it has to win the GIL back after every engine call
and for its own per-window Python (encoding windows, slicing per-line probabilities).
Measured in the same process, 256 HDFS windows took 47 ms to score next to one busy
Python thread against 14 ms alone (bench/RESULTS.md). In a child, the whole
of :func:`~logsieve.engine.windows.score_template_windows` runs on its own interpreter;
the parent pays one pickle of template ids out and one of ``(score, per-line probs)``
back per batch.

::

    worker = EngineWorker(bundle.path, "auto")   # blocks until loaded; threads: cores - 1
    worker.info                     # the child's EngineInfo (backend, precision, ...)
    worker.score_ids([[3, 4, 4], [3, 9]])   # -> [(score, [p, p, p]), (score, [p, p])]
    worker.close()

The pipeline awaits :meth:`EngineWorker.score_ids_async` on its event loop;
:meth:`~EngineWorker.score_ids` is the blocking form (one call at a time, either). If
the child dies mid-batch (killed, out of memory), it is restarted and the batch retried
once; a child that gives no answer within ``batch_timeout`` is killed and handled the
same way. A second failure raises :class:`EngineWorkerError` and the pipeline counts
those windows as failed, as it would for an in-process engine error. A child that
cannot be started again (the bundle is gone, the machine is out of memory) leaves the
worker without an engine: every later call raises :class:`EngineLostError`, which the
pipeline does not survive (the service turns unhealthy and exits, to be restarted).
The child ignores SIGINT/SIGTERM: a Ctrl-C or a process-group SIGTERM must not kill
the engine while the parent is still flushing open windows through it. It exits when
the parent closes the pipe or dies (end of file on its side).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from logsieve.errors import LogsieveError

from .base import EngineInfo
from .windows import Scored

__all__ = ["EngineLostError", "EngineWorker", "EngineWorkerError"]

log = logging.getLogger(__name__)


class EngineWorkerError(LogsieveError, RuntimeError):
    """The engine process failed to start, died twice on one batch, or was closed."""


class EngineLostError(EngineWorkerError):
    """The engine process died and could not be started again: no batch can be scored
    until this process is restarted (not raised after :meth:`EngineWorker.close`)."""


def _child(conn: Connection, bundle_path: str, backend: str, threads: int, batch: int) -> None:
    """Child main: load the bundle and engine, then answer batches until end of file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        from logsieve.bundle import open_bundle

        from .registry import load_engine
        from .windows import score_template_windows

        bundle = open_bundle(Path(bundle_path))
        engine = load_engine(bundle, backend, threads=threads)
        vocab, config = bundle.vocab, bundle.log_config
        if vocab is None:
            raise LogsieveError(f"{bundle_path}: the bundle has no vocabulary to encode windows")
    except BaseException as exc:  # everything goes back to the parent, named
        conn.send(("error", _portable(exc)))
        return
    conn.send(("ready", engine.info))
    while True:
        try:
            windows = conn.recv()
        except (EOFError, OSError):
            return  # parent closed the pipe or died
        if windows is None:
            return
        try:
            reply: tuple[str, Any] = (
                "ok",
                score_template_windows(engine, vocab, config, windows, batch),
            )
        except Exception as exc:
            reply = ("error", _portable(exc))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (our errors do), else a LogsieveError naming it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return LogsieveError(f"{type(exc).__name__}: {exc}")
    return exc


class EngineWorker:
    """One engine in a child process; see the module docstring."""

    def __init__(
        self,
        bundle_path: Path,
        backend: str = "auto",
        *,
        threads: int | None = None,
        batch_size: int = 256,
        start_timeout: float = 300.0,
        batch_timeout: float = 120.0,
    ) -> None:
        if threads is None:
            # The server's event loop keeps one core busy by itself; an engine that
            # also wants every core spins its pool against it (measured: no gain over
            # the in-thread engine with 2 threads on 2 cores, +15-25% records/s with 1).
            threads = max(1, (os.cpu_count() or 2) - 1)
        self._args = (str(bundle_path), backend, threads, batch_size)
        self._start_timeout = start_timeout
        self._batch_timeout = batch_timeout
        self._ctx = multiprocessing.get_context("spawn")  # fork would copy a loaded runtime
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._lost: str | None = None  # why the child could not be started again
        self.restarts = 0
        self.info: EngineInfo = self._spawn()

    def _spawn(self) -> EngineInfo:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_child, args=(child, *self._args), name="logsieve-engine", daemon=True
        )
        proc.start()
        child.close()
        try:
            if not parent.poll(self._start_timeout):
                raise EngineWorkerError(
                    f"engine process did not load {self._args[0]} within "
                    f"{self._start_timeout:.0f} s"
                )
            kind, value = parent.recv()
        except (EOFError, OSError):
            proc.join(5)
            died = f"engine process exited while loading {self._args[0]}"
            kind, value = "error", EngineWorkerError(f"{died} (exit code {proc.exitcode})")
        except BaseException:
            parent.close()
            proc.kill()
            raise
        if kind != "ready":
            parent.close()
            proc.join(5)
            raise value
        self._conn, self._proc = parent, proc
        info: EngineInfo = value
        return info

    def score_ids(self, windows: Sequence[Sequence[int]]) -> Scored:
        """``(score, per-line probabilities)`` per window of template ids, in order."""
        if not windows:
            return []
        payload = [list(w) for w in windows]
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    conn.send(payload)
                    if not conn.poll(self._batch_timeout):
                        raise self._hung()
                    reply = conn.recv()
                except (EOFError, OSError) as exc:
                    self._on_death(attempt, len(payload), exc)
                    continue
                return _unwrap(reply)
        raise AssertionError("unreachable")

    async def score_ids_async(self, windows: Sequence[Sequence[int]]) -> Scored:
        """:meth:`score_ids` for the event loop: the reply is awaited on the loop.

        No thread: one waiting in ``recv`` would have to win the GIL back from a busy
        event loop to read the reply, at up to a switch interval (5 ms) each time.
        One call at a time, this or :meth:`score_ids`.
        """
        if not windows:
            return []
        loop = asyncio.get_running_loop()
        payload = [list(w) for w in windows]
        for attempt in (1, 2):
            conn = self._connection()
            try:
                # The child is idle between batches, so this write does not wait long
                # even when the payload is larger than the pipe's buffer.
                conn.send(payload)
                try:
                    await asyncio.wait_for(_readable(loop, conn), self._batch_timeout)
                except TimeoutError:
                    raise self._hung() from None
                reply = conn.recv()
            except (EOFError, OSError) as exc:
                # Restarting loads the engine again (seconds): not on the loop.
                await loop.run_in_executor(None, self._on_death, attempt, len(payload), exc)
                continue
            return _unwrap(reply)
        raise AssertionError("unreachable")

    def _connection(self) -> Connection:
        if self._conn is None:
            if self._lost is not None:
                raise EngineLostError(f"engine process lost: {self._lost}")
            raise EngineWorkerError("engine process is closed")
        return self._conn

    def _hung(self) -> OSError:
        """Kill a child that has not answered in ``batch_timeout`` (a hung runtime would
        otherwise stall the pipeline for good); the caller restarts it like a crash."""
        log.error("engine process gave no answer in %.0f s; killing it", self._batch_timeout)
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        return OSError(f"engine process hung for {self._batch_timeout:.0f} s")

    def _on_death(self, attempt: int, n: int, exc: BaseException) -> None:
        """The child died mid-batch: start a new one for the retry, or give up (2nd)."""
        code = self._proc.exitcode if self._proc is not None else None
        if attempt == 2:
            raise EngineWorkerError(
                f"engine process died twice on a batch of {n} window(s) (exit code {code})"
            ) from exc
        log.error("engine process died (exit code %s); restarting it", code)
        self._reap()
        self.restarts += 1
        try:
            self.info = self._spawn()
        except Exception as start:
            self._lost = f"died (exit code {code}) and failed to start again: {start}"
            raise EngineLostError(f"engine process {self._lost}") from start

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child (idempotent)."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(None)
            self._reap(timeout)

    def _reap(self, timeout: float = 5.0) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout)
            self._proc = None


def _unwrap(reply: tuple[str, Any]) -> Scored:
    kind, value = reply
    if kind == "ok":
        return value  # type: ignore[no-any-return]
    raise value


async def _readable(loop: asyncio.AbstractEventLoop, conn: Connection) -> None:
    """Wait until ``conn`` has data or end of file (the child died)."""
    ready: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
