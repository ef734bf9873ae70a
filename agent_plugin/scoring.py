"""Closed windows → engine → :class:`~.flags.ScoredWindow`: the serving side of scoring.

The scores and per-line evidence come from :func:`logsieve.engine.windows.score_template_windows`,
the same function offline scoring (``logsieve score``) uses, so a window gets the same
verdict in both places (the train/serve parity test checks it). An in-process engine runs
in a worker thread; an engine process's reply is awaited on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from logsieve.config import LogConfig
from logsieve.engine import Engine
from logsieve.engine.windows import score_template_windows
from logsieve.logs.pipeline import Event
from logsieve.logs.vocab import Vocab
from logsieve.logs.windows import Window

from .engine_worker import EngineWorker
from .flags import ScoredWindow

__all__ = ["WindowScorer"]

UNKNOWN_TEMPLATE = "[UNK]"


@dataclass(frozen=True)
class WindowScorer:
    """Scores closed windows with one engine and one bundle's vocabulary and threshold.

    ``engine`` is an engine in this process, or an :class:`~.engine_worker.EngineWorker`
    that runs the same scoring function in a child process.
    """

    engine: Engine | EngineWorker
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
        ids = _ids(windows)
        if isinstance(self.engine, EngineWorker):
            return self._scored(windows, self.engine.score_ids(ids))
        scored = score_template_windows(
            self.engine, self.vocab, self.log_config, ids, self.batch_size
        )
        return self._scored(windows, scored)

    async def score_async(
        self, windows: Sequence[Window[Event]], executor: Executor
    ) -> list[ScoredWindow]:
        """:meth:`score` without blocking the event loop: an engine process's reply is
        awaited on the loop; an in-process engine runs in ``executor``."""
        if isinstance(self.engine, EngineWorker) and windows:
            return self._scored(windows, await self.engine.score_ids_async(_ids(windows)))
        return await asyncio.get_running_loop().run_in_executor(executor, self.score, windows)

    def _scored(
        self, windows: Sequence[Window[Event]], scored: list[tuple[float, list[float]]]
    ) -> list[ScoredWindow]:
        out: list[ScoredWindow] = []
        for w, (score, per_line) in zip(windows, scored, strict=True):
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


def _ids(windows: Sequence[Window[Event]]) -> list[list[int]]:
    return [[e.template_id for e in w.items] for w in windows]
