"""``make run`` before the server exists: the offline half of the pipeline on our own
synthetic HDFS-like logs.

Templates are mined from normal traffic; fresh traffic with injected anomalies is cut
into block sessions by the same code the server uses; every window holding a line that
matches no known template is flagged, with those lines as evidence. That rule catches
the "unseen line" and "unexpected template" kinds only; the other kinds (missing step,
wrong order, burst) need the sequence model, and the summary says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone

from logsieve.logs.pipeline import mine_templates, windows_of

from .formats import default_log_config
from .synth import ANOMALY_KINDS, generate_hdfs

__all__ = ["run_demo"]


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%H:%M:%S")


def run_demo(
    echo: Callable[[str], object],
    *,
    seed: int = 0,
    train_blocks: int = 400,
    test_blocks: int = 150,
    anomaly_rate: float = 0.1,
    evidence: int = 3,
) -> dict[str, int]:
    """Run the demo, printing through ``echo``; returns the counts it reports."""
    config = default_log_config("hdfs")
    train = generate_hdfs(train_blocks, seed=seed)
    matcher = mine_templates((r.text for r in train.records()), config)
    echo(f"mined {len(matcher.templates)} templates from {len(train.lines)} normal lines:")
    for t in matcher.templates:
        echo(f"  T{t.id:<3d} x{t.count:<5d} {t.template}")

    test = generate_hdfs(test_blocks, anomaly_rate=anomaly_rate, seed=seed + 1)
    windows = list(windows_of(test.records(), config, matcher))
    echo(f"\nreplayed {len(test.lines)} fresh lines -> {len(windows)} block windows")
    flagged = Counter[str]()
    for w in windows:
        unknown = [e for e in w.items if e.unknown]
        if not unknown:
            continue
        kind = test.kinds.get(w.key, "normal")
        flagged[kind] += 1
        echo(
            f"\nFLAG {w.key}  {_ts(w.start)}-{_ts(w.end)}  {len(w.items)} lines, "
            f"{len(unknown)} match no known template  (injected: {kind})"
        )
        for e in unknown[:evidence]:
            echo(f"    ? {e.text}")
    injected = Counter(test.kinds.values())
    echo("\ninjected anomaly kind      blocks  flagged by unseen-template rule")
    for kind in ANOMALY_KINDS:
        echo(f"  {kind:22s} {injected[kind]:7d}  {flagged[kind]:7d}")
    n_normal = len(windows) - sum(injected.values())
    echo(f"  {'normal (false flags)':22s} {n_normal:7d}  {flagged['normal']:7d}")
    echo(
        "\nmissing steps, wrong order and bursts use only known templates: the FastLogAD"
        "\nsequence model scores those (logsieve train / score)."
    )
    stats = {
        "windows": len(windows),
        "flagged": sum(flagged.values()),
        "false_flags": flagged["normal"],
    }
    stats.update({f"injected_{k}": v for k, v in injected.items()})
    stats.update({f"flagged_{k}": v for k, v in flagged.items()})
    return stats
