"""Forward-protocol load generator: PackedForward frames of HDFS lines, with acks.

Usage::

    .venv/bin/python bench/loadgen.py --port 24224 --chunk 500 --connections 2 \\
        --rate 0 --duration 10 [--data ../shared/data/hdfs/raw/HDFS_20000.log]
    .venv/bin/python bench/loadgen.py --port 24224 --sessions ../shared/data/hdfs

Records are shaped as the README's Fluent Bit ``tail`` + HDFS parser sends them
(``log`` = the message, ``pid``/``level``/``component`` beside it, event time from the
line). Without ``--data`` (or when the file is absent) generated HDFS-like lines are
used. The file is replayed in a loop; each pass is shifted forward in event time by the
file's span plus two days, so every pass opens fresh block windows and the previous
pass's windows idle out (HDFS sessions close after a day of event time): the stream is
unbounded and keeps closing windows at the rate it sends lines.

``--sessions HDFS_DIR`` sends another stream: sessions of ``sessions/dev_normal`` (and
``--anomaly-share`` of ``dev_abnormal``) with fresh block ids, rendered as raw lines
(``bench/hdfs_sessions.py``), whose windows repeat as often as real traffic's rather
than every one after the first pass of a loop.

``--bgl-hosts N`` sends generated BGL-like lines of N nodes (``--bgl-hours`` of them,
looped and time-shifted like the file), parsed as a Fluent Bit BGL parser would
(``log``, ``host``): the stream for per-host sliding windows.

Each connection keeps up to ``--window`` frames in flight, each with a ``chunk`` id,
and counts the acks. ``--rate 0`` sends as fast as acks allow; otherwise frames are
paced to ``--rate`` records/s over all connections. Prints one JSON object: records
sent and acked, records/s sent and acked, the elapsed time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import struct
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Protocol

import msgpack

__all__ = ["Lines", "LoadResult", "Stream", "load_bgl_synth", "load_lines", "run_load"]

HDFS_PARSER = re.compile(
    r"^(?P<time>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\w+) (?P<component>[^:]+): (?P<log>.*)$"
)
_DAYS2 = 2 * 86_400


@dataclass
class Lines:
    """Pre-packed records (msgpack maps, no time) and their event times (epoch s)."""

    times: list[int]
    packed: list[bytes]
    source: str
    per_connection: ClassVar[bool] = False  # one file, its chunks shared by the connections

    @property
    def span(self) -> int:
        return self.times[-1] - self.times[0] + 1 if self.times else 1

    def cursor(self, chunk: int) -> _Cursor:
        """Chunks of the looped, time-shifted lines."""
        return _Cursor(self, chunk)


class Stream(Protocol):
    """Where frames come from: :class:`Lines` or ``hdfs_sessions.SessionStream``."""

    source: str
    # True: each connection gets its own cursor (an agent with its own sessions, whose
    # lines then reach the server in order); False: one cursor shared by all.
    per_connection: ClassVar[bool]

    def cursor(self, chunk: int) -> Any:
        """An object whose ``next_entries()`` gives ``(PackedForward entries, count)``."""
        ...


def load_lines(path: Path | None, limit: int | None = None) -> Lines:
    """Parse raw HDFS lines with the README's parser; generated lines without a file."""
    if path is not None and path.is_file():
        raw = path.read_text(encoding="utf-8").splitlines()
        source = str(path)
    else:
        from logsieve.export.data.synth import generate_hdfs

        raw = generate_hdfs(2000, anomaly_rate=0.03, seed=0).lines
        source = "generated HDFS-like lines"
    times, packed = [], []
    for line in raw[:limit]:
        m = HDFS_PARSER.match(line)
        if m is None:
            continue
        fields = m.groupdict()
        stamp = datetime.strptime(fields.pop("time"), "%y%m%d %H%M%S")
        times.append(int(stamp.replace(tzinfo=timezone.utc).timestamp()))
        packed.append(msgpack.packb(fields, use_bin_type=True))
    return Lines(times, packed, source)


