"""``logsieve serve`` in a process of its own, for tests that measure the server's memory.

The test process holds torch and whatever earlier tests allocated, so its RSS says
nothing about the server's; a subprocess running the real command does. RSS comes
from ``/proc/<pid>/status`` (``VmRSS`` now, ``VmHWM`` the peak), so these tests are
Linux-only and skip elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from logsieve.bundle import Bundle

_MIB = 1024 * 1024
START_TIMEOUT = 60.0  # loading the bundle and its engine on a busy 2-core runner


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_proc_status() -> None:
    """Skip unless this system reports a process's memory in ``/proc/<pid>/status``."""
    if not Path(f"/proc/{os.getpid()}/status").is_file():
        pytest.skip("needs /proc/<pid>/status (Linux) to read the server's RSS")


@dataclass
class ServeProcess:
    """A running ``logsieve serve``: its Forward and metrics ports and its memory."""

    proc: asyncio.subprocess.Process
    port: int
    metrics_port: int
    log: Path

    def _status_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise AssertionError(f"{key} missing from /proc/{self.proc.pid}/status")

    def rss_mib(self) -> float:
        """Resident memory now."""
        return self._status_kib("VmRSS") / 1024

    def peak_mib(self) -> float:
        """Peak resident memory since the process started (the kernel's high-water mark)."""
        return self._status_kib("VmHWM") / 1024

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def http_get(self, target: str) -> tuple[int, str]:
        """(status, body) of ``GET target`` on the metrics endpoint."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.metrics_port)
        try:
            writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = await asyncio.wait_for(reader.read(), 10.0)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
        return int(head.split()[1]), body

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of ``/metrics`` (0.0 when absent, like an unseen label set)."""
        _, body = await self.http_get("/metrics")
        want = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
        )
        for line in body.splitlines():
            key, _, value = line.rpartition(" ")
            if key == want:
                return float(value)
        return 0.0


@contextlib.asynccontextmanager
async def serve_process(
    bundle: Bundle, tmp_path: Path, upstream_port: int, config: str = ""
) -> AsyncIterator[ServeProcess]:
    """Start ``logsieve serve --bundle`` on free loopback ports with ``config`` (TOML
    text) and wait for its banner; SIGTERM it (then SIGKILL) on the way out."""
    require_proc_status()
    path = tmp_path / "serve.toml"
    path.write_text(config)
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    logsieve = Path(sys.executable).with_name("logsieve")
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            str(logsieve), "serve", "--bundle", str(bundle.path), "--config", str(path),
            "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream_port}",
            "--metrics", f"127.0.0.1:{metrics_port}",
            stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    served = ServeProcess(proc, port, metrics_port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while b"logsieve serving" not in log.read_bytes():
            if proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"logsieve serve did not start:\n{log.read_text()}")
            await asyncio.sleep(0.05)
        yield served
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
