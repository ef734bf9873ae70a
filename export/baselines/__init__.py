"""Baseline detectors we compare FastLogAD against: DeepLog, LogBERT, Drain + IsolationForest.

All share :class:`~logsieve.export.baselines.base.Baseline`: ``fit(train, validation)`` on
normal windows, ``score`` (higher = more anomalous), a label-free ``threshold`` and
``predict``. :func:`oracle_threshold` (best F1 on labelled test data) is kept apart and
always reported as an oracle.
"""

from __future__ import annotations

from logsieve.export.baselines.base import (
    Baseline,
    OracleChoice,
    oracle_threshold,
    score_chunked,
    select_threshold,
)
from logsieve.export.baselines.deeplog import DeepLog, DeepLogConfig
from logsieve.export.baselines.iforest import IForest, IForestConfig
from logsieve.export.baselines.logbert import LogBERT, LogBERTConfig

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
