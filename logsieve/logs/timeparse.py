"""Log timestamps → epoch seconds: named formats, detection, and ``strptime``.

A :class:`TimeParser` reads one stream's timestamps (one file, one served bundle). With
``auto`` it detects the format from the first value that any known format reads, then
keeps that one parser: the hot path never tries every format per line. Known formats
(:data:`logsieve.config.TIME_FORMATS`):

- ``epoch`` / ``epoch_ms``: ``1117838570``, ``1117838570.36`` / ``1445118468288``
  (detection picks ``epoch_ms`` for values of 10^11 and up: year 5138 in seconds).
- ``iso8601``: ``2015-10-17T21:47:48Z``, ``2015-10-17 21:47:48,288``, with or without
  fractions (``.`` or ``,``) and zone (``Z``, ``+02:00``, ``+0200``); Hadoop/log4j's
  ``2015-10-17 21:47:48,288`` is this format.
- ``hdfs``: ``081109 203615`` (``yymmdd hhmmss``, years 20yy).
- ``bgl``: ``2005-06-03-15.42.50.675872``.
- ``syslog``: ``Jun  3 15:42:50``. It has no year: the parser takes the current year,
  the previous one when that would put the first line more than a day in the future,
  and steps the year forward when times jump back by more than half a year (New Year's
  Eve inside the file). Logs older than a year keep their order and spacing, not their
  year; give a ``strptime`` format with ``%Y`` where the lines hold one.
- anything holding ``%``: ``datetime.strptime`` (a format without a year directive
  gets the syslog year rule).

A time without a zone is in ``timezone`` (UTC unless configured), so results never
depend on the machine's local zone. A value the chosen format does not read gives
``None`` (the caller counts it), never an exception.
"""

from __future__ import annotations

import calendar
import re
import time as _time
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from datetime import timezone as _tz

__all__ = ["TimeParser", "hdfs_time"]

Parse = Callable[[str], "float | None"]

_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_HALF_YEAR = 183 * 86_400.0
_DAY = 86_400.0
# yyyy-mm-dd (or yymmdd) → epoch seconds of that midnight in UTC; logs span few days,
# so the cache stays tiny and saves a timegm per line.
_DAY_CACHE: dict[tuple[int, int, int], float] = {}
_BGL = re.compile(r"(\d{4})-(\d\d)-(\d\d)-(\d\d)\.(\d\d)\.(\d\d)(?:\.(\d{1,9}))?\Z")
_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?"
    r"\s?(Z|[+-]\d\d(?::?\d\d)?)?\Z"
)
_SYSLOG = re.compile(r"([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\Z")


def _midnight(y: int, mo: int, d: int) -> float | None:
    key = (y, mo, d)
    day = _DAY_CACHE.get(key)
    if day is None:
        if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]):
            return None
        day = float(calendar.timegm((y, mo, d, 0, 0, 0)))
        if len(_DAY_CACHE) < 100_000:
            _DAY_CACHE[key] = day
    return day


_HDFS_DAYS: dict[str, float] = {}


def hdfs_time(date: str, clock: str) -> float | None:
    """``yymmdd``, ``hhmmss`` → UTC epoch seconds (years 20yy); ``None`` if invalid.

    The HDFS reader's hot path: a per-date cache, no regex, no datetime.
    """
    if len(date) != 6 or len(clock) != 6 or not (date.isdigit() and clock.isdigit()):
        return None
    day = _HDFS_DAYS.get(date)
    if day is None:
        got = _midnight(2000 + int(date[:2]), int(date[2:4]), int(date[4:]))
        if got is None:
            return None
        day = _HDFS_DAYS[date] = got
    h, m, s = int(clock[:2]), int(clock[2:4]), int(clock[4:])
    if h > 23 or m > 59 or s > 60:
        return None
    return day + h * 3600 + m * 60 + s


def _clock(h: int, m: int, s: int) -> float | None:
    if h > 23 or m > 59 or s > 60:
        return None
    return h * 3600.0 + m * 60.0 + s


def _frac(digits: str | None) -> float:
    return int(digits) / 10 ** len(digits) if digits else 0.0


