"""HDFS sessions of the shared data's splits, rendered as raw lines: a stream whose
windows repeat as real traffic's do, not as a replay loop's.

The load generator's default stream loops one file (``HDFS_20000.log``): after the
first pass every window is one the server has seen, so a verdict cache would answer
all of them. This stream draws sessions (block event sequences) from a split of
``hdfs/sessions/`` (``dev_normal``, and ``dev_abnormal`` at ``anomaly_share``), gives
each a fresh block id and renders each event as a raw HDFS line of that event's
template (a real line of ``hdfs/raw/`` with its block id replaced; eight rare events no
raw file holds are written from their template). ``concurrent`` sessions are open at a
time on each connection (:class:`SessionStream`), their lines interleaved at random;
event time advances ``seconds_per_line`` per line, so a block's lines stay within hours
and its window closes (a day of event-time quiet) a few ten thousand lines after its
last one.

Draws are with replacement, so a long run would repeat even the sessions the split
holds once. Those stand for the traffic's never-seen-before sessions (Good-Turing: the
share of sessions seen once estimates the chance that the next one is new: 11% of
``dev_normal``, 25% of ``dev_abnormal``), so each later draw of such a session is made
new (``keep_novel``): one run of repeated events in it is one event longer, a different
run or length on every draw. The share of windows that repeat an earlier one then stays
near the split's own (89% of ``dev_normal`` windows repeat an earlier one, the figure
issue 17 measured) however long the run.

``write_log`` renders sessions as a raw log file (e.g. ``train_normal``) to train the
bundle such a stream is served to: a bundle trained on ``HDFS_20000.log`` never saw the
delete events (E21, E23) most sessions end with.
"""

from __future__ import annotations

import csv
import random
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

__all__ = ["SessionStream", "write_log"]

_LINE = re.compile(
    r"^(?P<time>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\w+) (?P<component>[^:]+): (?P<log>.*)$"
)
_BLOCK = re.compile(r"blk_-?\d+")
_DIGITS = 19  # fresh block ids: blk_ + 19 digits, the width of the placeholder below
_HOLE = "#" * _DIGITS
_HOLE_BYTES = _HOLE.encode()
_START = 1_226_262_918  # 2008-11-09 20:35:18 UTC, where HDFS.log begins
_RAW_FILES = ("HDFS_20000.log", "HDFS_5k.log", "HDFS_2k.log")
# Events of the sessions that no raw file holds a line of, as ``pid LEVEL component: text``.
_WRITTEN = {
    1: "19 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: "
    "Adding an already existing block {blk}",
    8: "2203 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block {blk} Interrupted.",
    12: "2211 INFO dfs.DataNode$DataXceiver: 10.251.43.21:50010:Exception writing block {blk} "
    "to mirror 10.251.71.193:50010",
    13: "2205 INFO dfs.DataNode$DataXceiver: Receiving empty packet for block {blk}",
    15: "2209 INFO dfs.DataNode$BlockReceiver: Changing block file offset of block {blk} "
    "from 0 to 65536 meta file offset to 519",
    17: "2214 WARN dfs.DataNode: 10.251.107.50:50010:Failed to transfer {blk} to "
    "10.251.126.5:50010 got java.io.IOException: Connection reset by peer",
    24: "27 INFO dfs.FSNamesystem: BLOCK* Removing block {blk} from neededReplications as it "
    "does not belong to any file.",
    27: "31 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: Redundant addStoredBlock "
    "request received for {blk} on 10.251.91.229:50010 size 67108864",
}


@dataclass(frozen=True)
class _Exemplar:
    """One event's line with its block id cut out (``text`` holds ``{blk}``)."""

    pid: str
    level: str
    component: str
    text: str

    def record(self, block: str) -> dict[str, str]:
        """The record Fluent Bit's tail + HDFS parser sends for this line."""
        log = self.text.replace("{blk}", block)
        return {"pid": self.pid, "level": self.level, "component": self.component, "log": log}

    def packed(self) -> bytes:
        """:meth:`record` packed, with a placeholder as wide as a fresh block id's
        digits: filling it in the bytes leaves every msgpack length as it is."""
        return msgpack.packb(self.record("blk_" + _HOLE), use_bin_type=True)  # type: ignore[no-any-return]


