"""Per-record CPU of the event loop's hot path, in-process, by stage (issue 17).

The e2e benchmark (``test_e2e_bench.py``) gives records/s of the whole server on a
machine shared with other work; this gives the CPU seconds the event loop spends per
record, stage by stage, measured with ``time.thread_time`` (the calling thread's CPU,
so neither other processes nor the engine's threads count):

1. **decode**: a 500-record PackedForward request as ``bench/loadgen.py`` sends it,
   through :class:`~logsieve.agent_plugin.forward.codec.FrameDecoder` (framing) and
   :func:`~logsieve.agent_plugin.forward.modes.decode_request` (entries, EventTime);
2. **put**: :meth:`StreamingPipeline.put` of those decoded batches (scoring excluded:
   the windows ``put`` closes are queued and scored between the timed calls), and its
   parts, as cumulative prefixes of the same work on fresh objects: record text,
   + the line (``RecordReader.read``: raw-line parse, trusted time), + window keys,
   + template match, + novelty bookkeeping, ``Event`` and windower
   (``LinePipeline.feed_line``, which does keys and match itself); ``put`` minus the
   last is the glue (loop, counters, watermark base, queueing closed windows).

Records: sessions of the shared data's dev split rendered as raw HDFS lines
(:mod:`hdfs_sessions`, as ``LOGSIEVE_BENCH_STREAM=sessions`` serves them) when
``LOGSIEVE_DATA`` (or ``--data``) holds ``hdfs/``; otherwise generated HDFS-like
lines (``generate_hdfs``), shaped as Fluent Bit's tail + HDFS parser sends them.
The bundle (its templates and window settings; the model is not run inside ``put``):
``--bundle`` (e.g. the default-size one ``test_e2e_bench.py`` trains), else a small
one trained here on the same kind of lines.

Run (repo root)::

    LOGSIEVE_DATA=../shared/data PYTHONPATH=. .venv/bin/python bench/hotpath.py \\
        [--bundle DIR] [--records 100000] [--rounds 3] [--profile] [--gc default]

Figures are the best of ``--rounds`` (the spread says how noisy the machine was), with
the server's GC thresholds (``--gc default``: CPython's).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).parent))

from logsieve.agent_plugin.forward import ForwardLimits, RecordBatch
from logsieve.agent_plugin.forward.codec import FrameDecoder
from logsieve.agent_plugin.forward.modes import decode_request
from logsieve.agent_plugin.pipeline import StreamingPipeline
from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.bundle import Bundle, open_bundle
from logsieve.engine.base import EngineInfo
from logsieve.logs.pipeline import Event

CHUNK = 500
TAG = "hdfs"


class NullEngine:
    """A :class:`~logsieve.engine.windows.WindowEngine` that scores every window 0.0:
    what ``put`` does does not depend on the model, and scoring is not timed."""

    info = EngineInfo("null", "fp32", "cpu", 256, 512, "-")
    restarts = 0

    def score_ids(self, windows: Any) -> list[tuple[float, list[float]]]:
        return [(0.0, [0.0] * len(w)) for w in windows]

    async def score_ids_async(self, windows: Any) -> list[tuple[float, list[float]]]:
        return self.score_ids(windows)

    def close(self) -> None:
        pass


class _NullUpstream:
    async def send(self, tag: str, record: dict[Any, Any], time: float | None = None) -> bool:
        return True


def session_requests(hdfs: Path, n_records: int) -> list[bytes]:
    """Wire bytes of PackedForward requests of the dev-split sessions stream."""
    from hdfs_sessions import SessionStream

    cursor = SessionStream(hdfs).cursor(CHUNK)
    out = []
    for k in range(n_records // CHUNK):
        entries, n = cursor.next_entries()
        option = {"chunk": f"c-{k}".encode(), "size": n}
        out.append(msgpack.packb([TAG, entries, option], use_bin_type=True))
    return out


def generated_requests(n_records: int) -> list[bytes]:
    """The same shape from generated HDFS-like lines (no shared data needed)."""
    from loadgen import load_lines

    lines = load_lines(None)
    out = []
    for k in range(n_records // CHUNK):
        parts = []
        for i in range(k * CHUNK, (k + 1) * CHUNK):
            j = i % len(lines.packed)
            # Each loop of the file later in time, as loadgen shifts it.
            stamp = lines.times[j] + (i // len(lines.packed)) * lines.span
            parts.append(b"\x92\xd7\x00" + stamp.to_bytes(4, "big") + i.to_bytes(4, "big"))
            parts.append(lines.packed[j])
        option = {"chunk": f"c-{k}".encode(), "size": CHUNK}
        out.append(msgpack.packb([TAG, b"".join(parts), option], use_bin_type=True))
    return out


def small_bundle(hdfs: Path | None, out: Path) -> Bundle:
    """A small model trained on the kind of lines served (rendered train_normal
    sessions, or generated lines): the same templates a larger model would have."""
    from logsieve.export.data.prepare import prepare
    from tests.agent_plugin.served import train_small_bundle

    log = out / "train.log"
    if hdfs is not None:
        from hdfs_sessions import SessionStream, write_log

        stream = SessionStream(hdfs, normal="train_normal", anomaly_share=0.0)
        write_log(stream, log, 60_000)
    else:
        from logsieve.export.data.synth import generate_hdfs

        log.write_text("\n".join(generate_hdfs(3000, seed=1).lines) + "\n", encoding="utf-8")
    return train_small_bundle(prepare("hdfs", log, train_n=2000), out / "bundle")


def _best(seconds: list[float], n: int) -> str:
    return f"{1e6 * min(seconds) / n:6.2f} µs (worst {1e6 * max(seconds) / n:.2f})"


def decode_stages(requests: list[bytes], rounds: int) -> tuple[list[RecordBatch], dict[str, str]]:
    """Time framing and decoding; returns the batches (as the server would get them)."""
    limits = ForwardLimits()
    n = len(requests) * CHUNK
    framing, decoding = [], []
    batches: list[RecordBatch] = []
    for _ in range(rounds):
        decoder = FrameDecoder(limits)  # one connection
        t0 = time.thread_time()
        frames = []
        for data in requests:
            decoder.feed(data)
            frames.extend(decoder)
        t1 = time.thread_time()
        batches = [decode_request(f, limits) for f in frames]  # type: ignore[misc]
        t2 = time.thread_time()
        framing.append(t1 - t0)
        decoding.append(t2 - t1)
    totals = [a + b for a, b in zip(framing, decoding, strict=True)]
    return batches, {
        "decode total (framing + decode_request)": _best(totals, n),
        "  framing (FrameDecoder)": _best(framing, n),
        "  decode_request (entries, times)": _best(decoding, n),
    }


def _pipeline(bundle: Bundle) -> StreamingPipeline:
    config = PipelineConfig(engine_process=False, queue_size=1_000_000)
    return StreamingPipeline(config, bundle, NullEngine(), _NullUpstream())  # type: ignore[arg-type]


def _records(batches: list[RecordBatch]) -> Iterator[Any]:
    for batch in batches:
        yield from batch.records


def put_parts(bundle: Bundle, batches: list[RecordBatch], rounds: int) -> dict[str, str]:
    """Cumulative prefixes of put's per-record work, each on a fresh pipeline."""
    n = sum(len(b.records) for b in batches)

    def text(p: StreamingPipeline) -> None:
        text_of = p.reader.text
        for rec in _records(batches):
            text_of(rec.record)

    def line(p: StreamingPipeline) -> None:
        read, until = p.reader.read, p.reader.trusted_until()
        for rec in _records(batches):
            read(rec.record, rec.time, until)

    def keys(p: StreamingPipeline) -> None:
        read, until, keys_of = p.reader.read, p.reader.trusted_until(), p.lines.keys.keys_of
        for rec in _records(batches):
            got = read(rec.record, rec.time, until)
            if got is not None:
                keys_of(got[2], got[1], rec.record)

    def match(p: StreamingPipeline) -> None:
        read, until, keys_of = p.reader.read, p.reader.trusted_until(), p.lines.keys.keys_of
        match_of = p.lines.matcher.match
        for rec in _records(batches):
            got = read(rec.record, rec.time, until)
            if got is not None:
                keys_of(got[2], got[1], rec.record)
                match_of(got[2])

    def feed(p: StreamingPipeline) -> None:
        read, until, feed_line = p.reader.read, p.reader.trusted_until(), p.lines.feed_line
        for rec in _records(batches):
            got = read(rec.record, rec.time, until)
            if got is not None:
                feed_line(got[0], got[1], got[2], rec.record)

    stages: list[tuple[str, Callable[[StreamingPipeline], None]]] = [
        ("record text", text),
        ("+ line (RecordReader.read: raw parse, trusted time)", line),
        ("+ window keys", keys),
        ("+ template match", match),
        ("+ novelty, Event, windower (feed_line)", feed),
    ]
    out: dict[str, str] = {}
    for name, stage in stages:
        took = []
        for _ in range(rounds):
            p = _pipeline(bundle)
            t0 = time.thread_time()
            stage(p)
            took.append(time.thread_time() - t0)
        out[name] = _best(took, n)
    return out


