"""One raw log line → ``(time, host, text)``: the parser training and serving share.

Offline readers (``logsieve.export.data.readers``) and the server
(``logsieve.agent_plugin.pipeline``, for a record whose text field holds a whole raw
line) both go through :class:`LineParser`, built from the bundle's
:class:`~logsieve.config.LineFormat`, so a served line yields exactly the text and time
it yielded in training.

Formats: ``hdfs`` (``yymmdd hhmmss pid LEVEL component: content``), ``bgl`` and
``thunderbird`` (loghub's labelled layouts: label, epoch seconds, date, node, ...) and
``lines`` (a user regex with named groups ``time``, ``host``, ``text``; the time read by
:class:`~logsieve.logs.timeparse.TimeParser`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from logsieve.config import LineFormat
from logsieve.logs.records import LogRecord
from logsieve.logs.timeparse import TimeParser, hdfs_time

__all__ = [
    "HDFS_BLOCK_RE",
    "LineParser",
    "hdfs_block_ids",
    "parse_bgl_line",
    "parse_hdfs_line",
    "parse_thunderbird_line",
]

HDFS_BLOCK_RE = re.compile(r"blk_-?\d+")


def hdfs_block_ids(text: str) -> list[str]:
    """Distinct block ids (``blk_…``) in ``text``, in order of first appearance."""
    return list(dict.fromkeys(HDFS_BLOCK_RE.findall(text)))


def parse_hdfs_line(line: str) -> LogRecord | None:
    """Parse ``yymmdd hhmmss pid LEVEL component: content``; ``None`` if it does not fit.

    ``time`` is UTC epoch seconds (years are 20yy), ``text`` the content after
    the first ``": "`` following the component (the whole remainder when the
    line has no ``": "``), ``host`` and ``label`` ``None``.
    """
    first = line[:1]
    if not (first.isdigit() or first.isspace()):
        # The date field must be digits: already-parsed content, the common case when
        # serving, is rejected without a split.
        return None
    parts = line.split(None, 4)
    if len(parts) < 5 or not parts[2].isdigit():
        return None
    t = hdfs_time(parts[0], parts[1])
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


def _dropping_category(
    parse: Callable[[str], tuple[LogRecord, str | None] | None],
) -> Callable[[str], LogRecord | None]:
    def record_only(line: str) -> LogRecord | None:
        got = parse(line)
        return None if got is None else got[0]

    return record_only


class LineParser:
    """Raw lines of one :class:`~logsieve.config.LineFormat` → :class:`LogRecord`.

    Stateful only through its :class:`TimeParser` (the time format detected on the
    first line that has one, and the syslog year), so use one parser per stream.

    ``parse(line)`` returns ``None`` when the line does not fit the layout. For
    ``lines`` a line that matches but whose time does not read gives a record with
    ``time=None`` (the caller counts it as a bad time; :meth:`parse_raw` refuses it).
    """

    __slots__ = ("expects_time", "format", "parse", "time", "whole_line")

    def __init__(self, line_format: LineFormat) -> None:
        self.format = line_format
        self.time: TimeParser | None = None
        self.expects_time = True
        self.parse: Callable[[str], LogRecord | None]
        name = line_format.name
        if name == "hdfs":
            self.parse = parse_hdfs_line
        elif name == "bgl":
            self.parse = _dropping_category(parse_bgl_line)
        elif name == "thunderbird":
            self.parse = _dropping_category(parse_thunderbird_line)
        else:
            assert line_format.pattern is not None  # LineFormat checks it
            rx = re.compile(line_format.pattern)
            self.expects_time = "time" in rx.groupindex
            self.time = TimeParser(line_format.time_format, line_format.timezone)
            self.parse = self._regex_parser(rx, self.time)
        # parse_raw as one callable: the named formats' parsers already refuse a line
        # whose time does not read, so for them it is parse itself (one call less on
        # the server's per-record path).
        self.whole_line: Callable[[str], LogRecord | None] = (
            self.parse_raw if name not in ("hdfs", "bgl", "thunderbird") else self.parse
        )

    @staticmethod
    def _regex_parser(
        rx: re.Pattern[str], read_time: TimeParser
    ) -> Callable[[str], LogRecord | None]:
        groups = rx.groupindex
        has_time, has_host, has_text = "time" in groups, "host" in groups, "text" in groups
        match = rx.match

        def parse(line: str) -> LogRecord | None:
            m = match(line)
            if m is None:
                return None
            t: float | None = None
            if has_time and (raw_t := m.group("time")) is not None:
                t = read_time(raw_t)
            host = m.group("host") if has_host else None
            text = m.group("text") if has_text else None
            return LogRecord(time=t, host=host, text=line if text is None else text, label=None)

        return parse

    def parse_raw(self, line: str) -> LogRecord | None:
        """The record of ``line`` when it is a whole raw line of this format (it fits
        the layout and, where the format has a time, the time reads); else ``None``.

        Serving uses this to tell a raw line from already-parsed content: requiring
        the time keeps a loose pattern such as ``(?P<time>\\S+) (?P<text>.*)`` from
        splitting a message that merely has two words.
        """
        rec = self.parse(line)
        if rec is None or (self.expects_time and rec.time is None):
            return None
        return rec

    def resolved(self) -> LineFormat:
        """The format with the detected time format filled in (what a bundle stores)."""
        fmt = self.format
        if self.time is not None and not self.time.fixed and self.time.name is not None:
            return LineFormat(fmt.name, fmt.pattern, self.time.name, fmt.timezone)
        return fmt
