"""``make run``: FastLogAD on our own synthetic HDFS-like logs, end to end.

The first run trains a small model on generated normal traffic and caches the bundle
under ``.cache/``; every run then replays fresh generated traffic with injected
anomalies through the same record → template → window → score path the server uses,
and prints each flagged window with the lines that explain it, then a table of what
was injected against what was flagged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from logsieve.bundle import Bundle, open_bundle
from logsieve.errors import BundleError

from .fastlogad import score_file, train_bundle
from .model import ModelConfig
from .prepare import prepare
from .program import export_bundle
from .synth import ANOMALY_KINDS, generate_hdfs, write_synth
from .train import TrainConfig

__all__ = ["demo_bundle", "run_demo"]

# Bump when the demo's data or model settings change, so stale caches are not reused.
DEMO_VERSION = 2  # 2: bundles carry program.pt2 and model.onnx


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


def run_demo(
    echo: Callable[[str], object],
    *,
    cache: Path = Path(".cache"),
    seed: int = 0,
    test_blocks: int = 200,
    anomaly_rate: float = 0.1,
    evidence: int = 3,
) -> dict[str, int]:
    """Run the demo, printing through ``echo``; returns the counts it reports."""
    bundle = demo_bundle(cache, echo, seed=seed)
    from logsieve.engine import load_engine

    engine = load_engine(bundle, "auto")
    echo(f"engine: {engine.info.label} ({engine.info.artifact})")
    test = generate_hdfs(test_blocks, anomaly_rate=anomaly_rate, seed=seed + 1000)
    test_log = cache / f"demo-test-seed{seed}.log"
    write_synth(test, test_log)
    echo(f"\nscoring {len(test.lines)} fresh lines with injected anomalies ({test_log})")
    flagged = Counter[str]()
    n = 0
    for _window, _score, flag in score_file(
        bundle, test_log, "hdfs", top=evidence, backend=engine.info.backend
    ):
        n += 1
        if flag is None:
            continue
        kind = test.kinds.get(flag.key, "normal")
        flagged[kind] += 1
        unknown = f", {flag.unknown_lines} unseen lines" if flag.unknown_lines else ""
        echo(
            f"\nFLAG {flag.key}  {_ts(flag.start)}-{_ts(flag.end)}  {flag.lines} lines{unknown}  "
            f"score {flag.score:.3f} > {flag.threshold:.3f}  (injected: {kind})"
        )
        for prob, template, line in flag.evidence:
            echo(f"    {prob:4.2f}  {line}" + ("" if template == "[UNK]" else f"  [{template}]"))
    injected = Counter(test.kinds.values())
    echo("\ninjected kind            blocks  flagged")
    for kind in ANOMALY_KINDS:
        echo(f"  {kind:22s} {injected[kind]:6d}  {flagged[kind]:7d}")
    n_normal = n - sum(injected.values())
    echo(f"  {'normal (false flags)':22s} {n_normal:6d}  {flagged['normal']:7d}")
    stats = {"windows": n, "flagged": sum(flagged.values()), "false_flags": flagged["normal"]}
    stats.update({f"injected_{k}": v for k, v in injected.items()})
    stats.update({f"flagged_{k}": v for k, v in flagged.items()})
    return stats
