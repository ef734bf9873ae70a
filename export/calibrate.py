"""The label-free threshold rule every detector calibrates with.

The threshold comes from normal validation scores only (:func:`threshold_from_normal`);
a window (or line) is an anomaly when ``score > threshold``
(:func:`logsieve.verdict.is_anomaly`, the one place that rule is written).

HDFS-like data repeats the same normal window many times, so validation scores have
plateaus of identical values (on HDFS one normal session shape is 4% of the validation
windows and sits right at the 99% quantile); the threshold is an observed validation
score nudged just above float noise, so a plateau that the quantile lands on is never
flagged, and the false-positive rate is governed by the distinct scores *above* it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from logsieve.errors import ConfigError, DataError

__all__ = ["DEFAULT_QUANTILE", "TIE_RTOL", "threshold_from_normal"]

# FastLogAD's default threshold: the maximum of the normal validation scores (q1.0).
# The quantile sets the alert rate on normal windows: about 1 - q of them score above
# it. HDFS has 553,366 normal sessions to 16,838 anomalous, so the paper's q0.99 lets
# ~5,500 normal sessions through and caps precision at 0.75 even at full recall
# (projected F1 0.870 +- 0.040 over 3 seeds, bench/RESULTS.md); the maximum gave 0.936
# +- 0.016. A validation part of a few hundred windows cannot resolve a rate finer than
# its maximum, so q1.0 is "as few false alarms as the validation data can promise".
DEFAULT_QUANTILE = 1.0

# Relative margin that makes float noise in a window's score not count as "above".
TIE_RTOL = 1e-5


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
