"""Score windows of template ids: the one computation offline scoring and the server share.

* each window's template ids are encoded with the bundle's vocabulary, ``max_len`` and
  ``truncate`` policy (a long window becomes several ``[CLS]``-prefixed chunks, or only
  its most recent part is kept);
* every chunk is scored through :func:`~logsieve.engine.batching.score_windows`; the
  window's score is the **max over its chunks** (it is an anomaly when
  ``score > threshold``);
* token ``j >= 1`` of a chunk is the next line of the window (chunks are consecutive), so
  the per-token replaced probabilities line up with the window's lines and are the
  per-line evidence. Lines a ``recent`` truncation cut off get probability 0: they had
  no say in the score.
* with ``config.unseen_templates == "flag"`` a window holding ``[UNK]`` (a template the
  training data never had) scores ``UNSEEN_SCORE`` (+inf): an anomaly at any threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from logsieve.config import LogConfig
from logsieve.logs.vocab import UNSEEN_SCORE, Vocab, holds_unknown

from .base import Engine
from .batching import score_windows

__all__ = ["score_template_windows"]


def score_template_windows(
    engine: Engine,
    vocab: Vocab,
    config: LogConfig,
    windows: Sequence[Sequence[int]],
    batch_size: int = 256,
) -> list[tuple[float, list[float]]]:
    """``(score, per-line probabilities)`` for each window of template ids, in order."""
    if not windows:
        return []
    chunks = [vocab.encode(list(ids), config.max_len, config.truncate) for ids in windows]
    scores, probs = score_windows(engine, [c for cs in chunks for c in cs], batch_size)
    out: list[tuple[float, list[float]]] = []
    row = 0
    for ids, cs in zip(windows, chunks, strict=True):
        rows = range(row, row + len(cs))
        row += len(cs)
        per_line = np.concatenate([probs[r][1:] for r in rows]).astype(float).tolist()
        missing = len(ids) - len(per_line)
        per_line = [0.0] * missing + per_line if missing > 0 else per_line[: len(ids)]
        score = float(max(scores[r] for r in rows))
        if config.unseen_templates == "flag" and holds_unknown(cs):
            score = UNSEEN_SCORE
        out.append((score, per_line))
    return out
