"""Readers for raw log lines: HDFS, BGL, Thunderbird, and any format via a regex.

All readers stream (line by line through :func:`export.data.lines.iter_lines`), keep
file order, and never raise on a line that does not fit the format: such a line
is yielded as ``LogRecord(time=None, host=None, text=<whole line>)`` and counted
in ``stats.unparsed`` — unless ``strict=True``, where it raises
:class:`DataError` naming ``file:line``. Labels read here exist for evaluation
only; training goes through :func:`export.data.datasets.normal_only`.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from logsieve.errors import ConfigError, DataError
from logsieve.export.data.lines import DEFAULT_MAX_LINE_BYTES, ReadStats, iter_lines
from logsieve.logs.records import LogRecord

__all__ = [
    "HDFS_BLOCK_RE",
    "hdfs_block_ids",
    "parse_bgl_line",
    "parse_hdfs_line",
    "parse_thunderbird_line",
    "read_bgl_raw",
    "read_bgl_raw_with_category",
    "read_hdfs_raw",
    "read_lines",
    "read_thunderbird_raw",
    "read_thunderbird_raw_with_category",
]

HDFS_BLOCK_RE = re.compile(r"blk_-?\d+")

# yymmdd -> epoch seconds of that UTC midnight; HDFS logs span few days, so the
# cache stays tiny and saves a timegm per line.
_DAY_CACHE: dict[str, float] = {}


def hdfs_block_ids(text: str) -> list[str]:
    """Distinct block ids (``blk_…``) in ``text``, in order of first appearance."""
    return list(dict.fromkeys(HDFS_BLOCK_RE.findall(text)))


def _hdfs_time(date: str, clock: str) -> float | None:
    if len(date) != 6 or len(clock) != 6 or not (date.isdigit() and clock.isdigit()):
        return None
    day = _DAY_CACHE.get(date)
    if day is None:
        yy, mm, dd = int(date[:2]), int(date[2:4]), int(date[4:])
        if not (1 <= mm <= 12 and 1 <= dd <= calendar.monthrange(2000 + yy, mm)[1]):
            return None
        day = float(calendar.timegm((2000 + yy, mm, dd, 0, 0, 0)))
        _DAY_CACHE[date] = day
    h, m, s = int(clock[:2]), int(clock[2:4]), int(clock[4:])
    if h > 23 or m > 59 or s > 60:
        return None
    return day + h * 3600 + m * 60 + s


def parse_hdfs_line(line: str) -> LogRecord | None:
    """Parse ``yymmdd hhmmss pid LEVEL component: content``; ``None`` if it does not fit.

    ``time`` is UTC epoch seconds (years are 20yy), ``text`` the content after
    the first ``": "`` following the component (the whole remainder when the
    line has no ``": "``), ``host`` and ``label`` ``None``.
    """
    parts = line.split(None, 4)
    if len(parts) < 5 or not parts[2].isdigit():
        return None
    t = _hdfs_time(parts[0], parts[1])
    if t is None:
        return None
    _component, sep, content = parts[4].partition(": ")
    return LogRecord(time=t, host=None, text=content if sep else parts[4], label=None)


def _unix_time(field: str) -> float | None:
    try:
        return float(int(field))
    except ValueError:
        return None


def parse_bgl_line(line: str) -> tuple[LogRecord, str | None] | None:
    """Parse a raw BGL line; ``(record, category)`` or ``None`` if it does not fit.

    Fields: label, unix time, date, node, timestamp, node, type, component,
    level, content. ``label`` is 0 when the first field is ``-``, else 1 and
    ``category`` is that field (e.g. ``KERNDTLB``). ``text`` is the content
    after the level field (empty when the line stops at the level).
    """
    parts = line.split(None, 9)
    if len(parts) < 9:
        return None
    t = _unix_time(parts[1])
    if t is None:
        return None
    cat = None if parts[0] == "-" else parts[0]
    text = parts[9] if len(parts) == 10 else ""
    return LogRecord(time=t, host=parts[3], text=text, label=0 if cat is None else 1), cat


def parse_thunderbird_line(line: str) -> tuple[LogRecord, str | None] | None:
    """Parse a raw Thunderbird line; ``(record, category)`` or ``None``.

    Fields: label, unix time, date, node, month, day, hh:mm:ss, location
    (``dn228/dn228``, ``src@tbird-sm1``), then the syslog message. ``text``
    starts at the program field (``crond(pam_unix)[2915]: session closed …``)
    because the program name is what tells the templates apart.
    """
    parts = line.split(None, 8)
    if len(parts) < 9:
        return None
    t = _unix_time(parts[1])
    if t is None:
        return None
    cat = None if parts[0] == "-" else parts[0]
    return LogRecord(time=t, host=parts[3], text=parts[8], label=0 if cat is None else 1), cat


def _fail(path: str | Path, lineno: int, what: str, line: str) -> DataError:
    return DataError(f"{path}:{lineno}: not a {what} line: {line[:120]!r}")


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


def _parse_time(value: str, time_format: str | None) -> float | None:
    try:
        if time_format is None:
            return float(value)
        dt = datetime.strptime(value, time_format)
    except ValueError:
        return None
    if dt.tzinfo is None:
        # A format without a zone is read as UTC so results do not depend on
        # the machine's local time zone.
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def read_lines(
    path: str | Path,
    pattern: str,
    *,
    time_format: str | None = None,
    stats: ReadStats | None = None,
    strict: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[LogRecord]:
    """Stream plain text lines, split by a user regex with optional named groups.

    ``pattern`` is matched at the start of each line (``re.match``); its
    optional groups ``time``, ``host`` and ``text`` fill the record (no
    ``text`` group, or a group that did not take part: the whole line). ``time``
    is parsed with ``datetime.strptime(time_format)`` (naive times are UTC) or,
    when ``time_format`` is ``None``, as epoch seconds. A line that does not
    match yields ``LogRecord(None, None, line)`` counted in ``stats.unparsed``;
    a time that will not parse gives ``time=None`` counted in
    ``stats.bad_time``. ``label`` is always ``None``.

    Raises :class:`ConfigError` for a regex that does not compile.
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError("pattern", pattern, f"a valid regular expression ({exc})") from exc
    groups = rx.groupindex
    has_time, has_host, has_text = "time" in groups, "host" in groups, "text" in groups
    st = stats if stats is not None else ReadStats()
    for lineno, line in iter_lines(path, st, max_line_bytes=max_line_bytes):
        m = rx.match(line)
        if m is None:
            if strict:
                raise DataError(f"{path}:{lineno}: line does not match {pattern!r}: {line[:120]!r}")
            st.unparsed += 1
            st.records += 1
            yield LogRecord(time=None, host=None, text=line, label=None)
            continue
        t: float | None = None
        if has_time and (raw_t := m.group("time")) is not None:
            t = _parse_time(raw_t, time_format)
            if t is None:
                st.bad_time += 1
        host = m.group("host") if has_host else None
        text = m.group("text") if has_text else None
        st.records += 1
        yield LogRecord(time=t, host=host, text=line if text is None else text, label=None)
