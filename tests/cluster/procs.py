"""``logsieve serve --nats`` ingresses and ``logsieve worker`` processes for the tests.

Each logs to its own file (never an unread pipe); :func:`start` waits for the banner.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from logsieve.bundle import Bundle

START_TIMEOUT = 60.0  # loading the bundle and its engine on a busy 2-core runner


@dataclass
class Proc:
    """A running logsieve command and its log file."""

    proc: asyncio.subprocess.Process
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def metric(self, name: str) -> float:
        """The value of an unlabelled sample ``name`` on the process's /metrics (the
        port its banner printed); 0.0 when absent."""
        port = int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)/", self.text())[1])  # type: ignore[index]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = (await asyncio.wait_for(reader.read(), 10.0)).decode()
        finally:
            writer.close()
        for line in body.splitlines():
            key, _, value = line.rpartition(" ")
            if key == name:
                return float(value)
        return 0.0

    async def kill(self) -> None:
        self.proc.kill()
        await self.proc.wait()


async def start(args: list[str], log: Path, banner: bytes) -> Proc:
    """Run ``logsieve *args`` with its stderr to ``log``; wait for ``banner`` in it."""
    logsieve = Path(sys.executable).with_name("logsieve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSIEVE_")}
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            str(logsieve), *args, stdout=subprocess.DEVNULL, stderr=err, env=env
        )
    running = Proc(proc, log)
    deadline = time.monotonic() + START_TIMEOUT
    while banner not in log.read_bytes():
        if proc.returncode is not None or time.monotonic() > deadline:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise AssertionError(f"logsieve {args[0]} did not start:\n{running.text()[-4000:]}")
        await asyncio.sleep(0.05)
    return running


async def ingress(bundle: Bundle, config: Path, port: int, url: str, log: Path) -> Proc:
    """``logsieve serve --nats url`` listening on ``port``."""
    args = [
        "serve", "--bundle", str(bundle.path), "--config", str(config), "--nats", url,
        "--listen", f"127.0.0.1:{port}", "--metrics", "127.0.0.1:0",
    ]  # fmt: skip
    return await start(args, log, b"logsieve ingress on")


async def worker(
    bundle: Bundle, config: Path, url: str, upstream: int, name: str, log: Path
) -> Proc:
    """``logsieve worker --name name`` sending flags to ``upstream``."""
    args = [
        "worker", "--bundle", str(bundle.path), "--config", str(config), "--nats", url,
        "--upstream", f"127.0.0.1:{upstream}", "--metrics", "127.0.0.1:0", "--name", name,
    ]  # fmt: skip
    return await start(args, log, b"logsieve worker")


async def serve(bundle: Bundle, config: Path, port: int, upstream: int, log: Path) -> Proc:
    """The single-process ``logsieve serve`` (the reference)."""
    args = [
        "serve", "--bundle", str(bundle.path), "--config", str(config),
        "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream}",
        "--metrics", "127.0.0.1:0",
    ]  # fmt: skip
    return await start(args, log, b"logsieve serving")
