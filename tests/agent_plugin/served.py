"""Helpers for the serving tests: a tiny trained + exported bundle, replaying generated
HDFS-like logs through the real ``fluent-logger`` client, and fast settings."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from fluent import sender

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.agent_plugin.serve_config import ServeSettings
from logsieve.agent_plugin.server_config import ServerConfig
from logsieve.agent_plugin.upstream import UpstreamClient
from logsieve.agent_plugin.upstream_config import UpstreamConfig
from logsieve.bundle import Bundle
from logsieve.export.data.prepare import Prepared, prepare
from logsieve.export.data.readers import parse_hdfs_line
from logsieve.export.data.synth import generate_hdfs, write_synth
from logsieve.export.fastlogad.bundle import train_bundle
from logsieve.export.fastlogad.model import ModelConfig
from logsieve.export.fastlogad.train import TrainConfig
from logsieve.export.program import export_bundle

TAG = "hdfs"


def make_tiny_bundle(root: Path) -> Bundle:
    """A tiny FastLogAD bundle trained on generated normal HDFS-like logs, exported."""
    log = root / "train.log"
    write_synth(generate_hdfs(300, seed=11), log)
    return train_small_bundle(prepare("hdfs", log, train_n=300), root / "bundle")


def train_small_bundle(data: Prepared, out: Path) -> Bundle:
    """A small FastLogAD (d 32, 1 layer, 1+1 epochs) on ``data``, exported: a real
    model in seconds, for tests of the serving path rather than of accuracy."""
    model = ModelConfig(
        vocab_size=data.vocab.size, d_model=32, n_layers=1, n_heads=2, d_ff=32,
        max_len=data.log_config.max_len,
    )  # fmt: skip
    cfg = TrainConfig(rtd_epochs=1, hst_epochs=1, batch_size=64, seed=0)
    bundle, _ = train_bundle(data, out, train_cfg=cfg, model_cfg=model, progress=False)
    exported: Bundle = export_bundle(bundle.path, max_batch=256)
    return exported


def hdfs_events(lines: list[str]) -> list[tuple[float, dict[str, Any]]]:
    """(event time, record) per line, as a Fluent Bit tail + HDFS parser would send them."""
    out = []
    for line in lines:
        rec = parse_hdfs_line(line)
        assert rec is not None and rec.time is not None, line
        out.append((rec.time, {"log": rec.text, "raw": line}))
    return out


def replay(port: int, events: list[tuple[float, dict[str, Any]]], tag: str = TAG) -> None:
    """Send every event with the real fluent-logger client (Message mode, EventTime)."""
    client = sender.FluentSender(tag, host="127.0.0.1", port=port, nanosecond_precision=True)
    try:
        for t, record in events:
            if not client.emit_with_time("raw", t, record):
                raise AssertionError(f"fluent-logger failed to send: {client.last_error}")
    finally:
        client.close()


def agent(port: int, **overrides: Any) -> UpstreamClient:
    """The project's acking Forward client in an agent's place (chunk ids, resends until
    acked), with timings short enough for tests; ``overrides``: other UpstreamConfig keys."""
    timings: dict[str, Any] = {
        "ack_timeout": 2.0, "connect_timeout": 0.5, "flush_interval": 0.01,
        "backoff_initial": 0.05, "backoff_max": 0.2,
    }  # fmt: skip
    return UpstreamClient(
        UpstreamConfig(
            host="127.0.0.1", port=port, self_hostname="agent.test", **(timings | overrides)
        )
    )


def settings(upstream_port: int, **pipeline: Any) -> ServeSettings:
    """Loopback, free ports, short timeouts."""
    server = ServerConfig(host="127.0.0.1", port=0, metrics_port=0, udp_heartbeat=False)
    upstream = UpstreamConfig(
        host="127.0.0.1",
        port=upstream_port,
        self_hostname="logsieve.test",
        ack_timeout=1.0,
        connect_timeout=0.5,
        flush_interval=0.02,
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    base = PipelineConfig(max_wait_ms=5.0, advance_interval=0.2, flush_timeout=5.0)
    return ServeSettings(server=server, upstream=upstream, pipeline=replace(base, **pipeline))


ODD_BLOCK = "blk_-4242424242"
ODD_LINES = (
    f"Kernel panic: cannot sync {ODD_BLOCK} to /dev/sda3 after 30 attempts",
    f"fsck found 7 orphaned inodes while replaying journal of {ODD_BLOCK}",
)


def odd_block(t: float) -> list[tuple[float, dict[str, Any]]]:
    """A block made only of lines no training template matches: the tiny model's
    scores barely separate generated anomalies, but a window of [UNK] clears its
    threshold, so a flag is certain."""
    return [(t + i, {"log": text, "raw": text}) for i, text in enumerate(ODD_LINES)]


SNAPSHOT = "INFO dfs.DataNode$Snapshotter: Scheduled snapshot of block {blk} on tier cold"


def update_lines(n_blocks: int, seed: int) -> list[str]:
    """Generated HDFS-like logs with one line per block of a template the tiny bundle
    never saw (a snapshot after each allocation): the logs ``update`` adapts to."""
    out = []
    for line in generate_hdfs(n_blocks, seed=seed).lines:
        out.append(line)
        if "allocateBlock" in line:
            date, clock = line.split()[:2]
            out.append(f"{date} {clock} 33 " + SNAPSHOT.format(blk=line.split()[-1]))
    return out


def write_update_log(path: Path, n_blocks: int, seed: int) -> None:
    path.write_text("\n".join(update_lines(n_blocks, seed)) + "\n", encoding="utf-8")


def updated_home(parent: Bundle, root: Path) -> Path:
    """A copy of ``parent`` at ``root/B`` updated in place (fine-tune, 1+1 epochs) on
    ``root/update.log``; ``root/train.log`` holds the parent's own training logs."""
    from logsieve.export.update import UpdateRequest, update_bundle

    shutil.copytree(parent.path, root / "B")
    write_synth(generate_hdfs(300, seed=11), root / "train.log")  # make_tiny_bundle's
    write_update_log(root / "update.log", 150, seed=12)
    update_bundle(
        UpdateRequest(root / "B", root / "update.log", rtd_epochs=1, hst_epochs=1),
        progress=lambda _: None,
        report=lambda _: None,
    )
    return root / "B"


async def received(svc: Service, n: int, timeout: float = 10.0) -> bool:
    """Wait until the server has decoded ``n`` Message-mode records and the pipeline
    has windowed them (False on timeout).

    The server counts a record when it decodes the frame, before ``pipeline.put`` has
    run: a test that moves the clock between the two would close windows ahead of their
    last lines (which then open windows nothing closes).
    """
    counter = svc.metrics.records_received.labels(mode="message")
    taken = svc.pipeline_metrics.records
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def pending() -> bool:
        done = sample_value(taken, outcome="windowed") + sample_value(taken, outcome="no_text")
        return sample_value(counter) < n or done < n

    while pending():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
