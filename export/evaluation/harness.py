"""The accuracy harness: every method on the same splits, per-seed rows, one Markdown table.

``prepare`` runs once per dataset; every method and seed fits on that one
:class:`~logsieve.export.data.prepare.Prepared` (its ``split`` digest is in every row, so
a table can be checked for it). Each method's default row uses its *label-free*
threshold (normal validation data only). Baselines also get rows at their other
label-free thresholds (DeepLog's paper g = 9) and an ``oracle`` row, the threshold of
best F1 on the labelled test set (:func:`~logsieve.export.baselines.oracle_threshold`):
an upper bound as the FastLogAD paper's Table 1 used for baselines, labelled as such,
never the default. ADALog on per-line labelled data also gets its line-level row.

    report = run(["iforest", "deeplog"], "hdfs-sessions", Path("../shared/data/hdfs/sessions"),
                 seeds=3, options=EvalOptions())
    print(report.table)
"""

from __future__ import annotations

import hashlib
import math
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from logsieve.errors import ConfigError
from logsieve.export.baselines import oracle_threshold
from logsieve.export.data.prepare import Prepared, prepare
from logsieve.export.evaluation.methods import METHODS, EvalOptions, Evidence, Fitted, Method
from logsieve.export.evaluation.metrics import Metrics, metrics, projected_hdfs

__all__ = [
    "BENCH_DATASETS",
    "EvalOptions",
    "EvalReport",
    "ScoredRun",
    "bench_accuracy",
    "run",
    "run_eval",
    "split_digest",
    "summarise",
]

# Which files of ../shared/data the accuracy bench reads, and the split each needs.
# HDFS_20000.log holds 1,739 normal blocks: 800 train so the rest can test.
BENCH_DATASETS: dict[str, tuple[str, int | None]] = {
    "hdfs-sessions": ("hdfs/sessions", None),
    "bgl-windows": ("bgl/windows", None),
    "hdfs": ("hdfs/raw/HDFS_20000.log", 800),
    "bgl": ("bgl/raw/BGL_2k.log", None),
    "thunderbird": ("thunderbird/raw/Thunderbird_2k.log", None),
}
ORACLE_NOTE = "oracle: best F1 on the labelled test set (upper bound, not a detector setting)"


@dataclass
class ScoredRun:
    """One method, one seed: the test scores and what the plots need."""

    method: str
    dataset: str
    seed: int
    scores: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    threshold: float
    evidence: Evidence | None = None


@dataclass
class EvalReport:
    """What :func:`run` returns: per-seed rows, the summary table, the PNGs written."""

    rows: list[dict[str, Any]]
    table: str
    runs: list[ScoredRun] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


