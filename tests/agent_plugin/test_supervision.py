"""Supervision (issue 16, item 2 and reproduction 1) against a real Service on 127.0.0.1.

Reproduction 1: a record killed the batcher with nothing logged; after 1,024 more
closed windows no client got an ack again, ``/health`` still said 200 and SIGTERM hung
until a second signal. Now a bad record or window is dropped and counted while its task
lives on; a long-lived task that dies anyway turns ``/health`` to 503 naming it, and
``run_service`` shuts down by itself and returns ``EXIT_TASK_FAILED``, never hanging.

Faults are injected through the engine (a ``BaseException``, which no ``except
Exception`` catches: the shape of a bug that ends a task), through the line matcher
and through the flag sender (an ordinary error on one record or one window).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from logsieve.agent_plugin.app import EXIT_TASK_FAILED, Service, run_service
from logsieve.agent_plugin.forward import encode_ack
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.pipeline import StreamingPipeline
from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.agent_plugin.supervision import RateLimitedLog, Supervisor
from logsieve.bundle import Bundle, open_bundle
from logsieve.engine import Engine
from logsieve.engine.windows import LocalWindowEngine
from logsieve.engine.worker import EngineWorker
from logsieve.logs.templates import TemplateMatcher

from .served import received, replay, settings
from .test_pipeline import FakeClock, GatedEngine, ListSender, batch, http_get, serving
from .wire import et, packb

T0 = 1_226_262_918.0  # HDFS_2k's own time: replays of old logs are served as they are


class Fault(BaseException):
    """Not an ``Exception``: what a task's own ``except Exception`` lets through."""


class FaultyEngine:
    """The real engine's info; its score waits for ``gate`` (when given), then raises."""

    def __init__(self, engine: Engine, gate: threading.Event | None = None) -> None:
        self.info, self.gate, self.calls = engine.info, gate, 0

    def score(self, ids: Any, lengths: Any) -> Any:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10.0)
        raise Fault("injected engine fault")


class PoisonedMatcher:
    """The bundle's matcher, raising on lines that contain ``POISON``."""

    def __init__(self, matcher: TemplateMatcher) -> None:
        self._matcher = matcher

    def match(self, text: str) -> int:
        if "POISON" in text:
            raise RuntimeError("a line the matcher cannot handle")
        return self._matcher.match(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._matcher, name)


