"""Cost of the serving hook that reads raw lines (``PipelineConfig.raw_lines``).

Times the per-record part of :meth:`StreamingPipeline.put` outside asyncio, on the real
lines of ``hdfs/raw/HDFS_20000.log``: text → (raw-line parser) → ``LogRecord`` →
:meth:`LinePipeline.feed_event`, in three variants measured in one run:

- ``no hook``: content fed as it is (the path before raw lines were read);
- ``hook, content``: the hook on already-parsed content (each text tried, none parses);
- ``hook, raw lines``: whole raw lines in ``log``, split by the bundle's parser.

Run (repo root): ``PYTHONPATH=. .venv/bin/python bench/raw_lines.py [--data DIR]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from logsieve.config import LineFormat
from logsieve.export.data.formats import default_log_config
from logsieve.logs.lineformat import LineParser, parse_hdfs_line
from logsieve.logs.pipeline import LinePipeline, mine_templates
from logsieve.logs.records import LogRecord
from logsieve.logs.templates import TemplateMatcher
from tests.conftest import data_dir

ROUNDS = 5


def _run(
    texts: list[tuple[float, str]],
    state: dict[str, object],
    parse_raw: Callable[[str], LogRecord | None] | None,
) -> float:
    """Records/s of one pass (a fresh pipeline, as put() runs it per record)."""
    config = default_log_config("hdfs")
    lines = LinePipeline(config, TemplateMatcher.from_state(state))
    feed = lines.feed_event
    t0 = time.perf_counter()
    host = None  # session windows: put() reads no host
    for rec_time, text in texts:  # the loop body of StreamingPipeline.put
        if parse_raw is not None and (line := parse_raw(text)) is not None:
            if line.time is None or (line.host is None and host is not None):
                t = line.time if line.time is not None else rec_time
                line = LogRecord(t, line.host or host, line.text)
            record = line
        else:
            record = LogRecord(rec_time, host, text)
        feed(record, None)
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir())
    args = parser.parse_args()
    if args.data is None:
        raise SystemExit("no data: pass --data or set LOGSIEVE_DATA")
    raw = (args.data / "hdfs/raw/HDFS_20000.log").read_text(encoding="utf-8").splitlines()
    parsed = [parse_hdfs_line(line) for line in raw]
    content = [(r.time or 0.0, r.text) for r in parsed if r is not None]
    as_raw = [(1.9e9, line) for line in raw]
    state = mine_templates((t for _, t in content), default_log_config("hdfs"))
    hook = LineParser(LineFormat("hdfs")).parse_raw
    variants = {
        "no hook (content)": (content, None),
        "hook, content": (content, hook),
        "hook, raw lines": (as_raw, hook),
    }
    best = {name: 0.0 for name in variants}
    for _ in range(ROUNDS):  # interleaved, so a noisy neighbour hits every variant
        for name, (texts, parse) in variants.items():
            best[name] = max(best[name], _run(texts, state, parse))
    base = best["no hook (content)"]
    print(f"{len(raw)} HDFS lines, best of {ROUNDS} rounds")
    for name, rate in best.items():
        print(f"  {name:<20s} {rate:>10,.0f} records/s  ({rate / base:.2f}x)")


if __name__ == "__main__":
    main()