def _templates(hdfs: Path) -> list[tuple[int, re.Pattern[str]]]:
    """Each event id with its template as a regex, most literal text first (so the
    most specific template wins when two match)."""
    out = []
    with (hdfs / "sessions" / "HDFS_templates.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            parts = row["EventTemplate"].split("<*>")
            regex = re.compile("^" + ".*?".join(re.escape(p) for p in parts) + "$")
            out.append((sum(map(len, parts)), int(row["EventId"][1:]), regex))
    return [(e, rx) for _, e, rx in sorted(out, key=lambda t: -t[0])]


def _event_of(text: str, templates: list[tuple[int, re.Pattern[str]]]) -> int | None:
    return next((e for e, rx in templates if rx.match(text)), None)


def load_exemplars(hdfs: Path, per_event: int = 32) -> dict[int, list[_Exemplar]]:
    """Up to ``per_event`` real lines per event id (from ``hdfs/raw/``), plus the
    written ones for events no raw file holds; each checked against its template."""
    templates = _templates(hdfs)
    out: dict[int, list[_Exemplar]] = {}
    for name in _RAW_FILES:
        path = hdfs / "raw" / name
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                m = _LINE.match(line.rstrip("\r\n"))
                if m is None or not _BLOCK.search(m["log"]):
                    continue
                event = _event_of(m["log"], templates)
                if event is not None and len(got := out.setdefault(event, [])) < per_event:
                    text = _BLOCK.sub("{blk}", m["log"])
                    got.append(_Exemplar(m["pid"], m["level"], m["component"], text))
    for event, line in _WRITTEN.items():
        m = _LINE.match("000000 000000 " + line)
        if event not in out and m is not None:
            out[event] = [_Exemplar(m["pid"], m["level"], m["component"], m["log"])]
    for event, lines in out.items():  # the renderer must say what the session says
        assert _event_of(lines[0].text.replace("{blk}", "blk_1"), templates) == event, event
    return out


def read_split(path: Path) -> list[tuple[int, ...]]:
    """One event-id sequence per non-empty line."""
    with path.open(encoding="utf-8") as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]


def _variant(seq: tuple[int, ...], k: int) -> tuple[int, ...]:
    """The ``k``-th (>= 1) new form of ``seq``: run ``(k-1) % runs`` of repeated
    events ``1 + (k-1) // runs`` events longer (distinct for every ``k``)."""
    ends = [i for i in range(len(seq)) if i + 1 == len(seq) or seq[i + 1] != seq[i]]
    run, extra = (k - 1) % len(ends), 1 + (k - 1) // len(ends)
    at = ends[run]
    return seq[: at + 1] + (seq[at],) * extra + seq[at + 1 :]


@dataclass
class _Split:
    sessions: list[tuple[int, ...]]
    once: set[int] = field(default_factory=set)  # indices of sequences held once
    draws: Counter[int] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        counts = Counter(self.sessions)
        self.once = {i for i, s in enumerate(self.sessions) if counts[s] == 1}


class SessionStream:
    """Sessions drawn from ``hdfs/sessions/<normal>`` (and ``<abnormal>`` at
    ``anomaly_share``), rendered as records; see the module docstring.

    Each :meth:`cursor` interleaves its own open sessions: the load generator gives
    every connection one, like an agent per host, so a session's lines reach the
    server in order (a cursor shared by two connections would let frames of one
    overtake the other's and shuffle the lines of the sessions they split).
    """

    per_connection = True

    def __init__(
        self,
        hdfs: Path,
        *,
        normal: str = "dev_normal",
        abnormal: str = "dev_abnormal",
        anomaly_share: float = 0.03,
        concurrent: int = 256,
        seconds_per_line: float = 4.0,
        keep_novel: bool = True,
        seed: int = 0,
    ) -> None:
        self.exemplars = load_exemplars(hdfs)
        self.packed = {e: [x.packed() for x in xs] for e, xs in self.exemplars.items()}
        self.splits = [_Split(read_split(hdfs / "sessions" / normal))]
        if anomaly_share > 0:
            self.splits.append(_Split(read_split(hdfs / "sessions" / abnormal)))
        self.anomaly_share = anomaly_share
        self.concurrent = concurrent
        self.seconds_per_line = seconds_per_line
        self.keep_novel = keep_novel
        self.rng = random.Random(seed)
        self._next_block = self.rng.randrange(10**18, 9 * 10**18)
        self.source = (
            f"HDFS sessions {normal}"
            + (f" + {anomaly_share:.0%} {abnormal}" if anomaly_share > 0 else "")
            + (", seen-once sessions kept new" if keep_novel else "")
        )
        self.sessions_drawn = 0

    def draw(self) -> tuple[str, tuple[int, ...]]:
        """A fresh block id and the next session's event ids."""
        anomalous = len(self.splits) > 1 and self.rng.random() < self.anomaly_share
        split = self.splits[int(anomalous)]
        i = self.rng.randrange(len(split.sessions))
        seq = split.sessions[i]
        if self.keep_novel and i in split.once:
            split.draws[i] += 1
            if split.draws[i] > 1:
                seq = _variant(seq, split.draws[i] - 1)
        self.sessions_drawn += 1
        block = f"blk_{self._next_block:0{_DIGITS}d}"
        self._next_block += 1
        return block, seq

    def records(self) -> _Records:
        """An endless iterator of ``(event time, record)``, sessions interleaved."""
        return _Records(self)

    def cursor(self, chunk: int) -> SessionCursor:
        """What :func:`loadgen.run_load` takes frames from."""
        return SessionCursor(self, chunk)


