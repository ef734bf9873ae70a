"""Offline inspection of a log file: mine its templates, or cut it into windows.

The library side of ``logsieve templates`` and ``logsieve windows``: both walk the same
record → template → window path that training and serving use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logsieve.config import LogConfig
from logsieve.export.data.datasets import ReadStats
from logsieve.export.data.formats import line_format_for, read_records
from logsieve.logs.pipeline import Event, windows_of
from logsieve.logs.templates import TemplateMatcher, TemplateMiner
from logsieve.logs.windows import Window

__all__ = ["FileTemplates", "mine_file", "window_file"]


@dataclass
class FileTemplates:
    """What mining one file found: the miner (templates, state) and read counters."""

    miner: TemplateMiner
    stats: ReadStats

    def state(self) -> dict[str, Any]:
        return self.miner.state()


def mine_file(
    path: Path,
    fmt: str,
    config: LogConfig,
    *,
    pattern: str | None = None,
    time_format: str | None = None,
) -> FileTemplates:
    """Mine templates over every line of ``path`` (``lines``: ``pattern`` and
    ``time_format`` default to the config's ``line_format``)."""
    stats = ReadStats()
    miner = TemplateMiner(config.masking, config.templates)
    lf = line_format_for(fmt, pattern=pattern, time_format=time_format, stored=config.line_format)
    for record in read_records(path, lf, stats=stats):
        miner.add(record.text)
    return FileTemplates(miner, stats)


def window_file(
    path: Path,
    fmt: str,
    config: LogConfig,
    *,
    pattern: str | None = None,
    time_format: str | None = None,
    matcher: TemplateMatcher | None = None,
) -> Iterator[Window[Event]]:
    """Windows of ``path`` in closing order. Without a ``matcher`` (e.g. from a bundle),
    templates are first mined over the file itself, in a first pass."""
    lf = line_format_for(fmt, pattern=pattern, time_format=time_format, stored=config.line_format)
    if matcher is None:
        state = mine_file(path, lf.name, config, pattern=lf.pattern, time_format=lf.time_format)
        matcher = TemplateMatcher.from_state(state.state())
    return windows_of(read_records(path, lf), config, matcher)