def split_digest(data: Prepared) -> str:
    """A short sha256 of the train/validation/test windows and the test labels."""
    h = hashlib.sha256()
    for part in (data.train, data.validation, [c for w in data.test for c in w]):
        h.update(len(part).to_bytes(8, "little"))
        for seq in part:
            h.update(np.asarray(seq, dtype=np.int64).tobytes() + b"|")
    h.update(np.asarray(data.test_labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _prepare(dataset: str, data_path: Path, opt: EvalOptions) -> Prepared:
    return prepare(
        dataset,
        Path(data_path),
        train_n=opt.train_n,
        val_fraction=opt.val_fraction,
        labels_path=opt.labels_path,
        pattern=opt.pattern,
    )


def _method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError("method", name, f"one of {', '.join(METHODS)}")
    return METHODS[name]


def _row(
    method: str, data: Prepared, seed: int, digest: str, m: Metrics, fitted: Fitted, **kw: Any
) -> dict[str, Any]:
    n = len(data.test)
    row: dict[str, Any] = {
        "method": method,
        "dataset": data.dataset,
        "seed": seed,
        "status": "ok",
        "threshold_kind": "label-free",
        "threshold_rule": fitted.rule,
        "default": False,
        "granularity": "window",
        **{k: v for k, v in m.to_dict().items()},
        "fit_seconds": fitted.fit_seconds,
        "ms_per_window": 1000.0 * fitted.score_seconds / n if n else float("nan"),
        "n_test": n,
        "n_test_anomalous": int(data.test_labels.sum()),
        "split": digest,
        **{k: v for k, v in fitted.notes.items() if isinstance(v, (int, float, str))},
    }
    row.update(kw)
    if data.dataset == "hdfs-sessions" and row["granularity"] == "window":
        p = projected_hdfs(m)
        row.update(projected_precision=p["precision"], projected_recall=p["recall"],
                   projected_f1=p["f1"])  # fmt: skip
    return row


def _seed_rows(
    method: Method, data: Prepared, data_path: Path, seed: int, opt: EvalOptions, digest: str
) -> tuple[list[dict[str, Any]], ScoredRun]:
    fitted = method.fit_score(data, Path(data_path), seed, opt)
    y = data.test_labels
    m = metrics(fitted.scores, y, fitted.threshold)
    rows = [_row(method.name, data, seed, digest, m, fitted, default=True)]
    for rule, t in fitted.other_thresholds.items():
        rows.append(_row(method.name, data, seed, digest, metrics(fitted.scores, y, t), fitted,
                         threshold_rule=rule))  # fmt: skip
    if fitted.oracle_candidates is not None:
        choice = oracle_threshold(fitted.scores, y, fitted.oracle_candidates)
        rows.append(_row(method.name, data, seed, digest,
                         metrics(fitted.scores, y, choice.threshold), fitted,
                         threshold_kind="oracle", threshold_rule=ORACLE_NOTE))  # fmt: skip
    if fitted.line_scores is not None and fitted.line_labels is not None:
        lm = metrics(fitted.line_scores, fitted.line_labels, fitted.threshold)
        rows.append(_row(method.name, data, seed, digest, lm, fitted, granularity="line",
                         n_test=len(fitted.line_labels),
                         n_test_anomalous=int(fitted.line_labels.sum())))  # fmt: skip
    evidence = None
    if fitted.evidence is not None:
        flagged = np.nonzero(fitted.scores > fitted.threshold)[0]
        if flagged.size:
            # The highest-scoring flagged anomaly (else the highest-scoring flag).
            hits = flagged[y[flagged] == 1]
            pick = hits if hits.size else flagged
            best = int(pick[np.argmax(fitted.scores[pick])])
            evidence = replace(fitted.evidence(best), method=method.name)
    run = ScoredRun(method.name, data.dataset, seed, fitted.scores, y, fitted.threshold, evidence)
    return rows, run


def _na_rows(method: Method, dataset: str, seeds: Sequence[int], why: str) -> list[dict[str, Any]]:
    return [
        {"method": method.name, "dataset": dataset, "seed": s, "status": "n/a", "note": why,
         "threshold_kind": "label-free", "default": True, "granularity": "window"}
        for s in seeds
    ]  # fmt: skip


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    out = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not out or any(s < 0 for s in out):
        raise ConfigError("seeds", seeds, "a count >= 1 or a list of seeds >= 0")
    return out


def run_eval(
    method: str,
    dataset: str,
    data_path: Path,
    seeds: int | Sequence[int],
    options: EvalOptions | None = None,
    *,
    data: Prepared | None = None,
) -> list[dict[str, Any]]:
    """Fit and score ``method`` once per seed; per-seed rows (P, R, F1, ROC-AUC, PR-AUC,
    FPR, threshold, fit seconds, ms/window; HDFS-projected figures on hdfs-sessions).

    ``seeds``: a count (seeds ``0..n-1``) or the seeds. ``data``: an already prepared
    split to reuse (it must come from ``dataset``/``data_path``).
    """
    opt = options or EvalOptions()
    data = data if data is not None else _prepare(dataset, data_path, opt)
    return _evaluate(_method(method), data, data_path, _seeds(seeds), opt)[0]


def _evaluate(
    method: Method, data: Prepared, data_path: Path, seeds: list[int], opt: EvalOptions
) -> tuple[list[dict[str, Any]], list[ScoredRun]]:
    why = method.not_applicable(data.dataset)
    if why is not None:
        return _na_rows(method, data.dataset, seeds, why), []
    digest = split_digest(data)
    rows: list[dict[str, Any]] = []
    runs: list[ScoredRun] = []
    with _threads(opt.threads):
        for seed in seeds:
            print(f"{data.dataset}: {method.name} seed {seed} ...", file=sys.stderr, flush=True)
            r, s = _seed_rows(method, data, data_path, seed, opt, digest)
            rows += r
            runs.append(s)
    return rows, runs


def run(
    methods: Sequence[str],
    dataset: str,
    data_path: Path,
    seeds: int | Sequence[int],
    options: EvalOptions | None = None,
    *,
    plots: Path | None = None,
    data: Prepared | None = None,
) -> EvalReport:
    """Every method on one ``prepare`` of the dataset; the table; PNGs into ``plots``.

    ``data``: an already prepared split of ``dataset``/``data_path`` to reuse."""
    opt = options or EvalOptions()
    chosen = [_method(m) for m in dict.fromkeys(methods)]
    if not chosen:
        raise ConfigError("method", list(methods), f"one or more of {', '.join(METHODS)}")
    seed_list = _seeds(seeds)
    data = data if data is not None else _prepare(dataset, data_path, opt)
    rows: list[dict[str, Any]] = []
    runs: list[ScoredRun] = []
    for method in chosen:
        r, s = _evaluate(method, data, data_path, seed_list, opt)
        rows += r
        runs += s
    written: list[Path] = []
    if plots is not None and runs:
        from logsieve.export.evaluation.plots import write_plots

        written = write_plots(runs, plots)
    return EvalReport(rows, summarise(rows), runs, written)


def _fmt(values: list[float], digits: int = 4) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "nan"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


_COLUMNS = ["dataset", "method", "threshold", "seeds", "P", "R", "F1", "ROC-AUC", "PR-AUC",
            "FPR", "F1 projected", "fit s", "ms/window"]  # fmt: skip
_METRICS = ["precision", "recall", "f1", "roc_auc", "pr_auc", "fpr"]


def summarise(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table, one line per (dataset, method, threshold, granularity): mean ± std
    (sample std) over seeds. Oracle lines say so; n/a lines give the reason."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["dataset"], r["method"], r["threshold_kind"], r.get("threshold_rule", ""),
               r["granularity"], r["status"])  # fmt: skip
        groups.setdefault(key, []).append(r)
    out = ["| " + " | ".join(_COLUMNS) + " |", "|" + " --- |" * len(_COLUMNS)]
    for (dataset, method, kind, rule, gran, status), rs in groups.items():
        name = method + (" (per line)" if gran == "line" else "")
        if status != "ok":
            note = rs[0].get("note", "n/a")
            cells = [dataset, name, "—", str(len(rs))] + [note] + ["—"] * (len(_COLUMNS) - 5)
            out.append("| " + " | ".join(cells) + " |")
            continue
        threshold = "oracle (test labels)" if kind == "oracle" else f"label-free: {rule}"
        proj = [r["projected_f1"] for r in rs if "projected_f1" in r]
        cells = [dataset, name, threshold, ",".join(str(r["seed"]) for r in rs)]
        cells += [_fmt([r[k] for r in rs]) for k in _METRICS]
        cells += [_fmt(proj) if proj else "—", _fmt([r["fit_seconds"] for r in rs], 1),
                  _fmt([r["ms_per_window"] for r in rs], 3)]  # fmt: skip
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def bench_accuracy(
    data_root: Path,
    methods: Sequence[str],
    seeds: int | Sequence[int],
    options: EvalOptions | None = None,
    *,
    datasets: Sequence[str] | None = None,
) -> str:
    """Run :func:`run` on every :data:`BENCH_DATASETS` entry present under ``data_root``;
    one Markdown document (a table per dataset; skipped datasets say why)."""
    opt = options or EvalOptions()
    parts = [f"# Accuracy: {', '.join(methods)} (seeds: {seeds}, tiny={opt.tiny})", ""]
    for name in datasets or list(BENCH_DATASETS):
        rel, train_n = BENCH_DATASETS[name]
        path = Path(data_root) / rel
        parts.append(f"## {name} (`{rel}`)\n")
        if not path.exists():
            parts.append(f"skipped: {path} is absent\n")
            continue
        o = opt if opt.train_n is not None or train_n is None else replace(opt, train_n=train_n)
        data = _prepare(name, path, o)
        if not data.test_labels.any():
            parts.append(f"skipped: no anomalous test window in {rel} (nothing to detect)\n")
            continue
        parts.append(run(methods, name, path, seeds, o, data=data).table + "\n")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m logsieve.export.evaluation.harness``: :func:`bench_accuracy` to Markdown."""
    import argparse

    p = argparse.ArgumentParser(description="Accuracy of every method on ../shared/data.")
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--datasets", nargs="+", default=None, choices=list(BENCH_DATASETS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--tiny", action="store_true", help="Tiny models: a smoke run, not a result.")
    p.add_argument("--epochs", type=int, default=None, help="Cap every method's epochs.")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    opt = EvalOptions(tiny=a.tiny, epochs=a.epochs, threads=a.threads)
    text = bench_accuracy(a.data_root, a.methods, a.seeds, opt, datasets=a.datasets)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
