"""Evaluate a trained FastLogAD bundle on a dataset's test split (``logsieve eval --bundle``).

Labels are read here only; the bundle's threshold was chosen without them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from logsieve.bundle import Bundle, open_bundle
from logsieve.errors import BundleError, DataError
from logsieve.export.adalog.bundle import score_lines
from logsieve.export.data.prepare import LINE_DATASETS, Prepared, prepare
from logsieve.export.evaluation.metrics import metrics, projected_hdfs
from logsieve.export.fastlogad.scoring import load_model, score_windows

__all__ = [
    "PRE_PARSED",
    "bundle_event_ids",
    "check_bundle_data",
    "check_bundle_reads",
    "evaluate",
    "evaluate_adalog",
    "evaluate_bundle",
    "flat_report",
    "format_report",
]

# Datasets of pre-parsed event ids (no raw lines): their ids map through the bundle's table.
PRE_PARSED = ("hdfs-sessions", "bgl-windows")


def evaluate_bundle(
    bundle_path: Path,
    dataset: str,
    data_path: Path,
    *,
    train_n: int | None = None,
    val_fraction: float = 0.1,
    labels_path: Path | None = None,
    pattern: str | None = None,
    batch_size: int = 256,
    threads: int | None = None,
) -> dict[str, Any]:
    """``logsieve eval --bundle``: the bundle's threshold on the dataset's test split,
    read with the bundle's own log settings and templates (see :func:`evaluate`)."""
    bundle = open_bundle(bundle_path)
    check_bundle_data(bundle, None)  # the wrong detector fails before the data is read
    check_bundle_reads(bundle, dataset)
    if threads:
        torch.set_num_threads(threads)
    data = prepare(
        dataset,
        data_path,
        log_config=bundle.log_config,
        train_n=train_n,
        val_fraction=val_fraction,
        labels_path=labels_path,
        pattern=pattern,
        templates_state=bundle.templates_state,
        vocab_event_ids=bundle_event_ids(bundle) if dataset in PRE_PARSED else None,
    )
    check_bundle_data(bundle, data)
    return evaluate(bundle, data, batch_size=batch_size)


def check_bundle_reads(bundle: Bundle, dataset: str) -> None:
    """Refuse a dataset kind the bundle was not trained on: raw lines need the bundle's
    templates, pre-parsed event ids its event-id table (:func:`bundle_event_ids`)."""
    if dataset in LINE_DATASETS and bundle.templates_state is None:
        raise BundleError(
            f"{bundle.path}: trained on pre-parsed event ids, it has no templates to read "
            f"raw {dataset} lines with (evaluate it on hdfs-sessions/bgl-windows data)"
        )
    if dataset in PRE_PARSED:
        if bundle.templates_state is not None:
            raise BundleError(
                f"{bundle.path}: trained on raw {bundle.manifest.get('format')} lines; "
                f"its template ids are not {dataset} event ids"
            )
        bundle_event_ids(bundle)


def bundle_event_ids(bundle: Bundle) -> list[int]:
    """The event id each template id of a pre-parsed bundle stands for (manifest
    ``data.vocab_event_ids``, written at training): the only correct way to map a
    session or window file's event ids to the model's ids. Re-deriving it from a data
    folder would silently map ids wrongly when that folder's training file differs."""
    data = bundle.manifest.get("data")
    ids = data.get("vocab_event_ids") if isinstance(data, dict) else None
    n = bundle.vocab.n_templates if bundle.vocab is not None else None
    if not (
        isinstance(ids, list)
        and all(isinstance(e, int) and not isinstance(e, bool) for e in ids)
        and len(set(ids)) == len(ids)
    ):
        raise BundleError(
            f"{bundle.path}: the manifest has no data.vocab_event_ids table (event id of "
            "each template id), so event ids cannot be mapped to this model's ids; "
            "retrain the bundle with this logsieve"
        )
    if len(ids) != n:
        raise BundleError(
            f"{bundle.path}: data.vocab_event_ids has {len(ids)} ids, the vocabulary {n}"
        )
    return ids


def check_bundle_data(bundle: Bundle, data: Prepared | None) -> None:
    """Refuse to evaluate a bundle on data it cannot read: another detector, or another
    vocabulary than the bundle's."""
    if bundle.detector != "fastlogad":
        raise BundleError(
            f"{bundle.path}: this is an {bundle.detector!r} bundle; evaluate it with "
            f"--method {bundle.detector} (fits on the same split) or score lines with it"
        )
    if data is not None and bundle.vocab is not None and data.vocab.size != bundle.vocab.size:
        raise BundleError(
            f"{bundle.path}: vocabulary of {bundle.vocab.size} tokens, "
            f"the data has {data.vocab.size} (another dataset?)"
        )


