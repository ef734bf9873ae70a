"""Closed windows → engine → :class:`~.flags.ScoredWindow`: the serving side of scoring.

This is the same computation as offline scoring (``logsieve.export.fastlogad``'s
``_score_batch``), so a window gets the same verdict in both places:

* each window's template ids are encoded with the bundle's vocabulary, ``max_len``
  and ``truncate`` policy (a long window becomes several ``[CLS]``-prefixed chunks);
* every chunk is scored; the window's score is the **max over its chunks** and it is
  an anomaly when ``score > threshold``;
* token ``j >= 1`` of a chunk is the next line of the window (chunks are consecutive),
  so the per-token replaced probabilities line up with the window's lines and serve
  as the per-line evidence. Lines a ``recent`` truncation cut off get probability 0.

It differs only in batching: chunks go through :func:`logsieve.engine.score_windows`
(length bucketing) rather than one batch padded to its longest chunk; padding is
masked, so scores agree to float rounding (the train/serve parity test checks the
verdicts). Runs in a worker thread: nothing here touches the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from logsieve.config import LogConfig
from logsieve.engine import Engine, score_windows
from logsieve.logs.pipeline import Event
from logsieve.logs.vocab import Vocab
from logsieve.logs.windows import Window

from .flags import ScoredWindow

__all__ = ["WindowScorer"]

UNKNOWN_TEMPLATE = "[UNK]"


@dataclass(frozen=True)
class WindowScorer:
    """Scores closed windows with one engine and one bundle's vocabulary and threshold."""

    engine: Engine
    vocab: Vocab
    log_config: LogConfig
    threshold: float
    batch_size: int = 256

    def template_text(self, template_id: int) -> str:
        """The template of ``template_id`` as the vocabulary names it (``[UNK]`` if none)."""
        names = self.vocab.templates
        if template_id < 0:
            return UNKNOWN_TEMPLATE
        return names[template_id] if names and template_id < len(names) else f"T{template_id}"

    def score(self, windows: Sequence[Window[Event]]) -> list[ScoredWindow]:
        """One :class:`ScoredWindow` per window, in order (empty input: no engine call)."""
        if not windows:
            return []
        cfg = self.log_config
        chunks = [
            self.vocab.encode([e.template_id for e in w.items], cfg.max_len, cfg.truncate)
            for w in windows
        ]
        flat = [c for cs in chunks for c in cs]
        scores, probs = score_windows(self.engine, flat, self.batch_size)
        out: list[ScoredWindow] = []
        row = 0
        for w, cs in zip(windows, chunks, strict=True):
            rows = range(row, row + len(cs))
            row += len(cs)
            score = float(max(scores[r] for r in rows))
            per_line = np.concatenate([probs[r][1:] for r in rows]).astype(float).tolist()
            # `recent` keeps only the tail: the cut-off head lines had no say in the score.
            missing = len(w.items) - len(per_line)
            per_line = [0.0] * missing + per_line if missing > 0 else per_line[: len(w.items)]
            out.append(
                ScoredWindow(
                    key=w.key,
                    start=w.start,
                    end=w.end,
                    lines=[e.text for e in w.items],
                    template_ids=[e.template_id for e in w.items],
                    templates=[self.template_text(e.template_id) for e in w.items],
                    score=score,
                    threshold=self.threshold,
                    token_probs=per_line,
                )
            )
        return out
