"""Log formats the CLI knows: how to read a file of each, and its default settings.

``hdfs``: raw HDFS lines, sessions keyed by block id. ``bgl`` / ``thunderbird``: raw
lines of those systems, 5 min / 1 min and 1 min / 30 s sliding windows per node.
``lines``: any text log described by a regex with named groups ``time``, ``host``
and ``text``, sliding 5 min / 1 min windows per host; its time format is detected or
given (:mod:`logsieve.logs.timeparse`).

The format a bundle was trained on is stored in its log config
(:class:`~logsieve.config.LineFormat`), so scoring and serving need no ``--pattern``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from logsieve.config import LINE_FORMATS, LineFormat, LogConfig, TemplateConfig, WindowConfig
from logsieve.errors import ConfigError, DataError
from logsieve.export.data.datasets import (
    ReadStats,
    read_bgl_raw,
    read_hdfs_raw,
    read_thunderbird_raw,
)
from logsieve.export.data.readers import read_format
from logsieve.logs.keys import window_preset
from logsieve.logs.lineformat import LineParser
from logsieve.logs.records import LogRecord

__all__ = [
    "FORMATS",
    "check_parsed",
    "default_log_config",
    "line_format_for",
    "read_records",
]

FORMATS = LINE_FORMATS

# Drain settings per format: the authors' HDFS setting; for BGL and Thunderbird the best
# grouping accuracy of our grid on the loghub 2k samples (tests/logs/test_templates.py).
_TEMPLATES = {
    "hdfs": TemplateConfig(depth=5, sim_th=0.5),
    "bgl": TemplateConfig(depth=4, sim_th=0.4),
    "thunderbird": TemplateConfig(depth=5, sim_th=0.6),
    "lines": TemplateConfig(),
}
# Training refuses a file where more than this share of lines did not parse.
MAX_BAD_SHARE = 0.5


def default_log_config(fmt: str) -> LogConfig:
    """The built-in :class:`LogConfig` of a format (``lines``: no line format yet, its
    pattern comes from the CLI or the config's ``[log.line_format]``)."""
    if fmt not in FORMATS:
        raise ConfigError("format", fmt, f"one of {', '.join(FORMATS)}")
    if fmt == "lines":
        windows = WindowConfig(kind="sliding", key_regex=None, size=300.0, step=60.0)
        return LogConfig(templates=_TEMPLATES[fmt], windows=windows)
    return LogConfig(
        templates=_TEMPLATES[fmt], windows=window_preset(fmt), line_format=LineFormat(fmt)
    )


def line_format_for(
    fmt: str | None,
    *,
    pattern: str | None = None,
    time_format: str | None = None,
    stored: LineFormat | None = None,
) -> LineFormat:
    """The line format to read with: ``fmt`` with the CLI's ``pattern``/``time_format``,
    falling back on ``stored`` (a config's or a bundle's) for what they leave out.

    ``fmt`` ``None`` means the stored format.
    """
    name = fmt or (stored.name if stored is not None else None)
    if name is None:
        raise ConfigError("format", fmt, f"one of {', '.join(FORMATS)}")
    if name not in FORMATS:
        raise ConfigError("format", name, f"one of {', '.join(FORMATS)}")
    if name != "lines":
        if pattern is not None:
            raise ConfigError("pattern", pattern, "only with --format lines")
        if time_format is not None:
            raise ConfigError("time_format", time_format, "only with --format lines")
        return LineFormat(name)
    same = stored if stored is not None and stored.name == "lines" else None
    if not pattern and same is None:
        raise ConfigError(
            "pattern", pattern, "a regex with named groups time/host/text (--pattern)"
        )
    if not pattern:
        assert same is not None
        return replace(same, time_format=time_format or same.time_format)
    # A new pattern with no time format of its own: detect (the stored one read another
    # pattern's time group).
    zone = same.timezone if same is not None else "UTC"
    return LineFormat("lines", pattern, time_format, zone)


def read_records(
    path: Path,
    fmt: str | LineFormat,
    *,
    pattern: str | None = None,
    time_format: str | None = None,
    stats: ReadStats | None = None,
    parser: LineParser | None = None,
) -> Iterator[LogRecord]:
    """Stream the records of a log file in file order.

    ``fmt``: a format name (with ``pattern``/``time_format`` for ``lines``) or a
    :class:`LineFormat`; ``parser``: read through this one instead (to learn the
    time format it detected afterwards, ``parser.resolved()``).
    """
    if parser is None:
        lf = fmt if isinstance(fmt, LineFormat) else None
        if lf is None:
            assert isinstance(fmt, str)
            lf = line_format_for(fmt, pattern=pattern, time_format=time_format)
        if lf.name == "hdfs":
            return read_hdfs_raw(path, stats=stats)
        if lf.name == "bgl":
            return read_bgl_raw(path, stats=stats)
        if lf.name == "thunderbird":
            return read_thunderbird_raw(path, stats=stats)
        parser = LineParser(lf)
    return read_format(path, parser, stats=stats)


def check_parsed(stats: ReadStats, path: Path) -> None:
    """:class:`DataError` naming the first bad line when most lines of ``path`` did not
    parse (layout mismatch or unreadable time): training on them would mine templates
    from whole lines and date windows wrongly, silently."""
    bad = stats.unparsed + stats.bad_time
    if stats.records and bad > MAX_BAD_SHARE * stats.records:
        raise DataError(
            f"{path}: {bad} of {stats.records} lines did not parse "
            f"(unparsed={stats.unparsed}, bad_time={stats.bad_time}); first: {stats.first_bad}"
        )
