"""Detection metrics: P/R/F1/FPR at a threshold, ROC-AUC, PR-AUC, projection to a class ratio.

Labels appear here and in the harness alone: no training or calibration code imports
this module. ROC-AUC and average precision are numpy implementations that treat tied
scores as sklearn does (ties share an average rank; AP steps once per distinct score).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from logsieve.errors import DataError
from logsieve.verdict import anomalous

__all__ = [
    "HDFS_ANOMALOUS",
    "HDFS_NORMAL",
    "Metrics",
    "average_precision",
    "metrics",
    "project_metrics",
    "projected_hdfs",
    "roc_auc",
]

FloatArray = npt.NDArray[np.float64]
# HDFS's full labelled test population (../shared/data/README.md): the projection that
# makes figures on the dev sample comparable with the papers'.
HDFS_NORMAL, HDFS_ANOMALOUS = 553_366, 16_838


@dataclass(frozen=True)
class Metrics:
    """Detection figures at one threshold (anomaly = positive class)."""

    precision: float
    recall: float
    f1: float
    fpr: float
    roc_auc: float
    pr_auc: float
    tp: int
    fp: int
    fn: int
    tn: int
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _check(
    scores: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y_raw = np.asarray(labels).reshape(-1)
    if s.shape != y_raw.shape:
        raise DataError(f"scores ({s.size}) and labels ({y_raw.size}) differ in length")
    if not np.isin(y_raw, (0, 1)).all():
        raise DataError("labels must be 0 (normal) or 1 (anomalous)")
    return s, y_raw.astype(bool)


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    ``nan`` when only one class is present.
    """
    s, y = _check(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # Average rank (1-based) over each run of equal scores.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Average precision, ``Σ (Rₙ - Rₙ₋₁)·Pₙ`` over the distinct score thresholds.

    Tied scores form one step (as sklearn's ``average_precision_score``); ``nan`` when
    there is no positive.
    """
    s, y = _check(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_desc, y_desc = s[order], y[order]
    # Last index of each run of equal scores: the cut points of the PR curve (compared,
    # not subtracted: windows with unseen templates score +inf, and inf - inf is nan).
    cut = np.r_[np.nonzero(s_desc[1:] != s_desc[:-1])[0], len(s_desc) - 1]
    tp = np.cumsum(y_desc)[cut].astype(np.float64)
    precision = tp / (cut + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def metrics(scores: npt.ArrayLike, labels: npt.ArrayLike, threshold: float) -> Metrics:
    """Precision, recall, F1, FPR, ROC-AUC, PR-AUC and the confusion counts.

    A window is predicted anomalous when ``score > threshold``; labels are 1 for
    anomalous. Precision is 0 when nothing is flagged.
    """
    s, y = _check(scores, labels)
    pred = anomalous(s, threshold)
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    tn = int(np.sum(~pred & ~y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return Metrics(
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        fpr=fp / (fp + tn) if fp + tn else 0.0,
        roc_auc=roc_auc(s, y.astype(np.int64)),
        pr_auc=average_precision(s, y.astype(np.int64)),
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        threshold=float(threshold),
    )


def project_metrics(m: Metrics, n_normal: int, n_anomalous: int) -> dict[str, float]:
    """Precision/recall/F1 at another class ratio, from the measured FPR and recall.

    For a sample of a larger test set (HDFS: 553,366 normal, 16,838 anomalous sessions):
    ``FP = FPR·n_normal``, ``TP = recall·n_anomalous``.
    """
    tp = m.recall * n_anomalous
    fp = m.fpr * n_normal
    precision = tp / (tp + fp) if tp + fp else 0.0
    return {"precision": precision, "recall": m.recall, "f1": _f1(precision, m.recall),
            "tp": tp, "fp": fp}  # fmt: skip


def projected_hdfs(m: Metrics) -> dict[str, Any]:
    """:func:`project_metrics` to HDFS's full test population, with its counts."""
    p = project_metrics(m, HDFS_NORMAL, HDFS_ANOMALOUS)
    return {**p, "n_normal": HDFS_NORMAL, "n_anomalous": HDFS_ANOMALOUS}
