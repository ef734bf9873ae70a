"""Where the serving pipeline's new-template bookkeeping leaves the process.

The :class:`~logsieve.logs.novelty.NoveltyTracker` decides (in the line pipeline); this
sends its new-pattern records upstream on ``pattern_tag``, turns its decision counters
into ``/metrics`` increments, and keeps its patterns in ``novelty_state`` across
restarts (read at start, written atomically every ``novelty_save_interval`` seconds
and at shutdown).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from logsieve.errors import ConfigError, LogsieveError
from logsieve.logs.novelty import NoveltyTracker

from .pipeline_config import PipelineConfig
from .pipeline_metrics import PipelineMetrics

if TYPE_CHECKING:
    from .pipeline import FlagSender

__all__ = ["NoveltyOutlet"]

log = logging.getLogger(__name__)


class NoveltyOutlet:
    """New-pattern records, decision counters and the state file of one tracker
    (``tracker`` None: unseen templates are not tracked, everything is a no-op)."""

    def __init__(
        self,
        config: PipelineConfig,
        tracker: NoveltyTracker | None,
        upstream: FlagSender,
        metrics: PipelineMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.tracker = tracker
        self.upstream = upstream
        self.metrics = metrics
        self._clock = clock
        self._counted: dict[str, int] = {}
        self._saved_at = clock()

    @property
    def patterns(self) -> int:
        """New patterns tracked now (a gauge)."""
        return len(self.tracker.patterns) if self.tracker is not None else 0

    async def send(self) -> None:
        """Send the new-pattern records the last judgements produced; count decisions."""
        tracker = self.tracker
        if tracker is None:
            return
        for report in tracker.reports():
            await self.upstream.send(self.config.pattern_tag, report)
            self.metrics.sent.labels(kind="pattern").inc()
        for name, value in tracker.counts.items():
            delta = value - self._counted.get(name, 0)
            if delta:
                self.metrics.novelty.labels(decision=name).inc(delta)
                self._counted[name] = value

    def load(self) -> None:
        """Restore the patterns from ``novelty_state``; an unreadable file is a
        :class:`ConfigError` naming it (a missing one is a first start)."""
        path, tracker = self.config.novelty_state, self.tracker
        if path is None or tracker is None or not os.path.exists(path):
            return
        try:
            with open(path, encoding="utf-8") as f:
                state: Any = json.load(f)
            tracker.load_state(state)
        except (OSError, ValueError, LogsieveError) as exc:
            raise ConfigError(
                "pipeline.novelty_state", path, f"a readable novelty state file ({exc})"
            ) from None
        log.info("novelty state: %d new patterns loaded from %s", len(tracker.patterns), path)

    def save_due(self) -> None:
        """:meth:`save` when ``novelty_save_interval`` has passed since the last one."""
        if self._clock() - self._saved_at >= self.config.novelty_save_interval:
            self.save()

    def save(self) -> None:
        """Write the patterns to ``novelty_state`` (atomically; no-op without one)."""
        path, tracker = self.config.novelty_state, self.tracker
        self._saved_at = self._clock()
        if path is None or tracker is None:
            return
        tmp = f"{path}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(tracker.state(), f)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("novelty state not saved to %s: %s", path, exc)