def load_bgl_synth(n_hosts: int, hours: float, seed: int = 5) -> Lines:
    """Generated BGL-like lines of ``n_hosts`` nodes (``export.data.synth_bgl``, 3% of
    each host's 5-minute slots anomalous), shaped as a Fluent Bit BGL parser sends them:
    ``log`` the content, ``host`` the node, event time from the line. For per-host
    sliding windows: every record sits in ``size / step`` windows."""
    from logsieve.export.data.synth_bgl import generate_bgl
    from logsieve.logs.lineformat import parse_bgl_line

    log = generate_bgl(n_hosts, hours * 3600, anomaly_rate=0.03, seed=seed)
    times, packed = [], []
    for line in log.lines:
        parsed = parse_bgl_line(line)
        if parsed is None or parsed[0].time is None:
            continue
        rec = parsed[0]
        times.append(int(rec.time))
        packed.append(msgpack.packb({"log": rec.text, "host": rec.host}, use_bin_type=True))
    return Lines(times, packed, f"generated BGL-like lines, {n_hosts} hosts, {hours:g} h, looped")


@dataclass
class LoadResult:
    """What one run sent and got acknowledged."""

    records_sent: int
    records_acked: int
    frames_sent: int
    frames_acked: int
    records_rendered_live: int  # sent after the pre-rendered frames ran out
    seconds: float
    cpu_seconds: float  # this process's CPU from the clock's start (no pre-rendering)
    records_per_s_sent: float
    records_per_s_acked: float
    chunk: int
    connections: int
    target_rate: float
    source: str


class _Cursor:
    """Hands out consecutive chunks of the looped, time-shifted stream."""

    def __init__(self, lines: Lines, chunk: int) -> None:
        self.lines, self.chunk, self.at = lines, chunk, 0

    def next_entries(self) -> tuple[bytes, int]:
        lines, n = self.lines, len(self.lines.times)
        parts = []
        for i in range(self.at, self.at + self.chunk):
            loop, j = divmod(i, n)
            sec = lines.times[j] + loop * (lines.span + _DAYS2)
            # [EventTime, record]: fixarray(2), fixext8 type 0, then the packed map.
            parts.append(b"\x92\xd7\x00" + struct.pack(">II", sec, i % 1_000_000_000))
            parts.append(lines.packed[j])
        self.at += self.chunk
        return b"".join(parts), self.chunk


