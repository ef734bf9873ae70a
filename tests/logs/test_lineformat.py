"""The raw-line parser training and serving share, and the LineFormat the bundle keeps."""

from __future__ import annotations

import calendar

import pytest

from logsieve.config import LineFormat, LogConfig
from logsieve.errors import ConfigError
from logsieve.logs.lineformat import LineParser
from logsieve.logs.records import LogRecord

HDFS = (
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: "
    "PacketResponder 1 for block blk_3 terminating"
)
BGL = (
    "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.363779 "
    "R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected"
)
TB = (
    "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: "
    "session closed for user root"
)
APP = r"(?P<time>\S+ \S+) (?P<host>\S+) (?P<text>.*)"


def test_fixed_formats_split_time_host_and_content() -> None:
    hdfs = LineParser(LineFormat("hdfs")).parse(HDFS)
    assert hdfs == LogRecord(
        float(calendar.timegm((2008, 11, 9, 20, 36, 15))), None,
        "PacketResponder 1 for block blk_3 terminating", None,
    )  # fmt: skip
    bgl = LineParser(LineFormat("bgl")).parse(BGL)
    assert bgl == LogRecord(
        1117838570.0, "R02-M1-N0-C:J12-U11", "instruction cache parity error corrected", 0
    )
    tb = LineParser(LineFormat("thunderbird")).parse(TB)
    assert tb is not None and tb.host == "dn228" and tb.text.startswith("crond(pam_unix)")


def test_lines_format_reads_its_time_with_the_detected_format() -> None:
    parser = LineParser(LineFormat("lines", APP))
    rec = parser.parse("2015-10-17 21:47:48,288 web1 GET / 200")
    assert rec == LogRecord(1445118468.288, "web1", "GET / 200", None)
    assert parser.resolved() == LineFormat("lines", APP, "iso8601")
    # A given format stays as given.
    fixed = LineParser(LineFormat("lines", APP, "%Y-%m-%d %H:%M:%S,%f"))
    assert fixed.parse("2015-10-17 21:47:48,288 web1 x") == LogRecord(
        1445118468.288, "web1", "x", None
    )
    assert fixed.resolved().time_format == "%Y-%m-%d %H:%M:%S,%f"


def test_parse_raw_accepts_a_whole_line_and_refuses_content() -> None:
    hdfs = LineParser(LineFormat("hdfs"))
    content = hdfs.parse(HDFS)
    assert content is not None and hdfs.parse_raw(HDFS) == content
    assert hdfs.parse_raw(content.text) is None  # already-parsed content: used as is
    bgl = LineParser(LineFormat("bgl"))
    assert bgl.parse_raw("instruction cache parity error corrected") is None
    # A loose pattern matches two words of content, but their "time" does not read.
    loose = LineParser(LineFormat("lines", r"(?P<time>\S+) (?P<text>.*)"))
    assert loose.parse_raw("Receiving block blk_1 of size 67108864") is None
    assert loose.parse_raw("1445118468 Receiving block") == LogRecord(
        1445118468.0, None, "Receiving block", None
    )
    # The lines parser keeps a bad time as time=None on parse (the reader counts it).
    assert loose.parse("yesterday something") == LogRecord(None, None, "something", None)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: LineFormat("json"), "line_format.name"),
        (lambda: LineFormat("lines"), "line_format.pattern"),
        (lambda: LineFormat("lines", "(unclosed"), "line_format.pattern"),
        (lambda: LineFormat("hdfs", pattern=APP), "line_format.pattern"),
        (lambda: LineFormat("hdfs", time_format="iso8601"), "line_format.time_format"),
        (lambda: LineFormat("lines", APP, "isoish"), "line_format.time_format"),
        (lambda: LineFormat("lines", APP, timezone="Mars/Olympus"), "line_format.timezone"),
    ],
)
def test_invalid_line_formats_name_the_field(make: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()  # type: ignore[operator]
    assert info.value.field == field


def test_line_format_round_trips_in_the_log_config_and_old_configs_load() -> None:
    cfg = LogConfig(line_format=LineFormat("lines", APP, "syslog", "Europe/Paris"))
    data = cfg.to_dict()
    assert data["line_format"] == {
        "name": "lines", "pattern": APP, "time_format": "syslog", "timezone": "Europe/Paris",
    }  # fmt: skip
    assert LogConfig.from_dict(data) == cfg
    old = LogConfig().to_dict()
    del old["line_format"]  # a manifest written before the format was stored
    assert LogConfig.from_dict(old).line_format is None
    with pytest.raises(ConfigError, match=r"line_format\.regex"):
        LogConfig.from_dict({"line_format": {"name": "lines", "regex": APP}})
