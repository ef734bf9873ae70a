"""LogBERT as HelenGuohx/logbert runs it vs our variant on hdfs-sessions, by session length.

The harness gives the table (``--methods logbert logbert-ours``); this script fits the
same configurations (``methods._make_baseline``) and reports each fitted model twice:
over every test session (our protocol, the main table's) and over the sessions of at
least 10 events only (the authors' ``min_len = 10``, which drops shorter sessions from
their training *and* test sets, so the paper's F1 is over that population). Both from
the same model and the same label-free threshold (chosen on normal validation windows,
never on test labels). It also gives recall and false positives by length band, and
saves the scores (``--save-dir``) so that other thresholds can be read off later
without refitting; ``--rescore`` scores saved models again with other scoring masks
(``--score-masks``; the label-free r is chosen again on validation). Not part of the
test run (minutes per seed).

    LOGSIEVE_DATA=../shared/data .venv/bin/python bench/logbert_reference.py \
        --methods logbert --seeds 0 --threads 1 --out /tmp/lb.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from logsieve.export.baselines import LogBERT, score_chunked, select_threshold
from logsieve.export.data.prepare import Prepared, prepare
from logsieve.export.evaluation.methods import EvalOptions, _make_baseline
from logsieve.export.evaluation.metrics import (
    HDFS_ANOMALOUS,
    HDFS_NORMAL,
    metrics,
    project_metrics,
)

MIN_LEN = 10  # HelenGuohx/logbert's min_len: sessions with fewer events are dropped
BANDS = ((1, 3), (4, 9), (10, 19), (20, 29), (30, 10**9))


def _data_dir() -> Path:
    env = os.environ.get("LOGSIEVE_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        raise SystemExit(f"no data at {path}: set LOGSIEVE_DATA")
    return path / "hdfs" / "sessions"


def _figures(
    scores: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    t: float,
    n_anomalous: int,
    candidates: npt.NDArray[np.float64],
) -> dict[str, Any]:
    """Figures at the label-free ``t``, projected, and the oracle F1 (reference only)."""
    m = metrics(scores, y, t)
    oracle = max((metrics(scores, y, float(c)) for c in candidates), key=lambda o: o.f1)
    return {
        **{k: v for k, v in m.to_dict().items() if k != "threshold"},
        "projected": project_metrics(m, HDFS_NORMAL, n_anomalous),
        "n_anomalous_projected": n_anomalous,
        "oracle": {"threshold": oracle.threshold, "precision": oracle.precision,
                   "recall": oracle.recall, "f1": oracle.f1, "fpr": oracle.fpr},
    }  # fmt: skip


def rescore(path: Path, data: Prepared, score_masks: str, draw_seed: int | None) -> LogBERT:
    """A saved model with other scoring masks; r chosen again on normal validation.

    ``draw_seed``: the seed of the drawn masks (the config's ``seed``, which only seeds
    the initial weights and the draws: the weights here are the saved ones).
    """
    saved = LogBERT.load(path)
    seed = saved.cfg.seed if draw_seed is None else draw_seed
    b = LogBERT(replace(saved.cfg, score_masks=score_masks, seed=seed))
    b.model.load_state_dict(saved.model.state_dict())
    b.model.eval()
    val = b.score(data.validation)
    b.thresholds = {"validation": select_threshold(val, b.cfg.max_fpr, np.r_[0.0, val])}
    b.threshold_rule = "validation"
    return b


def run_one(name: str, data: Prepared, seed: int, opt: EvalOptions,
            save_dir: Path | None, fitted: LogBERT | None = None,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    if fitted is None:
        b = _make_baseline(name, data, seed, opt)
        assert isinstance(b, LogBERT)
        if overrides:  # one option changed: an ablation of the harness's configuration
            b = LogBERT(replace(b.cfg, **overrides))
            name = name + "+" + "+".join(f"{k}={v}" for k, v in sorted(overrides.items()))
        t0 = time.perf_counter()
        b.fit(data.train, data.validation)
        fit_s = time.perf_counter() - t0
    else:
        b, fit_s = fitted, 0.0
    scores = score_chunked(b, data.test)
    y = np.asarray(data.test_labels, dtype=np.int64)
    t = b.threshold
    lengths = np.array([sum(len(c) - 1 for c in w) for w in data.test])
    long = lengths >= MIN_LEN
    # The >= 10 population projected: every normal test session is >= 10 events here
    # (dev_normal has none shorter), and dev_abnormal is a random 30 % of the 16,838.
    share = float(long[y == 1].mean())
    cand = b.threshold_candidates(scores)
    flagged = scores > t
    bands = {}
    for lo, hi in BANDS:
        sel = (lengths >= lo) & (lengths <= hi)
        ab, no = sel & (y == 1), sel & (y == 0)
        bands[f"{lo}-{hi if hi < 10**9 else ''}"] = {
            "abnormal": int(ab.sum()), "tp": int((ab & flagged).sum()),
            "recall": float((ab & flagged).sum() / ab.sum()) if ab.any() else None,
            "normal": int(no.sum()), "fp": int((no & flagged).sum()),
        }  # fmt: skip
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        stem = save_dir / f"{name}-s{seed}-e{opt.epochs or 'full'}"
        if fitted is None:
            b.save(stem.with_suffix(".pt"))
        else:  # a rescored model: its scores beside the first ones
            stem = save_dir / f"{name}-{b.cfg.score_masks}-d{b.cfg.seed}"
        np.savez(stem.with_suffix(".npz"), scores=scores, labels=y, lengths=lengths,
                 threshold=t, val_scores=b.score(data.validation))  # fmt: skip
    return {
        "method": name, "seed": seed, "epochs_cap": opt.epochs,
        "epochs_run": len(b.history["train_loss"]),
        "best_epoch": int(np.argmin(b.history["val_loss"])) + 1 if b.history["val_loss"] else None,
        "config": {k: v for k, v in vars(b.cfg).items()}, "fit_s": round(fit_s, 1),
        "threshold": t, "rule": b.threshold_rule,
        "all": _figures(scores, y, t, HDFS_ANOMALOUS, cand),
        "ge10": _figures(scores[long], y[long], t, round(HDFS_ANOMALOUS * share), cand),
        "abnormal_ge10_share": share,
        "by_length": bands,
        "train_loss_every_10": b.history["train_loss"][::10] + b.history["train_loss"][-1:],
        "val_loss_every_10": b.history["val_loss"][::10] + b.history["val_loss"][-1:],
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["logbert", "logbert-ours"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=None, help="cap (default: 200, theirs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save-dir", type=Path, default=None, help="weights and scores here")
    p.add_argument(
        "--rescore",
        type=Path,
        nargs="+",
        default=[],
        help="saved models (.pt) to score again instead of fitting",
    )
    p.add_argument("--score-masks", choices=["length", "draw"], default="draw")
    p.add_argument(
        "--draw-seeds",
        type=int,
        nargs="+",
        default=[None],
        help="with --rescore: seeds of the drawn masks (default: the model's)",
    )
    p.add_argument(
        "--set",
        type=json.loads,
        default=None,
        dest="overrides",
        help='LogBERTConfig fields to change, as JSON: \'{"hypersphere": "mse"}\'',
    )
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = prepare("hdfs-sessions", _data_dir())
    opt = EvalOptions(epochs=a.epochs)
    with a.out.open("a", encoding="utf-8") as f:
        for path in a.rescore:
            for draw_seed in a.draw_seeds:
                b = rescore(path, data, a.score_masks, draw_seed)
                row = {"rescored": str(path), "score_masks": a.score_masks,
                       **run_one(path.stem, data, b.cfg.seed, opt, a.save_dir, b)}  # fmt: skip
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(json.dumps(row), flush=True)
        for seed in [] if a.rescore else a.seeds:
            for name in a.methods:
                row = run_one(name, data, seed, opt, a.save_dir, None, a.overrides)
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
