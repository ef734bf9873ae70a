"""``make run``: FastLogAD on our own synthetic HDFS-like logs, end to end.

The first run trains a small model on generated normal traffic and caches the bundle
under ``.cache/``; every run then replays fresh generated traffic with injected
anomalies through the same record → template → window → score path the server uses,
and prints each flagged window with the lines that explain it, then a table of what
was injected against what was flagged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from logsieve.bundle import Bundle, open_bundle
from logsieve.errors import BundleError
from logsieve.export.data.prepare import prepare
from logsieve.export.data.readers import parse_hdfs_line
from logsieve.export.data.synth import ANOMALY_KINDS, generate_hdfs, write_synth
from logsieve.export.fastlogad.bundle import train_bundle
from logsieve.export.fastlogad.model import ModelConfig
from logsieve.export.fastlogad.train import TrainConfig
from logsieve.export.program import export_bundle

__all__ = ["DemoTraffic", "demo_bundle", "demo_traffic"]

# Bump when the demo's data or model settings change, so stale caches are not reused.
DEMO_VERSION = 5  # 2: program.pt2 + model.onnx; 3: novelty; 4: known windows; 5: q0.995


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%H:%M:%S")


def demo_bundle(cache: Path, echo: Callable[[str], object], *, seed: int = 0) -> Bundle:
    """The demo bundle, trained once on generated normal logs and cached."""
    path = cache / f"demo-bundle-v{DEMO_VERSION}-seed{seed}"
    try:
        return open_bundle(path)
    except BundleError:
        pass
    echo(f"training the demo model (once; cached in {path}) ...")
    cache.mkdir(parents=True, exist_ok=True)
    train_log = cache / f"demo-train-seed{seed}.log"
    write_synth(generate_hdfs(1500, seed=seed), train_log)
    data = prepare("hdfs", train_log, train_n=1500)
    model = ModelConfig(vocab_size=data.vocab.size, d_model=64, n_layers=2, n_heads=4, d_ff=128)
    cfg = TrainConfig(generator="random", rtd_epochs=10, hst_epochs=30, batch_size=32, seed=seed)
    bundle, result = train_bundle(data, path, train_cfg=cfg, model_cfg=model, progress=False)
    bundle = export_bundle(bundle.path)  # scoring below runs the exported model (engine)
    echo(
        f"trained on {len(data.train)} normal block sessions in "
        f"{result.timings.get('total', 0.0):.0f}s; threshold {bundle.threshold:.4f}"
    )
    return bundle


@dataclass(frozen=True)
class DemoTraffic:
    """Generated HDFS-like traffic with injected anomalies, as Fluent Bit would send it.

    ``events``: ``(time, {"log": message})`` per line, as a ``tail`` input with an HDFS
    parser sends it; ``kinds``: the injected anomaly kind of each anomalous block.
    """

    events: list[tuple[float, dict[str, Any]]]
    n_keys: int
    kinds: dict[str, str]
    kind_names: tuple[str, ...] = ANOMALY_KINDS


def demo_traffic(seed: int = 0, blocks: int = 200, anomaly_rate: float = 0.1) -> DemoTraffic:
    """Fresh traffic for the demo (another seed than the training logs)."""
    test = generate_hdfs(blocks, anomaly_rate=anomaly_rate, seed=seed + 1000)
    events: list[tuple[float, dict[str, Any]]] = []
    for line in test.lines:
        rec = parse_hdfs_line(line)
        if rec is not None and rec.time is not None:
            events.append((rec.time, {"log": rec.text}))
    return DemoTraffic(events, blocks, dict(test.kinds))
