"""FastLogAD on the HDFS sessions: train, calibrate on normal validation, evaluate.

Not part of the test run. Reads ``$LOGSIEVE_DATA`` or ``../shared/data`` (never copied
into the repo). Protocol: ``train_normal`` in file order, the last 10% as validation
(chronological); test = ``dev_normal`` (label 0) + ``dev_abnormal`` (label 1); threshold
= the ``--quantile`` of the validation scores (no labels). Reports raw P/R/F1 and the
figures projected to HDFS's real class ratio (553,366 normal, 16,838 anomalous).

    .venv/bin/python bench/hdfs_fastlogad.py --generator both --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from logsieve.export.calibrate import (
    metrics,
    project_metrics,
    score_sequences,
    threshold_from_normal,
)
from logsieve.export.model import ModelConfig, save_checkpoint
from logsieve.export.train import TrainConfig, train

N_EVENTS = 29  # HDFS event ids 1..29 -> token ids 4..32
HDFS_NORMAL, HDFS_ANOMALOUS = 553_366, 16_838


def data_dir() -> Path:
    env = os.environ.get("LOGSIEVE_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        sys.exit(f"no data at {path}: set LOGSIEVE_DATA")
    return path / "hdfs" / "sessions"


def read_sessions(path: Path) -> list[np.ndarray]:
    # Event id e (1-based template number) is template e-1, i.e. token e+3; [CLS] first.
    out = []
    for line in path.read_text().splitlines():
        events = [int(x) for x in line.split()]
        out.append(np.array([1, *(e + 3 for e in events)], dtype=np.int64))
    return out


def run(kind: str, args: argparse.Namespace) -> dict[str, object]:
    d = data_dir()
    normal = read_sessions(d / "train_normal")
    n_val = len(normal) // 10
    train_seqs, val_seqs = normal[:-n_val], normal[-n_val:]
    dev_n, dev_a = read_sessions(d / "dev_normal"), read_sessions(d / "dev_abnormal")
    vocab_size = N_EVENTS + 4
    mcfg = ModelConfig(vocab_size=vocab_size, max_len=512)
    tcfg = TrainConfig(
        generator=kind,
        seed=args.seed,
        num_threads=args.threads,
        **({"rtd_epochs": args.rtd_epochs} if args.rtd_epochs is not None else {}),
        **({"hst_epochs": args.hst_epochs} if args.hst_epochs is not None else {}),
    )
    t0 = time.perf_counter()
    res = train(train_seqs, val_seqs, vocab_size, mcfg, tcfg, progress=not args.quiet)
    train_s = time.perf_counter() - t0
    torch.set_num_threads(args.threads)
    val_scores = score_sequences(res.model, val_seqs)
    test = dev_n + dev_a
    labels = np.r_[np.zeros(len(dev_n)), np.ones(len(dev_a))].astype(np.int64)
    score_sequences(res.model, test[:512])  # warm-up outside the timed region
    t1 = time.perf_counter()
    scores = score_sequences(res.model, test, batch_size=256)
    ms = (time.perf_counter() - t1) * 1000 / len(test)
    out: dict[str, object] = {
        "generator": kind,
        "seed": args.seed,
        "train_config": res.train_config,
        "n_train_raw": res.n_train_raw,
        "n_train_unique": res.n_train,
        "n_val": len(val_seqs),
        "train_s": round(train_s, 1),
        "timings": {k: round(v, 1) for k, v in res.timings.items()},
        "best_epoch": res.best_epoch,
        "hst_epochs_run": len(res.history["hst_loss"]),
        "score_ms_per_window": round(ms, 4),
        "val_unique_scores": len(np.unique(np.round(val_scores, 6))),
    }
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)
        tag = f"{kind}-seed{args.seed}"
        save_checkpoint(
            args.save_dir / f"{tag}.pt", res.model, res.model_args, {"history": res.history}
        )
        np.savez(args.save_dir / f"{tag}-scores.npz", val=val_scores, test=scores, labels=labels)
    for q in args.quantiles:
        thr = threshold_from_normal(val_scores, q)
        m = metrics(scores, labels, thr)
        p = project_metrics(m, HDFS_NORMAL, HDFS_ANOMALOUS)
        out[f"q={q}"] = {
            "threshold": round(thr, 5),
            "val_flagged": float(np.mean(val_scores > thr)),
            "raw": {k: round(v, 4) if isinstance(v, float) else v for k, v in m.to_dict().items()},
            "projected": {k: round(v, 4) for k, v in p.items()},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generator", choices=["random", "mlm", "both"], default="both")
    ap.add_argument("--rtd-epochs", type=int, default=None)
    ap.add_argument("--hst-epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quantiles", type=float, nargs="+", default=[0.99, 0.995, 1.0])
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument(
        "--save-dir", type=Path, default=None, help="checkpoints + scores (not in the repo)"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    kinds = ["random", "mlm"] if args.generator == "both" else [args.generator]
    results = [run(k, args) for k in kinds]
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