async def _put_all(
    bundle: Bundle, batches: list[RecordBatch], profiler: cProfile.Profile | None
) -> float:
    p = _pipeline(bundle)
    await p.start()
    took = 0.0
    for batch in batches:
        if profiler is not None:
            profiler.enable()
        t0 = time.thread_time()
        await p.put(batch)  # never yields here: the queue has room for every window
        took += time.thread_time() - t0
        if profiler is not None:
            profiler.disable()
        await asyncio.sleep(0)  # the batcher scores what closed, untimed
    await p.close()
    return took


def put_total(
    bundle: Bundle, batches: list[RecordBatch], rounds: int, profile: bool
) -> dict[str, str]:
    n = sum(len(b.records) for b in batches)
    took = [asyncio.run(_put_all(bundle, batches, None)) for _ in range(rounds)]
    if profile:
        profiler = cProfile.Profile()
        asyncio.run(_put_all(bundle, batches, profiler))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return {"put total (StreamingPipeline.put)": _best(took, n)}


def records_digest(batches: list[RecordBatch]) -> str:
    """A digest of the decoded records, to compare before/after a change."""
    import hashlib

    h = hashlib.sha256()
    for b in batches:
        h.update(repr((b.tag, b.chunk, b.mode, b.size, b.skipped_markers)).encode())
        for r in b.records:
            h.update(repr((r.tag, r.time, r.time_ns, r.record, r.metadata)).encode())
    return h.hexdigest()[:16]


