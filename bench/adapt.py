"""``logsieve update``: fine-tune vs retrain, on the README recipe's HDFS logs.

The parent is trained on ``HDFS_20000.log`` (which never has the "Deleting block"
lines HDFS_5k's normal blocks end with). Each mode updates it on the first
``--train-n`` normal blocks of ``HDFS_5k.log`` (the last 10% of them recalibrate the
threshold) and is evaluated, with its own templates and threshold, on

- the rest of HDFS_5k (held-out normal blocks: FPR; its anomalous blocks: recall,
  reported, never used to choose anything);
- HDFS_20000 (the parent's own data: does the update forget the old normal?).

    .venv/bin/logsieve train --dataset hdfs --data ../shared/data/hdfs/raw/HDFS_20000.log \\
        --d-model 64 --layers 2 --rtd-epochs 5 --hst-epochs 20 --threads 1 --out /tmp/parent
    .venv/bin/python bench/adapt.py /tmp/parent --seeds 3 --threads 1

Prints one Markdown row per (mode, seed) and the mean per mode.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from logsieve.bundle import open_bundle
from logsieve.export.evaluation.bundle_eval import evaluate_bundle
from logsieve.export.update import UpdateRequest, update_bundle

_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hdfs" / "raw"


def _rates(report: dict[str, Any]) -> tuple[float, float]:
    m = report["metrics"]
    fpr = m["fp"] / max(m["fp"] + m["tn"], 1)
    return fpr, m["recall"]


def evaluate(bundle: Path, data: Path, train_n: int, threads: int) -> dict[str, float]:
    new = evaluate_bundle(bundle, "hdfs", data / "HDFS_5k.log", train_n=train_n, threads=threads)
    old = evaluate_bundle(bundle, "hdfs", data / "HDFS_20000.log", train_n=1, threads=threads)
    fpr_new, rec_new = _rates(new)
    fpr_old, rec_old = _rates(old)
    return {"fpr_5k": fpr_new, "recall_5k": rec_new, "fpr_20k": fpr_old, "recall_20k": rec_old,
            "auc_5k": new["metrics"].get("roc_auc", float("nan"))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("parent", type=Path)
    ap.add_argument("--data", type=Path, default=_DATA)
    ap.add_argument("--train-n", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    cols = ["fpr_5k", "recall_5k", "auc_5k", "fpr_20k", "recall_20k"]
    print("| bundle | seed | seconds | " + " | ".join(cols) + " |")
    print("|---" * (3 + len(cols)) + "|")
    base = evaluate(args.parent, args.data, args.train_n, args.threads)
    print("| parent | - | - | " + " | ".join(f"{base[c]:.3f}" for c in cols) + " |")
    means: dict[str, list[dict[str, float]]] = {}
    for mode in ("finetune", "retrain"):
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "b"
                t0 = time.perf_counter()
                request = UpdateRequest(
                    args.parent,
                    args.data / "HDFS_5k.log",
                    out=out,
                    mode=mode,  # type: ignore[arg-type]
                    train_n=args.train_n,
                    seed=seed,
                    threads=args.threads,
                    export=False,
                )
                update_bundle(request, progress=lambda _: None, report=lambda _: None)
                secs = time.perf_counter() - t0
                row = evaluate(out, args.data, args.train_n, args.threads)
                assert open_bundle(out).manifest["parent_model_id"]
                shutil.rmtree(out, ignore_errors=True)
            row["seconds"] = secs
            means.setdefault(mode, []).append(row)
            print(f"| {mode} | {seed} | {secs:.1f} | " + " | ".join(f"{row[c]:.3f}" for c in cols)
                  + " |")  # fmt: skip
    for mode, rows in means.items():
        avg = {c: sum(r[c] for r in rows) / len(rows) for c in [*cols, "seconds"]}
        print(f"| {mode} (mean) | {len(rows)} | {avg['seconds']:.1f} | "
              + " | ".join(f"{avg[c]:.3f}" for c in cols) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
