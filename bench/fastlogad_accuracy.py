"""FastLogAD accuracy on the real data, through the same library path as
``logsieve train`` / ``logsieve eval``: prepare → train_bundle → evaluate.

Not part of the test run (it trains for minutes per seed). Reads ``$LOGSIEVE_DATA`` or
``../shared/data``; nothing is copied into the repo. Each run is appended to a JSON
Lines file as it finishes, so an interrupted sweep keeps what it measured; the summary
(mean ± std over seeds) is printed as Markdown at the end.

    .venv/bin/python bench/fastlogad_accuracy.py --dataset hdfs-sessions \\
        --generators random mlm --seeds 0 1 2 --out /tmp/fastlogad_hdfs.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from logsieve.export.calibrate import DEFAULT_QUANTILE
from logsieve.export.data.prepare import prepare
from logsieve.export.evaluation.bundle_eval import evaluate
from logsieve.export.fastlogad.bundle import train_bundle
from logsieve.export.fastlogad.model import ModelConfig
from logsieve.export.fastlogad.scoring import load_model, score_sequences, score_windows
from logsieve.export.fastlogad.train import TrainConfig

_PATHS = {"hdfs-sessions": "hdfs/sessions", "bgl-windows": "bgl/windows"}


def _data_dir() -> Path:
    env = os.environ.get("LOGSIEVE_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        raise SystemExit(f"no data at {path}: set LOGSIEVE_DATA")
    return path


def run_one(dataset: str, generator: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    data = prepare(dataset, _data_dir() / _PATHS[dataset], train_n=args.train_n)
    overrides = {
        k: getattr(args, k) for k in ("rtd_epochs", "hst_epochs", "lr") if getattr(args, k)
    }
    cfg = TrainConfig(generator=generator, seed=seed, num_threads=args.threads, **overrides)
    model = ModelConfig(vocab_size=data.vocab.size, max_len=data.log_config.max_len)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        bundle, result = train_bundle(
            data, Path(tmp) / "b", train_cfg=cfg, model_cfg=model, quantile=args.quantile,
            progress=False,
        )  # fmt: skip
        train_s = time.perf_counter() - t0
        report = evaluate(bundle, data, batch_size=256)
        if args.scores_dir:
            _dump_scores(args.scores_dir / f"{dataset}-{generator}-{seed}.npz", bundle, data)
    return {
        "dataset": dataset,
        "generator": generator,
        "seed": seed,
        "train_s": round(train_s, 1),
        "timings": result.timings,
        "best_epoch": result.best_epoch,
        "n_train": result.n_train_raw,
        "n_train_unique": result.n_train,
        "train_config": result.train_config,
        **{
            k: report[k]
            for k in (
                "threshold",
                "n_test",
                "n_test_anomalous",
                "metrics",
                "dedup",
                "ms_per_window",
                "torch_threads",
            )
        },
        **({"projected": report["projected"]} if "projected" in report else {}),
    }


def _dump_scores(path: Path, bundle: Any, data: Any) -> None:
    """Per-test-window score, label and event count, and the validation scores the
    threshold came from: enough to look at what is missed, and to try other label-free
    thresholds without retraining."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = load_model(bundle)
    scores = score_windows(
        model, data.test, 256, bundle.log_config.unseen_templates, data.test_rare(), bundle.known
    )
    events = np.array([sum(len(c) - 1 for c in w) for w in data.test])  # minus [CLS]
    np.savez(path, scores=scores, labels=data.test_labels, events=events,
             threshold=bundle.threshold,
             validation=score_sequences(model, data.validation or data.train, 256))  # fmt: skip


def summarise(rows: list[dict[str, Any]]) -> str:
    def ms(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.4f}"
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"

    head = ["dataset", "generator", "seeds", "P", "R", "F1", "FPR", "ROC-AUC", "PR-AUC",
            "F1 dedup", "F1 projected", "P projected", "train s", "ms/window"]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["generator"]), []).append(r)
    for (dataset, generator), rs in groups.items():
        m = [r["metrics"] for r in rs]
        proj = [r["projected"] for r in rs if "projected" in r]
        out.append(
            f"| {dataset} | {generator} | {','.join(str(r['seed']) for r in rs)} "
            f"| {ms([x['precision'] for x in m])} | {ms([x['recall'] for x in m])} "
            f"| {ms([x['f1'] for x in m])} | {ms([x['fpr'] for x in m])} "
            f"| {ms([x['roc_auc'] for x in m])} | {ms([x['pr_auc'] for x in m])} "
            f"| {ms([r['dedup']['metrics']['f1'] for r in rs])} "
            f"| {ms([p['f1'] for p in proj]) if proj else '—'} "
            f"| {ms([p['precision'] for p in proj]) if proj else '—'} "
            f"| {ms([r['train_s'] for r in rs])} | {ms([r['ms_per_window'] for r in rs])} |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(_PATHS), required=True)
    p.add_argument("--generators", nargs="+", default=["random", "mlm"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--train-n", type=int, default=None)
    p.add_argument("--rtd-epochs", type=int, default=None)
    p.add_argument("--hst-epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="Default: TrainConfig's 1e-4.")
    p.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", type=Path, required=True, help="JSON Lines, appended per run.")
    p.add_argument("--scores-dir", type=Path, default=None,
                   help="Also write each run's per-window test scores (.npz) here.")  # fmt: skip
    args = p.parse_args()
    rows = []
    for generator in args.generators:
        for seed in args.seeds:
            row = run_one(args.dataset, generator, seed, args)
            rows.append(row)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            m = row["metrics"]
            extra = f" projected F1 {row['projected']['f1']:.4f}" if "projected" in row else ""
            print(f"{generator} seed {seed}: F1 {m['f1']:.4f} (P {m['precision']:.4f} "
                  f"R {m['recall']:.4f}){extra}, {row['train_s']}s", flush=True)  # fmt: skip
    print(summarise(rows))


if __name__ == "__main__":
    main()