def check_windows(bundle: Bundle, batches: list[RecordBatch]) -> str:
    """A digest of every window and event put made, to compare before/after a change."""
    import hashlib

    windows: list[Any] = []

    async def run() -> None:
        p = _pipeline(bundle)
        await p.start()
        for batch in batches:
            await p.put(batch)
        while not p._queue.empty():  # the closed ones, in the order put queued them
            windows.append(p._queue.get_nowait())
        windows.extend(p.lines.flush())
        await p.close()

    asyncio.run(run())
    h = hashlib.sha256()
    for w in windows:
        if not hasattr(w, "items"):
            continue
        items: list[Event] = w.items
        h.update(repr((w.key, w.start, w.end, w.closed_by)).encode())
        h.update(repr([(e.time, e.template_id, e.text, e.seq) for e in items]).encode())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="the shared data folder")
    ap.add_argument("--bundle", type=Path, default=None, help="a bundle (default: train one)")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile one put run")
    ap.add_argument(
        "--gc",
        choices=("serving", "default"),
        default="serving",
        help="the server's GC thresholds (app.GC_THRESHOLD, as served) or CPython's",
    )
    args = ap.parse_args()
    if args.gc == "serving":
        import gc

        from logsieve.agent_plugin.app import GC_THRESHOLD

        gc.set_threshold(*GC_THRESHOLD)
    from tests.conftest import data_dir

    root = args.data or data_dir()
    hdfs = root / "hdfs" if root is not None and (root / "hdfs" / "sessions").is_dir() else None
    if hdfs is not None:
        requests, source = session_requests(hdfs, args.records), "dev-split HDFS sessions"
    else:
        requests, source = generated_requests(args.records), "generated HDFS-like lines"
    with tempfile.TemporaryDirectory() as tmp:
        if args.bundle is not None:
            bundle = open_bundle(args.bundle)
        else:
            bundle = small_bundle(hdfs, Path(tmp))
        n = len(requests) * CHUNK
        print(f"{n} records of {source}, {CHUNK}-record frames; bundle {bundle.path}")
        batches, figures = decode_stages(requests, args.rounds)
        figures.update(put_total(bundle, batches, args.rounds, args.profile))
        figures.update(put_parts(bundle, batches, args.rounds))
        for name, value in figures.items():
            print(f"{name:52s} {value}")
        digests = records_digest(batches), check_windows(bundle, batches)
        print("digests: records {}, windows {}".format(*digests))


if __name__ == "__main__":
    main()
