"""The interface every baseline implements, threshold rules, and the *oracle* helper.

A baseline is fitted on normal windows only (``fit(train, validation)``; there is no
label argument), scores windows continuously (higher = more anomalous) and carries a
``threshold`` chosen without labels. ``predict`` is the method's own verdict rule and is
always ``score > threshold`` (strictly), the convention of
:func:`logsieve.export.calibrate.metrics`: each baseline defines its score so that
this comparison *is* its paper's rule (DeepLog: ``score > g`` ⇔ some next key is
outside the top ``g``; LogBERT: ``score > r`` ⇔ more than ``r`` of the masked keys
miss the top ``g``).

Every label-free threshold a baseline knows is kept in ``thresholds`` (e.g. DeepLog's
``"validation"`` g and the paper's ``"paper"`` g = 9), so an evaluation reports each.

:func:`oracle_threshold` chooses a threshold by maximising F1 *on labelled test data*,
as the FastLogAD paper's Table 1 did for its baselines (LogBERT's repo picks its ratio
on the test set). It is an upper bound, not a detector setting: it lives outside the
classes, returns an :class:`OracleChoice` that says ``oracle=True`` in its label, and
never changes a baseline's ``threshold``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from logsieve.errors import BundleError, ConfigError, DataError
from logsieve.export.fastlogad.model import load_checkpoint

__all__ = [
    "BASELINE_FORMAT",
    "Baseline",
    "OracleChoice",
    "build_config",
    "check_float",
    "check_int",
    "oracle_threshold",
    "read_payload",
    "restore_thresholds",
    "score_chunked",
    "seeded",
    "select_threshold",
    "write_payload",
]

IdArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

C = TypeVar("C")

BASELINE_FORMAT = "logsieve.baseline/1"
ORACLE_LABEL = "oracle: threshold chosen for best F1 on the labelled test set (upper bound)"


def check_int(field: str, value: object, minimum: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an int (not bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(field, value, f"an integer >= {minimum}")


def check_float(field: str, value: object, low: float, high: float, *, open_low: bool) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a number in ``(low|[low, high]``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        assert isinstance(value, (int, float))
        ok = (low < value if open_low else low <= value) and value <= high
    if not ok:
        raise ConfigError(field, value, f"a float in {'(' if open_low else '['}{low}, {high}]")


class Baseline(ABC):
    """A detector fitted on normal windows, scoring ``[CLS]``-prefixed id windows.

    Windows are int64 arrays as :class:`~logsieve.export.data.prepare.Prepared` holds them
    (position 0 is ``[CLS]``); ids outside the fitted vocabulary count as ``[UNK]``.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self.thresholds: dict[str, float] = {}
        self.threshold_rule = ""

    @property
    def threshold(self) -> float:
        """The label-free threshold the config's rule chose; flag when ``score > threshold``."""
        if self.threshold_rule not in self.thresholds:
            raise RuntimeError(f"{self.name}: not fitted (call fit() or load())")
        return self.thresholds[self.threshold_rule]

    @abstractmethod
    def fit(self, train: Sequence[IdArray], validation: Sequence[IdArray]) -> None:
        """Train on normal ``train`` windows; choose thresholds on normal ``validation``."""

    @abstractmethod
    def score(self, windows: Sequence[IdArray]) -> FloatArray:
        """Anomaly score per window, float64 ``[N]`` in input order (higher = worse)."""

    def predict(self, windows: Sequence[IdArray]) -> BoolArray:
        """The method's verdict: ``True`` = anomalous."""
        return self.score(windows) > self.threshold

    def threshold_candidates(self, scores: npt.ArrayLike) -> FloatArray:
        """Thresholds that mean something for this method (what the oracle may pick from).

        Default: flag everything, or everything above one of the observed scores.
        """
        observed = np.unique(np.asarray(scores, dtype=np.float64))
        return np.concatenate([np.array([-np.inf]), observed])

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the fitted baseline with :func:`torch.save` (plain tensors and JSON)."""


def score_chunked(baseline: Baseline, windows: Sequence[Sequence[IdArray]]) -> FloatArray:
    """Score ``Prepared.test``-style windows (lists of chunks): the max over chunks.

    Each baseline's rule flags a window when any chunk breaks it, which is exactly
    ``max(chunk scores) > threshold``.
    """
    flat = [c for w in windows for c in w]
    owner = np.repeat(np.arange(len(windows)), [len(w) for w in windows])
    out = np.full(len(windows), -np.inf)
    if flat:
        np.maximum.at(out, owner, baseline.score(flat))
    return out


def select_threshold(val_scores: npt.ArrayLike, max_fpr: float, candidates: npt.ArrayLike) -> float:
    """Smallest candidate ``t`` whose false-positive rate ``mean(val > t)`` is ``<= max_fpr``.

    Label-free: ``val_scores`` are normal validation windows. For DeepLog the candidates
    are the integers ``g`` (smallest g with validation FPR ≤ 1%); for LogBERT the
    observed miss ratios (the ``1 - max_fpr`` quantile, ``inverted_cdf``).
    """
    val = np.sort(np.asarray(val_scores, dtype=np.float64).reshape(-1))
    if val.size == 0:
        raise DataError("select_threshold: no validation scores")
    cand = np.unique(np.asarray(candidates, dtype=np.float64))
    # Number of validation scores strictly above each candidate.
    above = val.size - np.searchsorted(val, cand, side="right")
    ok = np.nonzero(above <= max_fpr * val.size)[0]
    if ok.size == 0:
        return float(max(cand[-1], val[-1]))
    return float(cand[ok[0]])


@dataclass(frozen=True)
class OracleChoice:
    """A threshold picked by looking at the test labels. Report it as such, never deploy it."""

    threshold: float
    f1: float
    precision: float
    recall: float
    oracle: bool = True
    label: str = ORACLE_LABEL


def oracle_threshold(
    scores: npt.ArrayLike, labels: npt.ArrayLike, candidates: npt.ArrayLike | None = None
) -> OracleChoice:
    """ORACLE: the candidate threshold with the best F1 on labelled *test* data.

    ``candidates`` default to every observed score (and ``-inf``); pass
    ``baseline.threshold_candidates(scores)`` to stay within the method's own knob
    (DeepLog: integer g). Ties go to the smallest threshold.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape or s.size == 0:
        raise DataError(f"oracle_threshold: {s.size} scores and {y.size} labels")
    if not np.isin(y, (0, 1)).all():
        raise DataError("oracle_threshold: labels must be 0 (normal) or 1 (anomalous)")
    cand = np.unique(
        np.asarray(candidates if candidates is not None else np.r_[-np.inf, s], dtype=np.float64)
    )
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    tp = pos.size - np.searchsorted(pos, cand, side="right")
    fp = neg.size - np.searchsorted(neg, cand, side="right")
    precision = np.divide(tp, tp + fp, out=np.zeros(cand.size), where=tp + fp > 0)
    recall = tp / pos.size if pos.size else np.zeros(cand.size)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(cand.size), where=denom > 0)
    best = int(np.argmax(f1))
    return OracleChoice(
        float(cand[best]), float(f1[best]), float(precision[best]), float(recall[best])
    )


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Fork torch's global RNG, seed it and turn deterministic algorithms on.

    Model init and dropout draw from the global RNG; forking keeps the caller's stream
    untouched, so fitting a baseline never shifts anyone else's randomness.
    """
    det_before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(det_before)


def write_payload(
    path: str | Path,
    kind: str,
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    extra: dict[str, Any],
) -> None:
    """``torch.save`` of ``{format, kind, config, state_dict, extra}``; JSON-like values only."""
    payload = {
        "format": BASELINE_FORMAT,
        "kind": kind,
        "config": dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "extra": dict(extra),
    }
    torch.save(payload, Path(path))


def read_payload(path: str | Path, kind: str) -> dict[str, Any]:
    """Read a :func:`write_payload` file with ``weights_only=True`` (no code is unpickled)."""
    payload = load_checkpoint(path, BASELINE_FORMAT, "baseline")
    if payload.get("kind") != kind:
        raise BundleError(f"baseline {path}: a {payload.get('kind')!r} baseline, not {kind!r}")
    return payload


def build_config(cls: type[C], args: object, path: str | Path) -> C:
    """Rebuild a config dataclass from a saved dict; anything wrong is a :class:`BundleError`."""
    if not isinstance(args, dict):
        raise BundleError(f"baseline {path}: config is not a mapping")
    try:
        return cls(**args)
    except (ConfigError, TypeError) as exc:
        raise BundleError(f"baseline {path}: bad config ({exc})") from None


def restore_thresholds(baseline: Baseline, extra: object, path: str | Path) -> None:
    """Put back the ``thresholds`` and ``threshold_rule`` a :func:`write_payload` file kept."""
    if not isinstance(extra, dict):
        raise BundleError(f"baseline {path}: extra is not a mapping")
    thresholds, rule = extra.get("thresholds"), extra.get("threshold_rule")
    if not isinstance(thresholds, dict) or rule not in thresholds:
        raise BundleError(f"baseline {path}: no threshold for rule {rule!r}")
    baseline.thresholds = {str(k): float(v) for k, v in thresholds.items()}
    baseline.threshold_rule = str(rule)
