"""Readers for raw log lines: HDFS, BGL, Thunderbird, and any format via a regex.

The line parsing itself lives in :mod:`logsieve.logs.lineformat` (serving applies the
same parser to raw lines it receives); this module streams files through it and counts.

All readers stream (line by line through :func:`export.data.lines.iter_lines`), keep
file order, and never raise on a line that does not fit the format: such a line
is yielded as ``LogRecord(time=None, host=None, text=<whole line>)`` and counted
in ``stats.unparsed`` — unless ``strict=True``, where it raises
:class:`DataError` naming ``file:line``. Labels read here exist for evaluation
only; training goes through :func:`export.data.datasets.normal_only`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from logsieve.config import LineFormat
from logsieve.errors import DataError
from logsieve.export.data.lines import DEFAULT_MAX_LINE_BYTES, ReadStats, iter_lines
from logsieve.logs.lineformat import (
    HDFS_BLOCK_RE,
    LineParser,
    hdfs_block_ids,
    parse_bgl_line,
    parse_hdfs_line,
    parse_thunderbird_line,
)
from logsieve.logs.records import LogRecord

__all__ = [
    "HDFS_BLOCK_RE",
    "hdfs_block_ids",
    "parse_bgl_line",
    "parse_hdfs_line",
    "parse_thunderbird_line",
    "read_bgl_raw",
    "read_bgl_raw_with_category",
    "read_format",
    "read_hdfs_raw",
    "read_lines",
    "read_thunderbird_raw",
    "read_thunderbird_raw_with_category",
]


def _fail(path: str | Path, lineno: int, what: str, line: str) -> DataError:
    return DataError(f"{path}:{lineno}: not a {what} line: {line[:120]!r}")


def _note_bad(st: ReadStats, path: str | Path, lineno: int, what: str, line: str) -> None:
    """Remember the first line that did not parse (training's error names it)."""
    if st.first_bad is None:
        st.first_bad = f"{path}:{lineno}: {what}: {line[:120]!r}"


def read_hdfs_raw(
    path: str | Path,
    *,
    stats: ReadStats | None = None,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[LogRecord]:
    """Stream raw HDFS lines as :class:`LogRecord` (see :func:`parse_hdfs_line`)."""
    st = stats if stats is not None else ReadStats()
    for lineno, line in iter_lines(path, st, max_line_bytes=max_line_bytes):
        rec = parse_hdfs_line(line)
        if rec is None:
            if strict:
                raise _fail(path, lineno, "HDFS", line)
            st.unparsed += 1
            _note_bad(st, path, lineno, "not a HDFS line", line)
            rec = LogRecord(time=None, host=None, text=line, label=None)
        st.records += 1
        yield rec


def _read_labelled(
    path: str | Path,
    parse: Callable[[str], tuple[LogRecord, str | None] | None],
    what: str,
    st: ReadStats,
    strict: bool,
    max_line_bytes: int,
) -> Iterator[tuple[LogRecord, str | None]]:
    for lineno, line in iter_lines(path, st, max_line_bytes=max_line_bytes):
        got = parse(line)
        if got is None:
            if strict:
                raise _fail(path, lineno, what, line)
            st.unparsed += 1
            _note_bad(st, path, lineno, f"not a {what} line", line)
            # The first field is the label even on a mangled line: keeping it
            # stops a broken alert line from silently counting as normal.
            first = line.split(None, 1)[0]
            cat = None if first == "-" else first
            got = LogRecord(None, None, line, 0 if cat is None else 1), cat
        st.records += 1
        yield got


def read_bgl_raw_with_category(
    path: str | Path,
    *,
    stats: ReadStats | None = None,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[tuple[LogRecord, str | None]]:
    """Stream raw BGL lines as ``(record, alert category or None)``."""
    st = stats if stats is not None else ReadStats()
    return _read_labelled(path, parse_bgl_line, "BGL", st, strict, max_line_bytes)


def read_bgl_raw(
    path: str | Path,
    *,
    stats: ReadStats | None = None,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[LogRecord]:
    """Stream raw BGL lines as :class:`LogRecord` (see :func:`parse_bgl_line`)."""
    for rec, _cat in read_bgl_raw_with_category(
        path, stats=stats, strict=strict, max_line_bytes=max_line_bytes
    ):
        yield rec


def read_thunderbird_raw_with_category(
    path: str | Path,
    *,
    stats: ReadStats | None = None,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[tuple[LogRecord, str | None]]:
    """Stream raw Thunderbird lines as ``(record, alert category or None)``."""
    st = stats if stats is not None else ReadStats()
    return _read_labelled(path, parse_thunderbird_line, "Thunderbird", st, strict, max_line_bytes)


def read_thunderbird_raw(
    path: str | Path,
    *,
    stats: ReadStats | None = None,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[LogRecord]:
    """Stream raw Thunderbird lines as :class:`LogRecord` (see :func:`parse_thunderbird_line`)."""
    for rec, _cat in read_thunderbird_raw_with_category(
        path, stats=stats, strict=strict, max_line_bytes=max_line_bytes
    ):
        yield rec


def read_lines(
    path: str | Path,
    pattern: str,
    *,
    time_format: str | None = None,
    timezone: str = "UTC",
    stats: ReadStats | None = None,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[LogRecord]:
    """Stream plain text lines, split by a user regex with optional named groups.

    ``pattern`` is matched at the start of each line (``re.match``); its
    optional groups ``time``, ``host`` and ``text`` fill the record (no
    ``text`` group, or a group that did not take part: the whole line). ``time``
    is read by :class:`~logsieve.logs.timeparse.TimeParser` with ``time_format``
    (``None``: detected from the first line that has one; naive times are in
    ``timezone``). A line that does not match yields ``LogRecord(None, None, line)``
    counted in ``stats.unparsed``; a time that will not parse gives ``time=None``
    counted in ``stats.bad_time``. ``label`` is always ``None``.

    Raises :class:`ConfigError` for a regex that does not compile.
    """
    fmt = LineFormat("lines", pattern, time_format, timezone)
    return read_format(
        path, LineParser(fmt), stats=stats, strict=strict, max_line_bytes=max_line_bytes
    )


def read_format(
    path: str | Path,
    parser: LineParser,
    *,
    stats: ReadStats | None = None,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[LogRecord]:
    """Stream the lines of ``path`` through ``parser`` (any :class:`LineFormat`).

    A line that does not fit yields ``LogRecord(None, None, line)`` counted in
    ``stats.unparsed``; a ``lines`` match whose time does not read gives ``time=None``
    counted in ``stats.bad_time``; the first of either is kept in
    ``stats.first_bad``. ``strict`` raises :class:`DataError` on a line that does not
    fit instead.
    Afterwards ``parser.resolved()`` holds the time format it detected.
    """
    st = stats if stats is not None else ReadStats()
    parse, expects_time = parser.parse, parser.expects_time
    what = parser.format.name
    pattern = parser.format.pattern
    for lineno, line in iter_lines(path, st, max_line_bytes=max_line_bytes):
        rec = parse(line)
        if rec is None:
            if strict:
                if pattern is not None:
                    raise DataError(
                        f"{path}:{lineno}: line does not match {pattern!r}: {line[:120]!r}"
                    )
                raise _fail(path, lineno, what, line)
            st.unparsed += 1
            why = f"not a {what} line" if pattern is None else f"does not match {pattern!r}"
            _note_bad(st, path, lineno, why, line)
            rec = LogRecord(time=None, host=None, text=line, label=None)
        elif expects_time and rec.time is None:
            st.bad_time += 1
            kind = parser.time.name if parser.time is not None else None
            _note_bad(st, path, lineno, f"time does not read (format {kind or 'auto'})", line)
        st.records += 1
        yield rec
