"""The Node client ``@fluent-org/logger`` (npm) against the real service.

Installed with ``npm ci`` from the committed ``tests/node/package-lock.json`` on first
use; skipped with the reason when ``node``/``npm`` are missing or the install fails.
Records go out in the client's default mode (PackedForward, no ack) and with acks
(``ack`` option: each ``emit`` resolves only after the server's ``{"ack": chunk}``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.export.synth import generate_hdfs

from .served import hdfs_events, settings

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="module")
def node_client() -> Path:
    """``tests/node/send.js`` with its dependency installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not installed: the @fluent-org/logger test needs Node.js")
    if not (NODE_DIR / "node_modules" / "@fluent-org" / "logger").is_dir():
        try:
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR, check=True, capture_output=True, timeout=180,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            out = getattr(exc, "stderr", b"") or b""
            pytest.skip(f"npm ci of @fluent-org/logger failed (offline?): {out[-300:]!r}")
    return NODE_DIR / "send.js"


@pytest.mark.asyncio
@pytest.mark.parametrize(("mode", "ack"), [("default", "noack"), ("default", "ack"),
                                          ("CompressedPackedForward", "ack")])  # fmt: skip
async def test_node_client_records_reach_the_pipeline(
    node_client: Path, tiny_bundle: Bundle, tiny_engine: Engine, mode: str, ack: str
) -> None:
    log = generate_hdfs(6, seed=13)
    events = hdfs_events(log.lines)
    rx = FlagReceiver()
    await rx.start()
    service = Service(settings(rx.port, every_verdict=True), tiny_bundle, tiny_engine)
    await service.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            "node", str(node_client), str(service.port), mode, ack,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(events).encode()), 30.0)
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() == f"sent {len(events)}"
        windowed = service.pipeline_metrics.records.labels(outcome="windowed")
        if ack == "ack":  # every emit was acked: the records are already in the pipeline
            assert windowed.value == len(events)
        for _ in range(500):
            if windowed.value >= len(events):
                break
            await asyncio.sleep(0.01)
        assert windowed.value == len(events)
        acks = service.metrics.acks_sent.value
    finally:
        await service.stop()
        await rx.stop()
    assert (acks > 0) == (ack == "ack")
    assert {f["key"] for f in rx.flags()} == set(log.labels)
