"""Time formats: each named format, detection once per stream, strptime, zones, and
the syslog year rule."""

from __future__ import annotations

import calendar

import pytest

from logsieve.logs.timeparse import TimeParser

# 2015-10-17 21:47:48 UTC
T = float(calendar.timegm((2015, 10, 17, 21, 47, 48)))
NOW = float(calendar.timegm((2015, 11, 1, 0, 0, 0)))


@pytest.mark.parametrize(
    ("value", "name", "expected"),
    [
        ("1445118468", "epoch", T),
        ("1445118468.25", "epoch", T + 0.25),
        ("1445118468288", "epoch_ms", T + 0.288),
        ("151017 214748", "hdfs", T),
        ("2015-10-17-21.47.48.675872", "bgl", T + 0.675872),
        ("2015-10-17-21.47.48", "bgl", T),
        ("2015-10-17T21:47:48Z", "iso8601", T),
        ("2015-10-17T21:47:48", "iso8601", T),  # no zone: UTC
        ("2015-10-17 21:47:48", "iso8601", T),
        ("2015-10-17 21:47:48,288", "iso8601", T + 0.288),  # Hadoop / log4j
        ("2015-10-17T21:47:48.288Z", "iso8601", T + 0.288),
        ("2015-10-17T21:47:48.123456789+00:00", "iso8601", T + 0.123456789),
        ("2015-10-17T23:47:48+02:00", "iso8601", T),
        ("2015-10-17T16:47:48-0500", "iso8601", T),
        ("Oct 17 21:47:48", "syslog", T),
        ("Oct  7 21:47:48", "syslog", T - 10 * 86_400),
    ],
)
def test_each_format_is_detected_and_read(value: str, name: str, expected: float) -> None:
    parser = TimeParser(now=lambda: NOW)
    assert parser(value) == pytest.approx(expected, abs=1e-6)
    assert parser.name == name
    # The same format given by name reads it too.
    assert TimeParser(name, now=lambda: NOW)(value) == pytest.approx(expected, abs=1e-6)


def test_detection_happens_once_then_the_chosen_format_alone_reads() -> None:
    parser = TimeParser()
    assert parser("not a time") is None and parser.name is None  # nothing chosen yet
    assert parser("2015-10-17 21:47:48") == T
    assert parser.name == "iso8601"
    # Another format's value is now a bad time, not a silent switch.
    assert parser("1445118468") is None
    assert parser("2015-10-17 21:47:49") == T + 1


@pytest.mark.parametrize(
    "value", ["", "yesterday", "2015-13-17 21:47:48", "2015-02-30T00:00:00", "nan", "1e400"]
)
def test_values_no_format_reads_give_none(value: str) -> None:
    assert TimeParser()(value) is None


def test_bad_values_of_a_named_format_give_none() -> None:
    assert TimeParser("hdfs")("151017 256061") is None
    assert TimeParser("bgl")("2015-10-17 21:47:48") is None
    assert TimeParser("syslog")("Foo 17 21:47:48") is None
    assert TimeParser("epoch")("12:00") is None


def test_strptime_format_with_and_without_zone() -> None:
    assert TimeParser("%d/%b/%Y:%H:%M:%S %z")("17/Oct/2015:23:47:48 +0200") == T
    assert TimeParser("%Y%m%d-%H%M%S")("20151017-214748") == T  # naive: UTC
    assert TimeParser("%Y%m%d-%H%M%S")("2015-10-17") is None


def test_naive_times_take_the_configured_zone() -> None:
    paris = TimeParser("iso8601", "Europe/Paris")
    assert paris("2015-10-17 23:47:48") == T  # CEST, UTC+2 in October
    assert paris("2015-10-17T21:47:48Z") == T  # an explicit zone wins
    assert TimeParser("hdfs", "Europe/Paris")("151017 234748") == T


def test_syslog_year_is_this_year_or_last_and_steps_at_new_year() -> None:
    jan_2016 = float(calendar.timegm((2016, 1, 2, 0, 0, 0)))
    parser = TimeParser("syslog", now=lambda: jan_2016)
    # December in a file read on 2 January: last year, not eleven months ahead.
    dec = parser("Dec 31 23:59:59")
    assert dec == calendar.timegm((2015, 12, 31, 23, 59, 59))
    # New Year's Eve inside the file: the year steps forward, time keeps going.
    assert parser("Jan  1 00:00:01") == dec + 2
    # A strptime format without a year gets the same rule.
    same = TimeParser("%b %d %H:%M:%S", now=lambda: jan_2016)
    assert same("Dec 31 23:59:59") == dec and same("Jan  1 00:00:01") == dec + 2