def evaluate(bundle: Bundle, data: Prepared, *, batch_size: int = 256) -> dict[str, Any]:
    """Metrics of the bundle's model and threshold on ``data.test``.

    Reported twice: on the test windows as they are, and with identical test windows
    counted once (first label wins only if all copies agree; conflicting duplicates are
    counted and kept once per label). For HDFS session data the figures are also
    projected to HDFS's real class ratio.
    """
    model = load_model(bundle)
    if not data.test:
        raise BundleError(f"{data.summary.get('source')}: no test windows to evaluate on")
    t0 = time.perf_counter()
    scores = score_windows(
        model,
        data.test,
        batch_size,
        bundle.log_config.unseen_templates,
        data.test_rare(),
        bundle.known,
    )
    seconds = time.perf_counter() - t0
    labels = data.test_labels
    m = metrics(scores, labels, bundle.threshold)
    keys = [tuple(int(x) for c in w for x in c) for w in data.test]
    seen: dict[tuple[tuple[int, ...], int], int] = {}
    for i, (k, y) in enumerate(zip(keys, labels.tolist(), strict=True)):
        seen.setdefault((k, y), i)
    idx = np.array(sorted(seen.values()))
    m_dedup = metrics(scores[idx], labels[idx], bundle.threshold)
    report: dict[str, Any] = {
        "dataset": data.dataset,
        "bundle": str(bundle.path),
        "threshold": bundle.threshold,
        "n_test": len(data.test),
        "n_test_anomalous": int(labels.sum()),
        "metrics": m.to_dict(),
        "dedup": {"n_test": len(idx), "metrics": m_dedup.to_dict()},
        "ms_per_window": 1000.0 * seconds / len(data.test),
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
    }
    if data.dataset == "hdfs-sessions":
        report["projected"] = projected_hdfs(m)
    if "test_unknown_rate" in data.summary:
        report["test_unknown_rate"] = data.summary["test_unknown_rate"]
    return report


def flat_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report with the confusion counts and threshold also at the top (``--json``)."""
    m = report["metrics"]
    return {**{k: m[k] for k in ("tp", "fp", "fn", "tn", "threshold")}, **report}


def format_report(report: dict[str, Any]) -> str:
    """The human-readable table of an :func:`evaluate` report."""
    out = [
        f"{report['dataset']}: {report['n_test']} test windows "
        f"({report['n_test_anomalous']} anomalous), threshold {report['threshold']:.6g}"
    ]
    rows = [("as is", report["metrics"]), ("deduplicated", report["dedup"]["metrics"])]
    if "projected" in report:
        rows.append(("projected", report["projected"]))
    out.append(f"{'':14s} {'P':>7s} {'R':>7s} {'F1':>7s} {'ROC-AUC':>8s} {'PR-AUC':>7s}"
               f" {'tp':>7s} {'fp':>9s} {'fn':>6s} {'tn':>7s}")  # fmt: skip
    nan = float("nan")
    for name, m in rows:
        out.append(
            f"{name:14s} {m['precision']:7.4f} {m['recall']:7.4f} {m['f1']:7.4f} "
            f"{m.get('roc_auc', nan):8.4f} {m.get('pr_auc', nan):7.4f} "
            f"{m['tp']:7.0f} {m['fp']:9.0f} {m.get('fn', nan):6.0f} {m.get('tn', nan):7.0f}"
        )
    out.append(
        f"scoring: {report['ms_per_window']:.3f} ms/window (batch {report['batch_size']}, CPU)"
    )
    return "\n".join(out)


def evaluate_adalog(
    bundle: Bundle, lines: Sequence[str], labels: npt.ArrayLike, *, batch_size: int = 256
) -> dict[str, Any]:
    """P/R/F1/FPR/ROC-AUC/PR-AUC of the bundle's threshold on labelled lines."""
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(lines) == 0 or len(lines) != len(y):
        raise DataError(f"evaluate_adalog: {len(lines)} lines and {len(y)} labels")
    t0 = time.perf_counter()
    scores, _ = score_lines(bundle, lines, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    return {
        "detector": "adalog",
        "bundle": str(bundle.path),
        "threshold": bundle.threshold,
        "n_test": len(y),
        "n_test_anomalous": int(y.sum()),
        "metrics": metrics(scores, y, bundle.threshold).to_dict(),
        "ms_per_line": 1000.0 * seconds / len(y),
        "torch_threads": torch.get_num_threads(),
    }
