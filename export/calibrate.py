"""Scoring, label-free threshold calibration, and evaluation metrics.

The threshold comes from normal validation scores only (:func:`threshold_from_normal`);
labels appear in :func:`metrics` alone, which reports how a chosen threshold does.

A window is flagged when ``score > threshold`` (strictly). HDFS-like data repeats the
same normal window many times, so validation scores have plateaus of identical values
(on HDFS one normal session shape is 4% of the validation windows and sits right at
the 99% quantile); the threshold is an observed validation score nudged just above
float noise, so a plateau that the quantile lands on is never flagged, and the
false-positive rate is governed by the distinct scores *above* it.

ROC-AUC and average precision are numpy implementations that treat tied scores as
sklearn does (ties share an average rank; AP steps once per distinct score).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from logsieve.errors import ConfigError, DataError
from logsieve.logs.vocab import pad_batch

from .model import Discriminator

__all__ = [
    "TIE_RTOL",
    "Metrics",
    "average_precision",
    "metrics",
    "project_metrics",
    "roc_auc",
    "score_sequences",
    "threshold_from_normal",
]

FloatArray = npt.NDArray[np.float64]

# Relative margin that makes float noise in a window's score not count as "above".
TIE_RTOL = 1e-5


@torch.no_grad()
def score_sequences(
    model: Discriminator,
    seqs: Sequence[npt.NDArray[np.int64]],
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> FloatArray:
    """Anomaly score (``[CLS]`` norm) of every sequence, in input order, float64 ``[N]``.

    Batches are built over the sequences sorted by length, so a short window is never
    padded to a long one; results are scattered back to input order.
    """
    if batch_size < 1:
        raise ConfigError("batch_size", batch_size, "an integer >= 1")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = np.empty(len(seqs), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, lengths = pad_batch([seqs[i] for i in idx])
        norms = model.cls_norm(torch.from_numpy(ids).to(dev), torch.from_numpy(lengths).to(dev))
        out[idx] = norms.double().cpu().numpy()
    model.train(was_training)
    return out


def threshold_from_normal(
    scores: npt.ArrayLike, quantile: float = 0.99, tie_rtol: float = TIE_RTOL
) -> float:
    """The ``quantile`` of normal validation scores, as an observed score, nudged past ties.

    The quantile is numpy's ``inverted_cdf`` (the smallest validation score with at least
    ``quantile`` of the scores at or below it), so at most ``1 - quantile`` of the
    validation windows score above the threshold. Windows are flagged when
    ``score > threshold``; the threshold is raised by ``tie_rtol`` (relative) so that
    a window *identical* to the validation window at the quantile is not flagged
    because of float noise: the same window scores differently in the last bits
    depending on the batch it is padded into (measured: ~5e-8 absolute on HDFS, FP32
    CPU), and HDFS-like data puts many identical normal windows exactly there.
    Engines with more noise (FP16) should calibrate on their own scores.
    """
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise DataError("threshold_from_normal: no validation scores")
    if not np.all(np.isfinite(arr)):
        raise DataError("threshold_from_normal: validation scores contain NaN or inf")
    if not isinstance(quantile, (int, float)) or not 0.0 <= quantile <= 1.0:
        raise ConfigError("quantile", quantile, "a float in [0, 1]")
    if not isinstance(tie_rtol, (int, float)) or not 0.0 <= tie_rtol < 0.01:
        raise ConfigError("tie_rtol", tie_rtol, "a float in [0, 0.01)")
    base = float(np.quantile(arr, quantile, method="inverted_cdf"))
    return base + abs(base) * tie_rtol


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
    pred = s > threshold
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
