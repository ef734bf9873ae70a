"""A real ``nats-server`` with JetStream for the scale-out tests.

The binary comes from Debian's ``nats-server`` package (2.9, JetStream built in);
``.ci/run`` installs it. Where it is missing the tests that need it skip, naming why.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["NatsServer", "nats_binary", "run_nats_server"]


def nats_binary() -> str:
    """The ``nats-server`` path, or skip the calling test with the reason."""
    path = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if path is None:
        pytest.skip("nats-server not installed (Debian package 'nats-server'; .ci/run installs it)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    """One running server: its client URL, store directory and process."""

    url: str
    port: int
    store: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """Stop the server at once (SIGKILL)."""
        self.proc.kill()
        self.proc.wait(10)


@contextmanager
def run_nats_server(store: Path, port: int | None = None) -> Iterator[NatsServer]:
    """Start ``nats-server -js`` on 127.0.0.1 with its store under ``store``; wait until it
    accepts connections; stop it (SIGTERM, then SIGKILL) on exit."""
    binary = nats_binary()
    port = port or _free_port()
    store.mkdir(parents=True, exist_ok=True)
    log = store / "nats-server.log"
    args = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)]
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    server = NatsServer(f"nats://127.0.0.1:{port}", port, store, proc, log)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nats-server exited {proc.returncode}: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server not listening: {log.read_text()}") from None
                time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