async def _connection(
    port: int,
    cursor: Any,
    pace: _Pace,
    deadline: float,
    window: int,
    tag: str,
    counts: dict[str, int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    slots = asyncio.Semaphore(window)
    sizes: dict[bytes, int] = {}
    unpacker = msgpack.Unpacker(raw=True)

    async def read_acks() -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                unpacker.feed(data)
                for obj in unpacker:
                    counts["records_acked"] += sizes.pop(obj[b"ack"])
                    counts["frames_acked"] += 1
                    slots.release()

    acks = asyncio.create_task(read_acks())
    seq = 0
    try:
        while time.monotonic() < deadline:
            await slots.acquire()
            entries, n = cursor.next_entries()
            await pace.wait(n)
            chunk = f"{id(writer):x}-{seq}".encode()
            seq += 1
            sizes[chunk] = n
            option = {"chunk": chunk, "size": n}
            writer.write(msgpack.packb([tag, entries, option], use_bin_type=True))
            counts["records_sent"] += n
            counts["frames_sent"] += 1
            await writer.drain()
        # Wait for the acks still outstanding (bounded).
        end = time.monotonic() + 30.0
        while sizes and time.monotonic() < end and not acks.done():
            await asyncio.sleep(0.01)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        acks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acks


class _Rendered:
    """Frames of ``cursor`` rendered before the run, handed out first; then live ones
    (counted in ``counts["records_rendered_live"]``). The server gets the same bytes
    either way; rendering up front keeps the client's Python off the cores the server
    is measured on (an agent runs on other machines)."""

    def __init__(self, cursor: Any, records: int, counts: dict[str, int]) -> None:
        self.cursor, self.counts = cursor, counts
        self.frames: collections.deque[tuple[bytes, int]] = collections.deque()
        rendered = 0
        while rendered < records:
            entries, n = cursor.next_entries()
            self.frames.append((entries, n))
            rendered += n

    def next_entries(self) -> tuple[bytes, int]:
        if self.frames:
            return self.frames.popleft()
        entries, n = self.cursor.next_entries()
        self.counts["records_rendered_live"] += n
        return entries, n


class _Pace:
    """Global pacing: the n-th record may leave at ``start + n / rate``."""

    def __init__(self, rate: float) -> None:
        self.rate, self.sent, self.start = rate, 0, time.monotonic()

    async def wait(self, n: int) -> None:
        if self.rate <= 0:
            return
        due = self.start + self.sent / self.rate
        self.sent += n
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def run_load(
    port: int,
    lines: Stream,
    *,
    chunk: int = 500,
    connections: int = 2,
    rate: float = 0.0,
    duration: float = 10.0,
    window: int = 8,
    tag: str = "hdfs",
    prerender: int = 0,
) -> LoadResult:
    """Drive the server at ``127.0.0.1:port`` for ``duration`` s; see the module docstring.
    ``prerender``: records (over all connections) rendered before the clock starts."""
    counts = {
        "records_sent": 0, "records_acked": 0, "frames_sent": 0, "frames_acked": 0,
        "records_rendered_live": 0,
    }  # fmt: skip
    shared = lines.cursor(chunk)
    cursors = [lines.cursor(chunk) if lines.per_connection else shared for _ in range(connections)]
    if prerender > 0:
        if lines.per_connection:
            cursors = [_Rendered(c, -(-prerender // connections), counts) for c in cursors]
        else:
            cursors = [_Rendered(shared, prerender, counts)] * connections
    pace = _Pace(rate)
    cpu, start = time.process_time(), time.monotonic()
    await asyncio.gather(
        *(
            _connection(port, cursor, pace, start + duration, window, tag, counts)
            for cursor in cursors
        )
    )
    seconds = time.monotonic() - start
    return LoadResult(
        **counts,
        seconds=seconds,
        cpu_seconds=time.process_time() - cpu,
        records_per_s_sent=counts["records_sent"] / seconds,
        records_per_s_acked=counts["records_acked"] / seconds,
        chunk=chunk,
        connections=connections,
        target_rate=rate,
        source=lines.source,
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints the :class:`LoadResult` as one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data", type=Path, default=None, help="raw HDFS log (default: generated)")
    ap.add_argument("--chunk", type=int, default=500, help="records per frame")
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--rate", type=float, default=0.0, help="records/s in all; 0 = max")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    ap.add_argument("--window", type=int, default=8, help="frames in flight per connection")
    ap.add_argument("--tag", default="hdfs")
    ap.add_argument(
        "--prerender", type=int, default=0, help="records to render before the clock starts"
    )
    ap.add_argument("--sessions", type=Path, default=None, help="hdfs/ data folder: sessions")
    ap.add_argument("--anomaly-share", type=float, default=0.03, help="with --sessions")
    ap.add_argument("--bgl-hosts", type=int, default=0, help="generated BGL-like hosts")
    ap.add_argument("--bgl-hours", type=float, default=6.0, help="with --bgl-hosts")
    args = ap.parse_args(argv)
    lines: Stream
    if args.bgl_hosts > 0:
        lines = load_bgl_synth(args.bgl_hosts, args.bgl_hours)
    elif args.sessions is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from hdfs_sessions import SessionStream

        lines = SessionStream(args.sessions, anomaly_share=args.anomaly_share)
    else:
        lines = load_lines(args.data)
    result = asyncio.run(
        run_load(
            args.port, lines, chunk=args.chunk, connections=args.connections,
            rate=args.rate, duration=args.duration, window=args.window, tag=args.tag,
            prerender=args.prerender,
        )
    )  # fmt: skip
    out: dict[str, Any] = asdict(result)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
