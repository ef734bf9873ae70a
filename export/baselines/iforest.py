"""Drain + IsolationForest (the loglizer baseline) on template-count vectors.

Windows arrive already parsed (Drain, in :mod:`logsieve.logs`) and encoded; each
becomes the vector of how often each template (and ``[UNK]``) occurs in it, and
scikit-learn's :class:`~sklearn.ensemble.IsolationForest` (100 trees) is fitted on the
normal training windows. Score = ``-score_samples`` (higher = more anomalous).

sklearn's ``contamination`` would set the threshold from the *training* scores by an
assumed anomaly share; instead the threshold is the ``quantile`` (99%) of the normal
validation scores through :func:`~logsieve.export.calibrate.threshold_from_normal`,
the same label-free rule as FastLogAD's.

Saving an sklearn forest needs pickle, which we never load. :meth:`IForest.save` keeps
the training count matrix instead and :meth:`IForest.load` refits on it: the same data
and ``random_state`` rebuild the same forest (fitting takes well under a second).

Known blind spot: a template never seen in training has a count column that is always
0 in training, so no tree ever splits on it; an unseen template only shows through the
other counts it displaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from sklearn.ensemble import IsolationForest

from logsieve.errors import BundleError, DataError
from logsieve.export.baselines.base import (
    Baseline,
    FloatArray,
    IdArray,
    build_config,
    check_float,
    check_int,
    read_payload,
    restore_thresholds,
    write_payload,
)
from logsieve.export.calibrate import threshold_from_normal
from logsieve.logs.vocab import N_SPECIAL, UNK

__all__ = ["IForest", "IForestConfig", "count_vectors"]


@dataclass(frozen=True)
class IForestConfig:
    """IsolationForest settings (loglizer's defaults: 100 trees, ``max_samples='auto'``).

    ``max_samples`` 0 means sklearn's ``'auto'`` (``min(256, n)``) and keeps the config
    plain JSON.
    """

    vocab_size: int
    n_estimators: int = 100
    max_samples: int = 0
    quantile: float = 0.99
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("iforest.vocab_size", self.vocab_size, N_SPECIAL + 1)
        check_int("iforest.n_estimators", self.n_estimators, 1)
        check_int("iforest.max_samples", self.max_samples, 0)
        check_int("iforest.seed", self.seed, 0)
        check_float("iforest.quantile", self.quantile, 0.0, 1.0, open_low=False)


def count_vectors(windows: Sequence[IdArray], vocab_size: int) -> npt.NDArray[np.float64]:
    """``(N, vocab_size - 3)`` counts of ``[UNK]`` and each template per window.

    ``[CLS]`` (and padding) carry no information; ids outside the vocabulary count as
    ``[UNK]``.
    """
    out = np.zeros((len(windows), vocab_size - UNK), dtype=np.float64)
    for i, w in enumerate(windows):
        keys = np.asarray(w, dtype=np.int64)[1:]
        keys = np.where((keys >= N_SPECIAL) & (keys < vocab_size), keys, UNK)
        out[i] = np.bincount(keys - UNK, minlength=vocab_size - UNK)
    return out


class IForest(Baseline):
    """IsolationForest on template counts; threshold = validation quantile of the score."""

    name = "iforest"

    def __init__(self, cfg: IForestConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.forest: IsolationForest | None = None
        self._train_counts = np.zeros((0, cfg.vocab_size - UNK))

    def _fit_forest(self, counts: npt.NDArray[np.float64]) -> None:
        self._train_counts = counts
        self.forest = IsolationForest(
            n_estimators=self.cfg.n_estimators,
            max_samples=self.cfg.max_samples or "auto",
            random_state=self.cfg.seed,
        ).fit(counts)

    def fit(self, train: Sequence[IdArray], validation: Sequence[IdArray]) -> None:
        """Fit the forest on normal ``train``; the threshold is the validation quantile."""
        if not len(train) or not len(validation):
            raise DataError("iforest.fit: needs training and validation windows")
        self._fit_forest(count_vectors(train, self.cfg.vocab_size))
        self.thresholds = {
            "validation": threshold_from_normal(self.score(validation), self.cfg.quantile)
        }
        self.threshold_rule = "validation"

    def score(self, windows: Sequence[IdArray]) -> FloatArray:
        """``-score_samples`` of each window's count vector."""
        if self.forest is None:
            raise RuntimeError("iforest: not fitted (call fit() or load())")
        if not len(windows):
            return np.zeros(0, dtype=np.float64)
        raw = self.forest.score_samples(count_vectors(windows, self.cfg.vocab_size))
        return np.asarray(-raw, dtype=np.float64)

    def save(self, path: str | Path) -> None:
        """Config, training counts and threshold; :meth:`load` refits (no pickle)."""
        extra = {"thresholds": self.thresholds, "threshold_rule": self.threshold_rule}
        state = {"train_counts": torch.from_numpy(self._train_counts)}
        write_payload(path, self.name, asdict(self.cfg), state, extra)

    @classmethod
    def load(cls, path: str | Path) -> IForest:
        """Inverse of :meth:`save`: refit on the saved counts with the saved seed."""
        payload = read_payload(path, cls.name)
        baseline = cls(build_config(IForestConfig, payload["config"], path))
        counts = payload["state_dict"].get("train_counts")
        width = baseline.cfg.vocab_size - UNK
        if not isinstance(counts, torch.Tensor) or counts.ndim != 2 or counts.shape[1] != width:
            raise BundleError(f"baseline {path}: train_counts missing or not (N, {width})")
        baseline._fit_forest(counts.double().numpy())
        restore_thresholds(baseline, payload["extra"], path)
        return baseline