async def send_acked(port: int, chunk: str, records: list[dict[str, Any]]) -> bytes:
    """One Forward-mode frame asking for an ack; what came back before EOF or 5 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        entries = [[et(int(T0) + i), rec] for i, rec in enumerate(records)]
        writer.write(packb(["hdfs", entries, {"chunk": chunk}]))
        await writer.drain()
        want = len(encode_ack(chunk.encode()))
        try:
            return await asyncio.wait_for(reader.readexactly(want), 5.0)
        except asyncio.IncompleteReadError as exc:
            return exc.partial  # closed without (all of) an ack
    finally:
        writer.close()
        await writer.wait_closed()


def block_lines(n: int) -> list[tuple[float, dict[str, Any]]]:
    """``n`` blocks of two lines each (one window per block)."""
    out: list[tuple[float, dict[str, Any]]] = []
    for b in range(n):
        for i in range(2):
            text = f"Receiving block blk_{b} src: /10.0.0.1:{i} dest: /10.0.0.2:50010"
            out.append((T0 + b + i / 10, {"log": text}))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def health(port: int) -> tuple[int, str]:
    reply = await http_get(port, "/health")
    head, _, body = reply.partition("\r\n\r\n")
    return int(head.split()[1]), body


async def health_until_unhealthy(port: int, timeout: float = 5.0) -> tuple[int, str]:
    """``GET /health`` until it is not 200 (or ``timeout`` passed): the last answer."""
    deadline = time.monotonic() + timeout
    while (answer := await health(port))[0] == 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return answer


# -- bad input is dropped, counted, and ends no task ----------------------------------


@pytest.mark.asyncio
async def test_a_record_that_raises_is_dropped_counted_and_its_frame_still_acked(
    tiny_bundle: Bundle, tiny_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    rx = FlagReceiver()
    await rx.start()
    try:
        async with serving(settings(rx.port), tiny_bundle, tiny_engine) as svc:
            svc.pipeline.lines.matcher = PoisonedMatcher(svc.pipeline.lines.matcher)  # type: ignore[assignment]
            good = {"log": "Receiving block blk_1 src: /10.0.0.1:1 dest: /10.0.0.2:50010"}
            poison = {"log": "POISON blk_2"}
            with caplog.at_level(logging.WARNING, "logsieve.agent_plugin.pipeline"):
                first = await send_acked(svc.port, "c1", [good, poison, good])
                # Many more: counted one by one, logged once per interval.
                for i in range(5):
                    assert await send_acked(svc.port, f"p{i}", [poison]) == encode_ack(
                        f"p{i}".encode()
                    )
            second = await send_acked(svc.port, "c2", [good])
            dropped = sample_value(
                svc.pipeline_metrics.dropped, item="record", reason="RuntimeError"
            )
            windowed = sample_value(svc.pipeline_metrics.records, outcome="windowed")
            assert svc.health() is None
    finally:
        await rx.stop()
    assert first == encode_ack(b"c1")  # a resend could not fix it: acked, not retried
    assert second == encode_ack(b"c2")  # the connection's task and the pipeline live on
    assert (dropped, windowed) == (6, 3)
    logged = [r for r in caplog.records if "dropped a record" in r.getMessage()]
    assert len(logged) == 1 and "RuntimeError" in logged[0].getMessage()


class FailingOnce:
    """A flag sender whose first send raises (a record the encoder cannot take)."""

    def __init__(self) -> None:
        self.sent: list[dict[Any, Any]] = []
        self.calls = 0

    async def send(self, tag: str, record: dict[Any, Any], time: float | None = None) -> bool:
        self.calls += 1
        if self.calls == 1:
            raise ValueError("a flag the encoder cannot take")
        self.sent.append(record)
        return True


@pytest.mark.asyncio
async def test_a_window_whose_flag_cannot_be_sent_is_dropped_and_the_batcher_lives_on(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    out = FailingOnce()
    cfg = PipelineConfig(
        every_verdict=True, batch_size=1, batch_windows=1, max_wait_ms=0, advance_interval=0
    )
    engine = LocalWindowEngine.for_bundle(tiny_engine, tiny_bundle)
    pipe = StreamingPipeline(cfg, tiny_bundle, engine, out)  # type: ignore[arg-type]
    await pipe.start()
    try:
        await pipe.put(batch([(T0, "Receiving block blk_1 src: /10.0.0.1:1 dest: /10.0.0.2:2")]))
        await pipe.put(
            batch([(T0 + 1, "Receiving block blk_2 src: /10.0.0.1:1 dest: /10.0.0.2:2")])
        )
        await asyncio.wait_for(pipe.close(), 10.0)  # flushes both windows through the batcher
    finally:
        engine.close()
    dropped = sum(
        sample_value(pipe.metrics.dropped, item=item, reason="ValueError")
        for item in ("window", "flag")
    )
    assert dropped == 1
    assert [r["key"] for r in out.sent] == ["blk_2"]  # the next window still went out
    assert pipe.tasks["batcher"].exception() is None


@pytest.mark.asyncio
async def test_windows_the_clock_closed_into_a_full_queue_are_still_scored_at_shutdown(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    engine = GatedEngine(tiny_engine)
    clock = FakeClock()
    out = ListSender()
    cfg = PipelineConfig(
        every_verdict=True,
        batch_size=1,
        batch_windows=1,
        queue_size=1,
        advance_interval=0.02,
        idle_close=5.0,
    )
    window_engine = LocalWindowEngine.for_bundle(engine, tiny_bundle)
    pipe = StreamingPipeline(cfg, tiny_bundle, window_engine, out, clock=clock)  # type: ignore[arg-type]
    await pipe.start()
    try:
        await pipe.put(batch([(t, r["log"]) for t, r in block_lines(6)]))
        clock.now += 10.0  # every block quiet for longer than idle_close: the tick closes 6
        assert await until(lambda: pipe.queue_depth == 1)  # 1 in the engine, 1 queued, 4 held
        closing = asyncio.create_task(pipe.close())
        await asyncio.sleep(0.2)
        engine.gate.set()
        await asyncio.wait_for(closing, 10.0)
    finally:
        engine.gate.set()
        window_engine.close()
    assert sorted(r["key"] for t, r in out.sent if t == cfg.flag_tag) == [
        f"blk_{b}" for b in range(6)
    ]  # none of the four the tick held was dropped with it
    assert sample_value(pipe.metrics.windows_failed) == 0


# -- a task that dies anyway: /health 503, exit non-zero, no hang -----------------------


@pytest.mark.asyncio
async def test_a_dead_batcher_turns_health_503_refuses_acks_and_shutdown_does_not_hang(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    gate = threading.Event()
    engine = FaultyEngine(tiny_engine, gate)
    rx = FlagReceiver()
    await rx.start()
    # One window in the engine, two queued, the clock waiting to queue the third.
    cfg = settings(
        rx.port, batch_size=1, batch_windows=1, queue_size=2, idle_close=0.3, advance_interval=0.05
    )
    svc = Service(cfg, tiny_bundle, engine)  # type: ignore[arg-type]
    await svc.start()
    try:
        events = block_lines(6)
        await asyncio.to_thread(replay, svc.port, events)
        assert await received(svc, len(events))
        assert await until(lambda: engine.calls == 1 and svc.pipeline.queue_depth == 2)
        before = await health(svc.metrics_port)
        gate.set()  # the engine raises: the batcher dies
        after = await health_until_unhealthy(svc.metrics_port)
        # A new acked frame is refused, not left waiting on a queue nobody reads.
        reply = await send_acked(svc.port, "late", [{"log": "Receiving block blk_9"}])
        started = time.monotonic()
        delivered = await asyncio.wait_for(svc.stop(), 10.0)
        took = time.monotonic() - started
    finally:
        gate.set()
        with contextlib.suppress(TimeoutError):  # a hung stop already failed the test
            await asyncio.wait_for(svc.stop(), 10.0)
        await rx.stop()
    assert before == (200, "ok\n")
    status, body = after
    assert status == 503, after
    assert body.startswith("unhealthy: batcher died: Fault: injected engine fault"), body
    assert reply == b""  # closed without an ack: the client keeps the records and resends
    assert took < 5.0 and delivered  # nothing was lost upstream; the windows were lost here:
    assert sample_value(svc.pipeline_metrics.windows_failed) == 6  # counted, all six


@pytest.mark.asyncio
async def test_run_service_exits_non_zero_by_itself_when_a_task_dies(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    rx = FlagReceiver()
    await rx.start()
    cfg = settings(rx.port, idle_close=0.2, advance_interval=0.05)
    started: asyncio.Future[Service] = asyncio.get_running_loop().create_future()
    before = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(
        run_service(cfg, tiny_bundle, engine=FaultyEngine(tiny_engine), ready=started.set_result)  # type: ignore[arg-type]
    )
    try:
        service = await asyncio.wait_for(started, 10.0)
        await asyncio.to_thread(replay, service.port, block_lines(1))  # a line the model scores
        # No signal: the dead batcher alone ends the service, promptly.
        code = await asyncio.wait_for(task, 10.0)
    finally:
        if not task.done():
            task.cancel()
        await rx.stop()
    assert code == EXIT_TASK_FAILED
    assert service.health() is not None and "batcher died" in service.health()  # type: ignore[operator]
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.asyncio
async def test_a_cancelled_upstream_sender_turns_health_503(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    rx = FlagReceiver()
    await rx.start()
    try:
        async with serving(settings(rx.port), tiny_bundle, tiny_engine) as svc:
            assert (await health(svc.metrics_port))[0] == 200
            assert svc.upstream.task is not None
            svc.upstream.task.cancel()  # nobody asked it to stop
            status, body = await health_until_unhealthy(svc.metrics_port)
    finally:
        await rx.stop()
    assert (status, body) == (503, "unhealthy: upstream sender was cancelled\n")


@pytest.mark.asyncio
async def test_an_engine_process_that_cannot_be_started_again_turns_health_503(
    tiny_bundle: Bundle, tmp_path: Path
) -> None:
    home = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, home)
    rx = FlagReceiver()
    await rx.start()
    cfg = settings(rx.port, idle_close=0.2, advance_interval=0.05)  # the engine in a child
    svc = Service(cfg, open_bundle(home))
    await svc.start()
    try:
        assert isinstance(svc.engine, EngineWorker)
        home.rename(tmp_path / "moved")  # its restart cannot load the bundle any more
        child = svc.engine._proc
        assert child is not None and child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        await asyncio.to_thread(replay, svc.port, block_lines(1))
        status, body = await health_until_unhealthy(svc.metrics_port, 30.0)
    finally:
        await asyncio.wait_for(svc.stop(), 20.0)
        await rx.stop()
    assert status == 503
    assert body.startswith("unhealthy: batcher died: EngineLostError: engine process died"), body


def engine_child(pid: int) -> int:
    """The pid of the engine process ``logsieve serve`` (``pid``) started (Linux /proc)."""
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
            return int(child)
    raise AssertionError(f"no engine process among the children of {pid}")


@pytest.mark.asyncio
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
async def test_logsieve_serve_exits_70_when_its_engine_process_is_lost(
    tiny_bundle: Bundle, tmp_path: Path
) -> None:
    home = tmp_path / "bundle"
    shutil.copytree(tiny_bundle.path, home)
    rx = FlagReceiver()
    await rx.start()
    port = free_port()
    logsieve = Path(sys.executable).with_name("logsieve")
    env = {
        **os.environ,
        "LOGSIEVE_PIPELINE_IDLE_CLOSE": "0.2",
        "LOGSIEVE_PIPELINE_ADVANCE_INTERVAL": "0.05",
        "LOGSIEVE_SERVER_UDP_HEARTBEAT": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        str(logsieve), "serve", "--bundle", str(home), "--listen", f"127.0.0.1:{port}",
        "--upstream", f"127.0.0.1:{rx.port}", "--metrics", "127.0.0.1:0",
        stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        banner = await asyncio.wait_for(proc.stderr.readline(), 30.0)
        assert b"logsieve serving" in banner, banner
        home.rename(tmp_path / "moved")  # the engine cannot be started again
        os.kill(engine_child(proc.pid), signal.SIGKILL)
        await asyncio.to_thread(replay, port, block_lines(1))
        rest = await asyncio.wait_for(proc.stderr.read(), 30.0)  # no signal sent
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await rx.stop()
    assert code == EXIT_TASK_FAILED, rest.decode()
    assert b"batcher died: EngineLostError: engine process died" in rest


# -- the parts on their own ------------------------------------------------------------


@pytest.mark.asyncio
async def test_supervisor_tells_an_early_end_from_an_expected_one() -> None:
    async def returns() -> None:
        return None

    async def forever() -> None:
        await asyncio.Event().wait()

    sup = Supervisor()
    ok = asyncio.create_task(forever())
    sup.watch(ok, "clock")
    early = asyncio.create_task(returns())
    sup.watch(early, "batcher")
    assert await asyncio.wait_for(sup.failed(), 1.0) == "batcher ended"
    sup2 = Supervisor()
    sup2.watch(ok, "clock")
    sup2.stopping()
    ok.cancel()
    await asyncio.wait({ok})
    await asyncio.sleep(0)
    assert sup2.failure is None  # cancelled at shutdown: expected


def test_rate_limited_log_logs_once_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t.rate"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "t.rate"):
        assert limited.warn("a", "bad %s", 1)
        assert not limited.warn("a", "bad %s", 2)
        assert not limited.warn("a", "bad %s", 3)
        assert limited.warn("b", "other")  # its own budget
        now[0] = 11.0
        assert limited.warn("a", "bad %s", 4)
    assert [r.getMessage() for r in caplog.records] == [
        "bad 1",
        "other",
        "bad 4 (2 more like it not logged)",
    ]
