"""Per-record cost of the serving hot path's two Python stages, outside asyncio.

The end-to-end benchmark (``test_e2e_bench.py``) gives records/s for the whole server;
this splits the event loop's share into its stages, without a profiler's overhead:

1. ``msgpack`` alone: unpacking a 500-record PackedForward payload, with the codec's
   ``ext_hook`` and with msgpack's own ``ExtType`` (what the hook saves);
2. Forward decode: :func:`decode_request` of fresh 500-record frames (unpack, EventTime,
   record checks);
3. windowing: record text, window key, template match, windower, as the pipeline does.

Run (repo root): ``PYTHONPATH=. .venv/bin/python bench/stage_costs.py [--data DIR]``
(real lines of ``hdfs/raw/HDFS_20000.log``, shaped as ``bench/loadgen.py`` sends them).
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
import timeit
from pathlib import Path

import msgpack

from logsieve.agent_plugin.forward import ForwardLimits
from logsieve.agent_plugin.forward.codec import RawFrame, make_unpacker
from logsieve.agent_plugin.forward.modes import decode_request
from logsieve.export.data.prepare import prepare
from logsieve.logs.pipeline import LinePipeline
from logsieve.logs.records import LogRecord
from logsieve.logs.templates import TemplateMatcher
from tests.agent_plugin.served import train_small_bundle
from tests.conftest import data_dir

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import load_lines  # a script beside this one, not a package

CHUNK = 500
ROUNDS = 5


def _payload(lines: object, start: int) -> bytes:
    """``CHUNK`` ``[EventTime, record]`` entries, as loadgen packs them."""
    times, packed = lines.times, lines.packed  # type: ignore[attr-defined]
    out = []
    for i in range(start, start + CHUNK):
        j = i % len(packed)
        stamp = msgpack.ExtType(0, struct.pack(">II", times[j] + start, 0))
        out.append(b"\x92" + msgpack.packb(stamp) + packed[j])
    return b"".join(out)


def main(root: Path) -> None:
    log = root / "hdfs" / "raw" / "HDFS_20000.log"
    lines = load_lines(log)
    payloads = [_payload(lines, k * CHUNK) for k in range(40)]
    limits = ForwardLimits()

    def unpack(payload: bytes, hook: bool) -> list[object]:
        if hook:
            unpacker = make_unpacker(limits, len(payload), raw=False)
        else:
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(payload)
        return list(unpacker)

    for hook in (False, True):

        def unpack_first(h: bool = hook) -> list[object]:
            return unpack(payloads[0], h)

        t = min(timeit.repeat(unpack_first, number=50, repeat=5)) / 50
        print(f"msgpack unpack, {CHUNK} records, ext_hook={hook}: {1e3 * t:.3f} ms")

    frames = [RawFrame([b"hdfs", p, {b"chunk": b"x"}], len(p)) for p in payloads]
    decode_s = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        batches = [decode_request(f, limits) for f in frames]
        decode_s.append(time.perf_counter() - t0)
    records = [r for b in batches for r in b.records]
    n = len(records)
    print(f"Forward decode: {_span(decode_s, n)} µs/record ({n} records, {ROUNDS} rounds)")

    with tempfile.TemporaryDirectory() as tmp:
        data = prepare(
            "hdfs", log, train_n=800, labels_path=log.with_name("HDFS_20000.block_labels.csv")
        )
        bundle = train_small_bundle(data, Path(tmp) / "bundle")
    assert bundle.templates_state is not None
    window_s = []
    for _ in range(ROUNDS):  # a fresh pipeline each round: the same windows every time
        pipe = LinePipeline(bundle.log_config, TemplateMatcher.from_state(bundle.templates_state))
        t0 = time.perf_counter()
        for rec in records:
            text = rec.record["log"].rstrip("\r\n")
            pipe.feed_event(LogRecord(rec.time, rec.record.get("host"), text), rec.record)
        window_s.append(time.perf_counter() - t0)
    print(f"text, key, template, windower: {_span(window_s, n)} µs/record")


def _span(seconds: list[float], n: int) -> str:
    """Best and worst round, per record: the spread says how noisy the machine was."""
    return f"{1e6 * min(seconds) / n:.2f} (worst {1e6 * max(seconds) / n:.2f})"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    root = args.data or data_dir()
    if root is None:
        sys.exit("no data folder: pass --data or set LOGSIEVE_DATA")
    main(root)
