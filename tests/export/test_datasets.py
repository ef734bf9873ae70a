"""Dataset readers: formats, bad input with defined outcomes, the label firewall, splits."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logsieve.errors import ConfigError, DataError
from logsieve.export.data.datasets import (
    ReadStats,
    Sequence,
    chronological_split,
    hdfs_block_ids,
    normal_only,
    read_bgl_raw,
    read_bgl_raw_with_category,
    read_bgl_windows,
    read_hdfs_block_labels,
    read_hdfs_raw,
    read_hdfs_sessions_dir,
    read_lines,
    read_sessions,
    read_templates_tsv,
    read_thunderbird_raw,
    read_thunderbird_raw_with_category,
)
from logsieve.export.data.lines import iter_lines
from logsieve.logs.records import LogRecord

HDFS_LINE = (
    "081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block "
    "blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010"
)
BGL_LINE = (
    "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 "
    "R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected"
)
BGL_ALERT = (
    "KERNDTLB 1118536327 2005.06.11 R30-M0-N9-C:J16-U01 2005-06-11-17.32.07.581048 "
    "R30-M0-N9-C:J16-U01 RAS KERNEL FATAL data TLB error interrupt"
)
TB_LINE = (
    "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 "
    "crond(pam_unix)[2915]: session closed for user root"
)


def write(tmp_path: Path, data: bytes | str, name: str = "f.log") -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


# ---------------------------------------------------------------- line layer
def test_iter_lines_crlf_bom_empty_and_numbering(tmp_path: Path) -> None:
    p = write(tmp_path, b"\xef\xbb\xbfa\r\n\r\n   \nb\n\nc")
    st_ = ReadStats()
    assert list(iter_lines(p, st_)) == [(1, "a"), (4, "b"), (6, "c")]
    assert (st_.lines, st_.empty, st_.decode_errors, st_.truncated) == (6, 3, 0, 0)


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path: Path) -> None:
    p = write(tmp_path, b"ok \xff\xfe bytes\nfine\n")
    st_ = ReadStats()
    lines = [t for _, t in iter_lines(p, st_)]
    assert lines == ["ok \ufffd\ufffd bytes", "fine"]
    assert st_.decode_errors == 1


def test_one_megabyte_line_is_truncated_and_reading_goes_on(tmp_path: Path) -> None:
    p = write(tmp_path, b"x" * 1_000_000 + b"\r\nnext\n")
    st_ = ReadStats()
    got = list(iter_lines(p, st_, max_line_bytes=65536))
    assert [n for n, _ in got] == [1, 2]
    assert len(got[0][1]) == 65536 and got[1][1] == "next"
    assert st_.truncated == 1


def test_truncation_never_splits_a_utf8_character(tmp_path: Path) -> None:
    p = write(tmp_path, ("é" * 10).encode() + b"\n")  # 2 bytes each
    st_ = ReadStats()
    [(_, text)] = list(iter_lines(p, st_, max_line_bytes=5))
    assert text == "éé" and st_.decode_errors == 0 and st_.truncated == 1


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.log: cannot open"):
        list(read_hdfs_raw(tmp_path / "nope.log"))


# ---------------------------------------------------------------------- HDFS
def test_hdfs_raw_parses_time_text_and_keeps_order(tmp_path: Path) -> None:
    other = "081110 000001 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /a. blk_1"
    p = write(tmp_path, f"{HDFS_LINE}\r\n{other}\r\n")
    recs = list(read_hdfs_raw(p))
    assert recs[0] == LogRecord(
        time=1226262918.0,  # 2008-11-09 20:35:18 UTC
        host=None,
        text="Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 "
        "dest: /10.250.19.102:50010",
        label=None,
    )
    assert recs[1].time == 1226275201.0
    assert recs[1].text.startswith("BLOCK* NameSystem.allocateBlock")


def test_hdfs_line_without_timestamp_is_kept_whole_and_counted(tmp_path: Path) -> None:
    p = write(tmp_path, f"{HDFS_LINE}\nsomething else entirely\n991399 000000 1 INFO x: y\n")
    st_ = ReadStats()
    recs = list(read_hdfs_raw(p, stats=st_))
    assert recs[1] == LogRecord(None, None, "something else entirely", None)
    assert recs[2].time is None  # month 13 is not a date
    assert (st_.records, st_.unparsed) == (3, 2)
    with pytest.raises(DataError, match=r"f\.log:2: not a HDFS line"):
        list(read_hdfs_raw(p, strict=True))


def test_hdfs_block_ids_distinct_in_order() -> None:
    text = "Deleting block blk_-12 file /data/current/blk_-12 and blk_7"
    assert hdfs_block_ids(text) == ["blk_-12", "blk_7"]


def test_block_labels_both_styles_and_errors(tmp_path: Path) -> None:
    p = write(tmp_path, "BlockId,Label\r\nblk_1,Normal\r\nblk_-2,Anomaly\r\n")
    assert read_hdfs_block_labels(p) == {"blk_1": 0, "blk_-2": 1}
    p = write(tmp_path, "BlockId,Label,NumLines\nblk_1,Normal,4\n\nblk_3,Anomaly,9\n")
    assert read_hdfs_block_labels(p) == {"blk_1": 0, "blk_3": 1}
    p = write(tmp_path, "BlockId,Label\nblk_1,Weird\n")
    with pytest.raises(DataError, match=r"f\.log:2"):
        read_hdfs_block_labels(p)
    p = write(tmp_path, "BlockId,Label\nblk_1,Normal\nblk_1,Anomaly\n")
    with pytest.raises(DataError, match=r"f\.log:3: blk_1 listed again"):
        read_hdfs_block_labels(p)
    with pytest.raises(DataError, match="header"):
        read_hdfs_block_labels(write(tmp_path, "a,b\n"))


def test_read_sessions_and_bad_token(tmp_path: Path) -> None:
    p = write(tmp_path, "5 5 22 11\n\n9 26\r\n", "train_normal")
    st_ = ReadStats()
    seqs = list(read_sessions(p, 0, stats=st_))
    assert seqs == [
        Sequence([5, 5, 22, 11], 0, None, None, "train_normal:1"),
        Sequence([9, 26], 0, None, None, "train_normal:3"),
    ]
    assert st_.empty == 1 and st_.records == 2
    with pytest.raises(DataError, match=r"bad:2: expected event ids"):
        list(read_sessions(write(tmp_path, "1 2\n3 x\n", "bad"), 1))


def test_sessions_dir_splits(tmp_path: Path) -> None:
    write(tmp_path, "".join(f"{i} 1\n" for i in range(20)), "train_normal")
    write(tmp_path, "1 2\n3 4\n", "dev_normal")
    write(tmp_path, "9 9\n", "dev_abnormal")
    s = read_hdfs_sessions_dir(tmp_path, val_fraction=0.25)
    assert [q.event_ids[0] for q in s.train] == list(range(15))
    assert [q.event_ids[0] for q in s.validation] == list(range(15, 20))
    assert all(q.label is None for q in s.train + s.validation)  # firewall
    assert [(q.event_ids, q.label) for q in s.test] == [([1, 2], 0), ([3, 4], 0), ([9, 9], 1)]
    (tmp_path / "dev_abnormal").unlink()
    with pytest.raises(DataError, match="dev_abnormal: missing"):
        read_hdfs_sessions_dir(tmp_path)


# ------------------------------------------------------------ BGL, Thunderbird
def test_bgl_raw_fields_labels_and_category(tmp_path: Path) -> None:
    short = "APPSEV 1117838571 2005.06.03 NULL 2005-06-03-15.42.51.1 NULL NULL DISCOVERY ERROR"
    p = write(tmp_path, f"{BGL_LINE}\r\n{BGL_ALERT}\r\n{short}\r\nAPPREAD garbage\r\n")
    st_ = ReadStats()
    got = list(read_bgl_raw_with_category(p, stats=st_))
    node = "R02-M1-N0-C:J12-U11"
    text = "instruction cache parity error corrected"
    assert got[0] == (LogRecord(1117838570.0, node, text, 0), None)
    assert got[1] == (
        LogRecord(1118536327.0, "R30-M0-N9-C:J16-U01", "data TLB error interrupt", 1),
        "KERNDTLB",
    )
    assert got[2][0].text == "" and got[2][0].host == "NULL"
    # A mangled alert line keeps its label: it must not count as normal.
    assert got[3] == (LogRecord(None, None, "APPREAD garbage", 1), "APPREAD")
    assert st_.unparsed == 1
    assert [r.label for r in read_bgl_raw(p)] == [0, 1, 1, 1]


def test_thunderbird_text_starts_at_program(tmp_path: Path) -> None:
    two_spaces = TB_LINE.replace("Nov 9", "Nov  9").replace("2915", "77")
    p = write(tmp_path, f"{TB_LINE}\r\n{two_spaces}\r\nVAPI 1131566462 x\r\n")
    recs = list(read_thunderbird_raw(p))
    assert recs[0] == LogRecord(
        1131566461.0, "dn228", "crond(pam_unix)[2915]: session closed for user root", 0
    )
    assert recs[1].text == "crond(pam_unix)[77]: session closed for user root"
    assert recs[2] == LogRecord(None, None, "VAPI 1131566462 x", 1)
    assert [c for _, c in read_thunderbird_raw_with_category(p)] == [None, None, "VAPI"]


# -------------------------------------------------------------- BGL windows
def test_bgl_windows_and_malformed_json(tmp_path: Path) -> None:
    rows = [
        {"window_start": 0, "event_ids": [0, 1], "line_labels": [0, 0], "label": 0},
        {"window_start": 100, "event_ids": [2, 3], "line_labels": [0, 1]},
    ]
    p = write(tmp_path, "\n".join(json.dumps(r) for r in rows) + "\n\n", "w.jsonl")
    seqs = list(read_bgl_windows(p))
    assert seqs[0] == Sequence([0, 1], 0, [0, 0], None, "w.jsonl@0")
    assert seqs[1].label == 1  # derived from line_labels
    bad = write(tmp_path, json.dumps(rows[0]) + '\n{"event_ids": [1, \n', "bad.jsonl")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        list(read_bgl_windows(bad))
    for obj, msg in [
        ([1, 2], "expected a JSON object"),
        ({"event_ids": ["a"]}, "event_ids"),
        ({"event_ids": [1], "line_labels": [0, 1]}, "line_labels"),
        ({"event_ids": [1], "label": 3}, "label"),
    ]:
        with pytest.raises(DataError, match=rf"x\.jsonl:1: .*{msg}"):
            list(read_bgl_windows(write(tmp_path, json.dumps(obj), "x.jsonl")))


def test_templates_tsv(tmp_path: Path) -> None:
    p = write(tmp_path, "event_id\ttemplate\n0\tgenerating <*>\n1\ta\tb\n")
    assert read_templates_tsv(p) == {0: "generating <*>", 1: "a\tb"}
    with pytest.raises(DataError, match=r"t\.tsv:2: event id 0 given twice"):
        read_templates_tsv(write(tmp_path, "0\ta\n0\tb\n", "t.tsv"))
    with pytest.raises(DataError, match=r"t\.tsv:2: expected"):
        read_templates_tsv(write(tmp_path, "0\ta\nzz\n", "t.tsv"))


# ------------------------------------------------------------- regex lines
def test_read_lines_with_named_groups(tmp_path: Path) -> None:
    pat = r"(?P<time>\S+ \S+) (?P<host>\S+) (?P<text>.*)"
    p = write(
        tmp_path,
        "2024-01-02 03:04:05 web1 GET / 200\nno match\n2024-13-99 00:00:00 web2 bad time\n",
    )
    st_ = ReadStats()
    recs = list(read_lines(p, pat, time_format="%Y-%m-%d %H:%M:%S", stats=st_))
    assert recs[0] == LogRecord(1704164645.0, "web1", "GET / 200", None)
    assert recs[1] == LogRecord(None, None, "no match", None)
    assert recs[2] == LogRecord(None, "web2", "bad time", None)
    assert (st_.unparsed, st_.bad_time, st_.records) == (1, 1, 3)
    epoch = list(read_lines(write(tmp_path, "1700000000.5 hello\n"), r"(?P<time>\S+) "))
    assert epoch == [LogRecord(1700000000.5, None, "1700000000.5 hello", None)]
    with pytest.raises(DataError, match=r"f\.log:1: line does not match"):
        list(read_lines(write(tmp_path, "x\n"), r"\d+", strict=True))
    with pytest.raises(ConfigError, match="pattern"):
        list(read_lines(p, "(unclosed"))


# ------------------------------------------------------ firewall and splits
def seq(i: int, label: int | None, line_labels: list[int] | None = None) -> Sequence:
    return Sequence([i], label, line_labels, None, str(i))


def test_normal_only_drops_anomalies_and_strips_labels() -> None:
    items = [seq(0, 0), seq(1, 1), seq(2, None), seq(3, None, [0, 1]), seq(4, 0, [0, 0])]
    out = list(normal_only(items))
    assert [s.key for s in out] == ["0", "2", "4"]
    assert all(s.label is None and s.line_labels is None for s in out)
    assert items[0].label == 0  # the input is not mutated
    recs = [LogRecord(1.0, "h", "a", 0), LogRecord(2.0, "h", "b", 1), LogRecord(3.0, None, "c")]
    assert list(normal_only(recs)) == [LogRecord(1.0, "h", "a"), LogRecord(3.0, None, "c")]


def test_chronological_split_protocol() -> None:
    labels = [0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    items = [seq(i, lab) for i, lab in enumerate(labels)]
    sp = chronological_split(items, train_n=5, val_fraction=0.2)
    assert [s.key for s in sp.train] == ["0", "1", "3", "4"]
    assert [s.key for s in sp.validation] == ["5"]
    assert [s.key for s in sp.test] == ["2", "6", "7", "8", "9", "10", "11"]
    assert all(s.label is None for s in sp.train + sp.validation)
    assert [s.label for s in sp.test][:2] == [1, 1]  # evaluation keeps its labels
    with pytest.raises(ConfigError, match="val_fraction"):
        chronological_split(items, val_fraction=1.0)
    with pytest.raises(ConfigError, match="train_n"):
        chronological_split(items, train_n=-1)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.sampled_from([0, 1, None]), max_size=60),
    train_n=st.none() | st.integers(0, 70),
    frac=st.floats(0.0, 0.9),
)
def test_chronological_split_partitions_in_order(
    labels: list[int | None], train_n: int | None, frac: float
) -> None:
    items = [seq(i, lab) for i, lab in enumerate(labels)]
    sp = chronological_split(items, train_n=train_n, val_fraction=frac)
    pool = [int(s.key) for s in sp.train + sp.validation]
    assert pool == sorted(pool)  # validation is the later part of the pool
    assert sorted(pool + [int(s.key) for s in sp.test]) == list(range(len(items)))
    assert all(labels[i] != 1 for i in pool)
    n_normal = sum(lab != 1 for lab in labels)
    assert len(pool) == (n_normal if train_n is None else min(train_n, n_normal))
    again = chronological_split(items, train_n=train_n, val_fraction=frac)
    assert again == sp


# ---------------------------------------------------------------- real data
@pytest.mark.data
def test_real_hdfs_5k_and_block_labels(shared_data: Path) -> None:
    raw = shared_data / "hdfs" / "raw"
    st_ = ReadStats()
    recs = list(read_hdfs_raw(raw / "HDFS_5k.log", stats=st_, strict=True))
    assert len(recs) == 4519 and st_.unparsed == 0 and st_.decode_errors == 0
    times = [r.time for r in recs]
    assert None not in times
    occurrences: Counter[str] = Counter()
    for r in recs:
        occurrences.update(re.findall(r"blk_-?\d+", r.text))
    labels = read_hdfs_block_labels(raw / "HDFS_5k.block_labels.csv")
    assert set(occurrences) == set(labels) and len(labels) == 110
    assert sum(labels.values()) == 10
    # NumLines in the file counts block-id occurrences (Deleting lines name it twice).
    for line in (raw / "HDFS_5k.block_labels.csv").read_text().splitlines()[1:]:
        block, _, n = line.split(",")
        assert occurrences[block] == int(n)


@pytest.mark.data
def test_real_hdfs_sessions_dir(shared_data: Path) -> None:
    d = shared_data / "hdfs" / "sessions"
    counts = [sum(1 for _ in read_sessions(d / n, 0)) for n in ("train_normal", "dev_normal")]
    assert counts == [4855, 4784]
    s = read_hdfs_sessions_dir(d)
    assert len(s.train) + len(s.validation) == 4855 and len(s.validation) == 485
    assert len(s.test) == 4784 + 5051 and sum(q.label or 0 for q in s.test) == 5051
    assert all(1 <= e <= 29 for q in s.test for e in q.event_ids)


@pytest.mark.data
def test_real_bgl_and_thunderbird(shared_data: Path) -> None:
    got = list(read_bgl_raw_with_category(shared_data / "bgl/raw/BGL_2k.log", strict=True))
    assert len(got) == 2000 and sum(r.label or 0 for r, _ in got) == 143
    assert all((c is None) == (r.label == 0) for r, c in got)
    st_ = ReadStats()
    tb = list(read_thunderbird_raw(shared_data / "thunderbird/raw/Thunderbird_2k.log", stats=st_))
    assert len(tb) == 2000 and st_.unparsed == 0 and all(r.host for r in tb)


@pytest.mark.data
def test_real_bgl_windows(shared_data: Path) -> None:
    w = shared_data / "bgl" / "windows"
    seqs = list(read_bgl_windows(w / "train.jsonl"))
    assert len(seqs) == 5019 and sum(s.label or 0 for s in seqs) == 908
    templates = read_templates_tsv(w / "templates.tsv")
    assert all(e in templates for s in seqs for e in s.event_ids)
    assert sum(1 for _ in normal_only(seqs)) == 5019 - 908