class _Records:
    """Interleaves ``concurrent`` open sessions, one line at a time."""

    def __init__(self, stream: SessionStream) -> None:
        self.stream, self.time = stream, float(_START)
        self.open: list[tuple[str, tuple[int, ...], int]] = [
            (*stream.draw(), 0) for _ in range(stream.concurrent)
        ]

    def __iter__(self) -> _Records:
        return self

    def _step(self) -> tuple[str, int]:
        """The next line's block id and event; moves the clock and the session on."""
        s = self.stream
        slot = int(s.rng.random() * len(self.open))  # randrange's cost, a third of it
        block, seq, at = self.open[slot]
        self.open[slot] = (*s.draw(), 0) if at + 1 == len(seq) else (block, seq, at + 1)
        self.time += s.seconds_per_line
        return block, seq[at]

    def __next__(self) -> tuple[float, dict[str, str]]:
        block, event = self._step()
        return self.time, self.stream.rng.choice(self.stream.exemplars[event]).record(block)

    def next_packed(self) -> tuple[float, bytes]:
        """:meth:`__next__` as msgpack bytes (no dict, no packing per line)."""
        block, event = self._step()
        choices = self.stream.packed[event]
        packed = choices[int(self.stream.rng.random() * len(choices))]
        return self.time, packed.replace(_HOLE_BYTES, block[4:].encode())


class SessionCursor:
    """Hands out consecutive PackedForward entries of the stream (as loadgen's cursor)."""

    def __init__(self, stream: SessionStream, chunk: int) -> None:
        self.records, self.chunk, self.seq = stream.records(), chunk, 0

    def next_entries(self) -> tuple[bytes, int]:
        parts = []
        take = self.records.next_packed
        for _ in range(self.chunk):
            t, packed = take()
            # [EventTime, record]: fixarray(2), fixext8 type 0, then the packed map.
            parts.append(b"\x92\xd7\x00" + struct.pack(">II", int(t), self.seq % 1_000_000_000))
            parts.append(packed)
            self.seq += 1
        return b"".join(parts), self.chunk


def write_log(stream: SessionStream, path: Path, n_lines: int) -> None:
    """``n_lines`` of the stream as a raw HDFS log (``yymmdd HHMMSS pid LEVEL
    component: text``), e.g. to train a bundle on rendered ``train_normal``."""
    import time as _time

    with path.open("w", encoding="utf-8") as f:
        records = stream.records()
        for _ in range(n_lines):
            t, r = next(records)
            stamp = _time.strftime("%y%m%d %H%M%S", _time.gmtime(t))
            f.write(f"{stamp} {r['pid']} {r['level']} {r['component']}: {r['log']}\n")


def main(argv: list[str] | None = None) -> int:
    """Write a rendered split as a raw log, or print how often its windows repeat."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hdfs", type=Path, help="the shared data's hdfs/ folder")
    ap.add_argument("--normal", default="dev_normal")
    ap.add_argument("--anomaly-share", type=float, default=0.03)
    ap.add_argument("--write", type=Path, help="write this many --lines as a raw log here")
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--plain-draws", action="store_true", help="do not keep novel sessions new")
    args = ap.parse_args(argv)
    stream = SessionStream(
        args.hdfs,
        normal=args.normal,
        anomaly_share=args.anomaly_share,
        keep_novel=not args.plain_draws,
    )
    if args.write is not None:
        write_log(stream, args.write, args.lines)
        print(
            f"{args.write}: {args.lines} lines, {stream.sessions_drawn} sessions ({stream.source})"
        )
        return 0
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for n in range(1, 100_001):
        _, seq = stream.draw()
        repeats += seq in seen
        seen.add(seq)
        if n in (5_000, 20_000, 100_000):
            print(f"{n} sessions drawn: {repeats / n:.1%} repeat an earlier one ({stream.source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
