"""DeepLog as wuyifan18/DeepLog runs it vs our variant on hdfs-sessions, with the misses.

The harness gives the table (``--methods deeplog deeplog-ours``); this script fits the
same configurations (``methods._make_baseline``) and also says *which* test sessions each
variant gets wrong: false negatives by session length, false positives by the position
of their first key outside the top g. Not part of the test run (minutes per seed).

    .venv/bin/python bench/deeplog_reference.py --seeds 0 --threads 1 --out /tmp/dl.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from logsieve.export.baselines import DeepLog, score_chunked
from logsieve.export.baselines.deeplog import next_key_scores
from logsieve.export.data.prepare import Prepared, prepare
from logsieve.export.evaluation.methods import EvalOptions, _make_baseline
from logsieve.export.evaluation.metrics import metrics, projected_hdfs


def _data_dir() -> Path:
    env = os.environ.get("LOGSIEVE_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        raise SystemExit(f"no data at {path}: set LOGSIEVE_DATA")
    return path / "hdfs" / "sessions"


@torch.no_grad()
def _first_miss(b: DeepLog, window: np.ndarray) -> int:
    """1-based position of the first key outside the top g (0: none, -1: short window)."""
    rows, _ = b._pairs([window])
    if len(rows) == 0:
        return -1
    t = torch.from_numpy(rows)
    miss = np.nonzero(next_key_scores(b.model(t[:, :-1]), t[:, -1]).numpy() > b.threshold)[0]
    if miss.size == 0:
        return 0
    # Row r predicts key r + 1 ([PAD]ded history) or key r + history + 1 (full history).
    return int(miss[0]) + 1 + (b.cfg.history if b.cfg.short_windows == "pad" else 0)


def run_one(name: str, data: Prepared, seed: int, opt: EvalOptions) -> dict[str, Any]:
    b = _make_baseline(name, data, seed, opt)
    assert isinstance(b, DeepLog)
    t0 = time.perf_counter()
    b.fit(data.train, data.validation)
    fit_s = time.perf_counter() - t0
    scores = score_chunked(b, data.test)
    y = data.test_labels
    m = metrics(scores, y, b.threshold)
    flagged = scores > b.threshold
    lengths = np.array([sum(len(c) - 1 for c in w) for w in data.test])
    fn = (y == 1) & ~flagged
    fp = (y == 0) & flagged
    fp_pos = Counter(_first_miss(b, data.test[i][0]) for i in np.nonzero(fp)[0])
    # Model-free evidence: a window whose every (history, key) row occurs in training
    # cannot be told from normal by any next-key rule; one with a row never seen in
    # training holds behaviour the training sessions do not.
    seen = {r.tobytes() for r in b._pairs([*data.train, *data.validation])[0]}

    def novel(i: int) -> bool:
        return any(r.tobytes() not in seen for c in data.test[i] for r in b._pairs([c])[0])

    fn_novel = sum(novel(i) for i in np.nonzero(fn)[0])
    fp_novel = sum(novel(i) for i in np.nonzero(fp)[0])
    return {
        "method": name, "seed": seed, "epochs_run": len(b.history["train_loss"]),
        "config": {k: v for k, v in vars(b.cfg).items()}, "fit_s": round(fit_s, 1),
        "threshold": b.threshold, "rule": b.threshold_rule,
        "tp": m.tp, "fp": m.fp, "fn": m.fn, "tn": m.tn,
        "precision": m.precision, "recall": m.recall, "f1": m.f1, "fpr": m.fpr,
        "roc_auc": m.roc_auc, "projected": projected_hdfs(m),
        "fn_by_length": dict(sorted(Counter(lengths[fn].tolist()).items())),
        "fp_by_length": dict(sorted(Counter(lengths[fp].tolist()).items())),
        "fp_by_first_miss_position": dict(sorted(fp_pos.items())),
        "fn_with_a_row_unseen_in_training": fn_novel,
        "fp_with_a_row_unseen_in_training": fp_novel,
        "fn_keys": [data.test_keys[i] for i in np.nonzero(fn)[0]],
        "fp_keys": [data.test_keys[i] for i in np.nonzero(fp)[0]],
        "train_loss_every_10": b.history["train_loss"][::10] + b.history["train_loss"][-1:],
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["deeplog", "deeplog-ours"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=None, help="cap (default: 300, theirs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = prepare("hdfs-sessions", _data_dir())
    opt = EvalOptions(epochs=a.epochs)
    with a.out.open("a", encoding="utf-8") as f:
        for seed in a.seeds:
            for name in a.methods:
                row = run_one(name, data, seed, opt)
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
