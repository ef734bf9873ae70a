"""Baseline detectors we compare FastLogAD against: DeepLog, LogBERT, Drain + IsolationForest.

All share :class:`~logsieve.export.baselines.base.Baseline`: ``fit(train, validation)`` on
normal windows, ``score`` (higher = more anomalous), a label-free ``threshold`` and
``predict``. :func:`oracle_threshold` (best F1 on labelled test data) is kept apart and
always reported as an oracle.
"""

from __future__ import annotations

from .base import Baseline, OracleChoice, oracle_threshold, score_chunked, select_threshold
from .deeplog import DeepLog, DeepLogConfig
from .iforest import IForest, IForestConfig
from .logbert import LogBERT, LogBERTConfig

__all__ = [
    "Baseline",
    "DeepLog",
    "DeepLogConfig",
    "IForest",
    "IForestConfig",
    "LogBERT",
    "LogBERTConfig",
    "OracleChoice",
    "oracle_threshold",
    "score_chunked",
    "select_threshold",
]