class TimeParser:
    """Reads one stream's timestamps; see the module docstring.

    ``time_format``: a name of :data:`~logsieve.config.TIME_FORMATS`, a ``strptime``
    format, or ``None`` (``auto``). ``timezone``: the zone of naive times. ``now``: the
    wall clock the syslog year rule reads (tests pass a fixed one).
    """

    __slots__ = ("_last", "_now", "_offset", "_parse", "_year", "_zone", "fixed", "name")

    def __init__(
        self,
        time_format: str | None = None,
        timezone: str = "UTC",
        *,
        now: Callable[[], float] = _time.time,
    ) -> None:
        self._zone: tzinfo | None = None if timezone == "UTC" else _zone(timezone)
        self._now = now
        self._year: int | None = None
        self._last: float | None = None
        self._offset = 0.0
        fmt = time_format or "auto"
        self.fixed = fmt != "auto"
        self.name: str | None = None if fmt == "auto" else fmt
        self._parse: Parse | None = None if fmt == "auto" else self._parser(fmt)

    def __call__(self, value: str) -> float | None:
        """Epoch seconds of ``value``, or ``None`` when it does not read."""
        parse = self._parse
        if parse is not None:
            return parse(value)
        return self._detect(value.strip())

    # -- detection --------------------------------------------------------

    def _detect(self, value: str) -> float | None:
        # epoch before epoch_ms: seconds take every value under 10^11.
        for name in ("epoch", "epoch_ms", "hdfs", "bgl", "iso8601", "syslog"):
            parse = self._parser(name)
            t = parse(value)
            if t is not None:
                self.name, self._parse = name, parse
                return t
        return None

    def _parser(self, name: str) -> Parse:
        if name == "epoch":
            return _epoch
        if name == "epoch_ms":
            return _epoch_ms
        if name == "hdfs":
            return self._hdfs
        if name == "bgl":
            return self._bgl
        if name == "iso8601":
            return self._iso
        if name == "syslog":
            return self._syslog
        if "%" in name:
            return self._strptime_parser(name)
        raise ValueError(f"unknown time format {name!r}")

    # -- zone handling ----------------------------------------------------

    def _local(self, utc_seconds: float) -> float:
        """A naive wall time (counted as if UTC) → epoch seconds in the configured zone."""
        if self._zone is None:
            return utc_seconds
        naive = datetime(1970, 1, 1) + timedelta(seconds=utc_seconds)
        return naive.replace(tzinfo=self._zone).timestamp()

    # -- the formats ------------------------------------------------------

    def _hdfs(self, value: str) -> float | None:
        if len(value) != 13 or value[6] != " ":
            return None
        t = hdfs_time(value[:6], value[7:])
        return None if t is None else self._local(t)

    def _bgl(self, value: str) -> float | None:
        m = _BGL.match(value)
        if m is None:
            return None
        y, mo, d, h, mi, s, f = m.groups()
        day = _midnight(int(y), int(mo), int(d))
        c = _clock(int(h), int(mi), int(s))
        if day is None or c is None:
            return None
        return self._local(day + c + _frac(f))

    def _iso(self, value: str) -> float | None:
        m = _ISO.match(value)
        if m is None:
            return None
        y, mo, d, h, mi, s, f, zone = m.groups()
        day = _midnight(int(y), int(mo), int(d))
        c = _clock(int(h), int(mi), int(s or 0))
        if day is None or c is None:
            return None
        t = day + c + _frac(f)
        if zone is None:
            return self._local(t)
        if zone == "Z":
            return t
        sign = -1.0 if zone[0] == "-" else 1.0
        digits = zone[1:].replace(":", "")
        off = int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) > 2 else 0)
        return t - sign * off

    def _syslog(self, value: str) -> float | None:
        m = _SYSLOG.match(value)
        if m is None:
            return None
        mon, d, h, mi, s, f = m.groups()
        month = _MONTHS.get(mon)
        c = _clock(int(h), int(mi), int(s))
        if month is None or c is None:
            return None
        return self._with_year(lambda y: _midnight(y, month, int(d)), c + _frac(f))

    def _with_year(self, midnight: Callable[[int], float | None], clock: float) -> float | None:
        """The year rule of the module docstring, for times that carry no year."""
        if self._year is None:
            now = self._now()
            year = datetime.fromtimestamp(now, _tz.utc).year
            day = midnight(year)
            if day is not None and self._local(day + clock) > now + _DAY:
                year -= 1
            self._year = year
        day = midnight(self._year)
        if day is None:  # Feb 29 outside a leap year: try the next year (a rollover)
            day = midnight(self._year + 1)
            if day is None:
                return None
        t = self._local(day + clock)
        last = self._last
        if last is not None and t < last - _HALF_YEAR:
            self._year += 1
            nxt = midnight(self._year)
            if nxt is None:
                return None
            t = self._local(nxt + clock)
        self._last = t
        return t

    def _strptime_parser(self, fmt: str) -> Parse:
        has_year = "%Y" in fmt or "%y" in fmt or "%s" in fmt
        zone = self._zone

        def parse(value: str) -> float | None:
            try:
                # Without a year, parse with a leap year so '%b %d' on Feb 29 reads;
                # the year rule then places it.
                if has_year:
                    dt = datetime.strptime(value, fmt)
                else:
                    dt = datetime.strptime(value + " 2000", fmt + " %Y")
            except ValueError:
                return None
            if dt.tzinfo is not None:
                return dt.timestamp()
            if has_year:
                return dt.replace(tzinfo=zone or _tz.utc).timestamp()
            clock = dt.hour * 3600.0 + dt.minute * 60.0 + dt.second + dt.microsecond / 1e6
            return self._with_year(lambda y: _midnight(y, dt.month, dt.day), clock)

        return parse


def _epoch(value: str) -> float | None:
    try:
        t = float(value)
    except ValueError:
        return None
    # 'nan', 'inf' and '1e400' read as floats but are no time.
    return t if -1e11 < t < 1e11 else None


def _epoch_ms(value: str) -> float | None:
    try:
        t = float(value) / 1000.0
    except ValueError:
        return None
    return t if -1e11 < t < 1e11 else None


def _zone(name: str) -> tzinfo:
    import zoneinfo

    return zoneinfo.ZoneInfo(name)
