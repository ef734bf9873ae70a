"""Synthetic logs: determinism, realistic lifecycles, labelled anomaly kinds, parse parity."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from logsieve.errors import ConfigError
from logsieve.export.data.datasets import (
    ReadStats,
    hdfs_block_ids,
    read_bgl_raw_with_category,
    read_hdfs_block_labels,
    read_hdfs_raw,
)
from logsieve.export.data.synth import (
    ANOMALY_KINDS,
    SynthLog,
    generate_bgl,
    generate_hdfs,
    write_synth,
)
from logsieve.export.data.synth_base import BGL_CATEGORY

# Lifecycle phase of each normal HDFS template, in the order a block goes through them.
PHASES = [
    (0, re.compile(r"^BLOCK\* NameSystem\.allocateBlock: ")),
    (1, re.compile(r"^Receiving block blk_\S+ src: /[\d.]+:\d+ dest: /[\d.]+:50010$")),
    (2, re.compile(r"^PacketResponder \d for block blk_\S+ terminating$")),
    (2, re.compile(r"^Received block blk_\S+ of size \d+ from /[\d.]+$")),
    (3, re.compile(r"^BLOCK\* NameSystem\.addStoredBlock: blockMap updated: ")),
    (4, re.compile(r"^[\d.]+:50010 Served block blk_\S+ to /[\d.]+$")),
    (4, re.compile(r"^[\d.]+:50010:Got exception while serving blk_\S+ to /[\d.]+:$")),
    (4, re.compile(r"^Verification succeeded for blk_\S+$")),
    (5, re.compile(r"^BLOCK\* NameSystem\.delete: blk_\S+ is added to invalidSet of ")),
    (6, re.compile(r"^Deleting block blk_\S+ file /mnt/hadoop/dfs/data/current/blk_\S+$")),
]


def phase(text: str) -> int | None:
    for p, rx in PHASES:
        if rx.match(text):
            return p
    return None


@pytest.fixture(scope="module")
def hdfs() -> SynthLog:
    return generate_hdfs(400, anomaly_rate=0.1, seed=7)


def by_block(log: SynthLog) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for rec in log.records():
        for blk in hdfs_block_ids(rec.text):
            out[blk].append(rec.text)
    return out


def test_same_seed_same_output_other_seed_differs() -> None:
    a, b = generate_hdfs(50, anomaly_rate=0.2, seed=3), generate_hdfs(50, anomaly_rate=0.2, seed=3)
    assert a == b
    assert generate_hdfs(50, anomaly_rate=0.2, seed=4).lines != a.lines
    assert generate_bgl(4, 600, anomaly_rate=0.3, seed=1) == generate_bgl(
        4, 600, anomaly_rate=0.3, seed=1
    )


def test_hdfs_all_kinds_present_and_labelled(hdfs: SynthLog) -> None:
    assert set(hdfs.kinds.values()) == set(ANOMALY_KINDS)
    assert {b for b, lab in hdfs.labels.items() if lab} == set(hdfs.kinds)
    blocks = by_block(hdfs)
    assert set(blocks) == set(hdfs.labels)
    for rec, kind in zip(hdfs.records(), hdfs.line_kinds, strict=True):
        [blk] = hdfs_block_ids(rec.text)
        assert rec.label == hdfs.labels[blk] and kind == hdfs.kinds.get(blk)


def test_hdfs_normal_blocks_follow_the_lifecycle(hdfs: SynthLog) -> None:
    for blk, texts in by_block(hdfs).items():
        if hdfs.labels[blk]:
            continue
        phases = [phase(t) for t in texts]
        assert None not in phases, texts
        known = [p for p in phases if p is not None]
        assert known == sorted(known), (blk, phases)
        counts = Counter(phases)
        assert (counts[0], counts[1], counts[2], counts[3]) == (1, 3, 6, 3)
        assert counts[5] == counts[6] and counts[5] in (0, 3)


def test_hdfs_anomalies_break_the_lifecycle(hdfs: SynthLog) -> None:
    blocks = by_block(hdfs)
    for blk, kind in hdfs.kinds.items():
        phases = [phase(t) for t in blocks[blk]]
        counts = Counter(phases)
        if kind in ("unexpected_template", "unseen_line"):
            assert None in phases
        elif kind == "missing_step":
            assert (counts[0], counts[1], counts[2], counts[3]) != (1, 3, 6, 3)
        elif kind == "wrong_order":
            known = [p for p in phases if p is not None]
            assert known != sorted(known)
        else:  # burst
            assert sum("Got exception while serving" in t for t in blocks[blk]) >= 15


def test_hdfs_roundtrip_through_files(tmp_path: Path, hdfs: SynthLog) -> None:
    write_synth(hdfs, tmp_path / "s.log", labels_path=tmp_path / "s.csv")
    st_ = ReadStats()
    recs = list(read_hdfs_raw(tmp_path / "s.log", stats=st_, strict=True))
    assert len(recs) == len(hdfs.lines) and st_.unparsed == 0
    assert [r.text for r in recs] == [r.text for r in hdfs.records()]
    times = [r.time or 0.0 for r in recs]
    assert times == sorted(times) and times[0] > 0
    assert read_hdfs_block_labels(tmp_path / "s.csv") == hdfs.labels


def test_hdfs_values_vary() -> None:
    log = generate_hdfs(200, seed=1)
    ips = {m.group(1) for line in log.lines if (m := re.search(r"src: /([\d.]+)", line))}
    assert len(ips) > 30
    assert len({line.split()[2] for line in log.lines}) > 20  # pids
    assert len(set(log.labels)) == 200 and not log.kinds and not any(log.line_labels)


def test_bgl_parses_and_labels_match(tmp_path: Path) -> None:
    log = generate_bgl(16, 3600, anomaly_rate=0.1, seed=2)
    assert set(log.kinds.values()) == set(ANOMALY_KINDS)
    write_synth(log, tmp_path / "b.log", labels_path=tmp_path / "b.csv")
    got = list(read_bgl_raw_with_category(tmp_path / "b.log", strict=True))
    assert len(got) == len(log.lines)
    assert [r.label for r, _ in got] == log.line_labels
    assert [c for _, c in got] == [k and BGL_CATEGORY[k] for k in log.line_kinds]
    assert len({r.host for r, _ in got}) == 16
    times = [r.time or 0.0 for r, _ in got]
    assert times == sorted(times) and times[-1] - times[0] < 3600
    anomalous_hosts = {r.host for r, _ in got if r.label}
    assert anomalous_hosts == {h for h, lab in log.labels.items() if lab}
    assert (tmp_path / "b.csv").read_text().startswith("Host,Label,Kind\n")
    # Normal data never contains the anomaly-only text.
    normal = {r.text for r, _ in got if not r.label}
    pairs = zip(log.lines, log.line_labels, strict=True)
    assert not any("FATAL" in line for line, lab in pairs if not lab)
    assert "data TLB error interrupt" not in normal


def test_bgl_density_and_no_anomalies_by_default() -> None:
    log = generate_bgl(8, 1800, seed=0)
    assert not any(log.line_labels) and not log.kinds
    per_host_per_s = len(log.lines) / 8 / 1800
    assert 0.1 < per_host_per_s < 1.0
    assert {r.label for r in log.records()} == {0}


def test_generation_speed() -> None:
    t = time.perf_counter()
    n = len(generate_hdfs(1500, anomaly_rate=0.05).lines) + len(generate_bgl(16, 1800).lines)
    rate = n / (time.perf_counter() - t)
    assert rate > 50_000, f"{rate:.0f} lines/s"


@pytest.mark.parametrize(
    ("rate", "kinds", "field"),
    [(1.5, ANOMALY_KINDS, "anomaly_rate"), (0.1, (), "kinds"), (0.0, ("nonsense",), "kinds")],
)
def test_bad_arguments(rate: float, kinds: tuple[str, ...], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        generate_hdfs(5, anomaly_rate=rate, kinds=kinds)
    with pytest.raises(ConfigError, match=field):
        generate_bgl(2, 60, anomaly_rate=rate, kinds=kinds)
    with pytest.raises(ConfigError, match="n_blocks"):
        generate_hdfs(-1)


def test_selected_kinds_only() -> None:
    log = generate_hdfs(100, anomaly_rate=0.3, kinds=("burst",), seed=5)
    assert log.kinds and set(log.kinds.values()) == {"burst"}
