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

:class:`WindowEngine` is the one interface the pipeline and offline scoring use to get
those scores: :class:`LocalWindowEngine` runs it in this process (one worker thread for
the event-loop form), :class:`~logsieve.engine.worker.EngineWorker` in a child process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

import numpy as np

from logsieve.bundle import Bundle
from logsieve.config import LogConfig
from logsieve.errors import BundleError
from logsieve.logs.vocab import UNSEEN_SCORE, Vocab, holds_unknown

from .base import Engine, EngineInfo
from .batching import score_windows

__all__ = ["LocalWindowEngine", "Scored", "WindowEngine", "score_template_windows"]

Scored = list[tuple[float, list[float]]]  # (window score, per-line probabilities) per window


@runtime_checkable
class WindowEngine(Protocol):
    """Scores windows of template ids with one bundle's vocabulary and settings.

    The serving pipeline and offline scoring hold one of these and nothing else; where
    the engine runs (this process, a child process) is the implementation's business.
    """

    info: EngineInfo

    @property
    def restarts(self) -> int:
        """Times the engine was started again after dying (0 for an in-process engine)."""
        ...

    def score_ids(self, windows: Sequence[Sequence[int]]) -> Scored:
        """``(score, per-line probabilities)`` per window, in order (blocking)."""
        ...

    async def score_ids_async(self, windows: Sequence[Sequence[int]]) -> Scored:
        """:meth:`score_ids` without blocking the event loop; one call at a time."""
        ...

    def close(self) -> None:
        """Release the engine (idempotent)."""
        ...


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
    if not all(windows):
        # A window with no line to score (all its lines new templates, judged by
        # logsieve.logs.novelty instead) never reaches the engine.
        scored = iter(score_template_windows(engine, vocab, config, [w for w in windows if w]))
        return [next(scored) if w else (0.0, []) for w in windows]
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


class LocalWindowEngine:
    """A :class:`WindowEngine` over an :class:`Engine` in this process.

    The event-loop form runs the engine in one worker thread: engine calls are serial,
    and the engine owns its own threads.
    """

    def __init__(
        self, engine: Engine, vocab: Vocab, config: LogConfig, batch_size: int = 256
    ) -> None:
        self.engine = engine
        self.info = engine.info
        self.vocab = vocab
        self.config = config
        self.batch_size = batch_size
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def for_bundle(cls, engine: Engine, bundle: Bundle, batch_size: int = 256) -> LocalWindowEngine:
        """Over ``bundle``'s vocabulary and log settings."""
        if bundle.vocab is None:
            raise BundleError(
                f"{bundle.path}: trained on pre-parsed template ids, it has no vocabulary "
                "to encode windows of raw lines"
            )
        return cls(engine, bundle.vocab, bundle.log_config, batch_size)

    @property
    def restarts(self) -> int:
        return 0

    def score_ids(self, windows: Sequence[Sequence[int]]) -> Scored:
        return score_template_windows(
            self.engine, self.vocab, self.config, windows, self.batch_size
        )

    async def score_ids_async(self, windows: Sequence[Sequence[int]]) -> Scored:
        if not windows:
            return []
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="logsieve-engine")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.score_ids, windows)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
