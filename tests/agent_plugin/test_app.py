"""The service's signals and shutdown: in process, and ``logsieve serve`` as a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from logsieve.agent_plugin.app import EXIT_FAST, Service, run_service
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.export.data.synth import generate_hdfs

from .served import ODD_BLOCK, hdfs_events, odd_block, replay, settings

pytestmark = pytest.mark.asyncio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_delivers_flags_exits_0_and_restores_handlers(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    events = hdfs_events(generate_hdfs(10, seed=4).lines) + odd_block(1_226_262_930.0)
    rx = FlagReceiver()
    await rx.start()
    started: asyncio.Future[Service] = asyncio.get_running_loop().create_future()
    before = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(
        run_service(settings(rx.port), tiny_bundle, engine=tiny_engine, ready=started.set_result)
    )
    try:
        service = await asyncio.wait_for(started, 10.0)
        await asyncio.to_thread(replay, service.port, events)
        counter = service.metrics.records_received.labels(mode="message")
        while sample_value(counter) < len(events):
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 15.0) == 0
    finally:
        await rx.stop()
    assert ODD_BLOCK in {f["key"] for f in rx.flags()}  # flushed at shutdown, delivered
    assert signal.getsignal(signal.SIGTERM) is before
    assert not service.server.is_serving


async def test_second_signal_abandons_a_stuck_shutdown(
    tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    cfg = settings(free_port(), flush_timeout=30.0)  # upstream down: flushing would wait 30 s
    started: asyncio.Future[Service] = asyncio.get_running_loop().create_future()
    before = signal.getsignal(signal.SIGINT)
    task = asyncio.create_task(
        run_service(cfg, tiny_bundle, engine=tiny_engine, ready=started.set_result)
    )
    service = await asyncio.wait_for(started, 10.0)
    await asyncio.to_thread(replay, service.port, odd_block(1_226_262_930.0))
    while sample_value(service.metrics.records_received, mode="message") < 2:
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.sleep(0.5)
    assert not task.done()  # waiting for upstream acks that cannot come
    os.kill(os.getpid(), signal.SIGINT)
    assert await asyncio.wait_for(task, 5.0) == EXIT_FAST
    assert signal.getsignal(signal.SIGINT) is before
    # No spool configured: counted. The flag, and one new-pattern record for each of the
    # odd block's two new templates.
    patterns = sample_value(service.pipeline.metrics.sent, kind="pattern")
    assert patterns == 2 and service.upstream.stats.dropped_records == 1 + patterns


async def test_logsieve_serve_subprocess_sigterm_exits_0_after_delivering(
    tiny_bundle: Bundle, tmp_path: Path
) -> None:
    rx = FlagReceiver()
    await rx.start()
    port = free_port()
    config = tmp_path / "serve.toml"
    config.write_text(
        "[server]\nudp_heartbeat = false\n\n"
        "[upstream]\nself_hostname = 'logsieve.test'\nflush_interval = 0.05\n\n"
        "[pipeline]\nmax_wait_ms = 5\n"
    )
    logsieve = Path(sys.executable).with_name("logsieve")
    env = {**os.environ, "LOGSIEVE_UPSTREAM_BACKOFF_INITIAL": "0.05"}
    proc = await asyncio.create_subprocess_exec(
        str(logsieve), "serve", "--bundle", str(tiny_bundle.path), "--config", str(config),
        "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{rx.port}",
        "--metrics", "127.0.0.1:0",
        stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        banner = await asyncio.wait_for(proc.stderr.readline(), 30.0)
        assert b"logsieve serving" in banner, banner
        events = odd_block(1_226_262_930.0)
        await asyncio.to_thread(replay, port, events)
        await asyncio.sleep(0.5)  # no ack in Message mode: let the server read it
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), 20.0)
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await rx.stop()
    assert code == 0, rest.decode()
    (flag,) = rx.flags()
    assert flag["key"] == ODD_BLOCK and flag["verdict"] == "anomaly" and flag["evidence"]
