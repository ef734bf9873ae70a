"""Where the e2e benchmark's CPU goes: server process vs engine process, per record.

Runs the same max-rate load as ``bench/test_e2e_bench.py`` (its bundle must be given:
an exported bundle trained on ``HDFS_20000.log``, e.g. the one that benchmark leaves in
pytest's temp folder) and, per run, reads /proc: CPU of the server process (all its
threads) and of the engine child, per record and per window, the machine's busy cores,
the engine child's peak RSS, and at the end the server process's peak RSS.

Run (repo root)::

    PYTHONPATH=. .venv/bin/python bench/e2e_cpu.py BUNDLE [--rounds 2] [--duration 8]
        [--engine process|thread] [--gc serving|default]

``--gc default`` serves with CPython's thresholds instead of ``app.GC_THRESHOLD``.
Peak RSS is the process's lifetime peak: compare it between separate invocations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _machine() -> tuple[float, float]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) / _TICK, values[3] / _TICK  # all, idle (core-seconds)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _engine_pid(service: Any) -> int | None:
    """The engine child's pid (``Service.engine`` is an ``EngineWorker`` by default)."""
    proc = getattr(service.engine, "_proc", None)
    return None if proc is None else int(proc.pid)


def _snapshot(service: Any) -> tuple[float, float, float, tuple[float, float]]:
    pid = _engine_pid(service)
    child = _proc_cpu(pid) if pid is not None else 0.0
    return time.perf_counter(), _proc_cpu(os.getpid()), child, _machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--data", type=Path, default=None, help="HDFS_20000.log")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--engine", choices=("process", "thread"), default="process")
    ap.add_argument("--gc", choices=("serving", "default"), default="serving")
    args = ap.parse_args()

    import test_e2e_bench as e2e
    from conftest import data_dir

    from logsieve.agent_plugin import app
    from logsieve.bundle import open_bundle

    data = args.data or (data_dir() or Path("../shared/data")) / "hdfs/raw/HDFS_20000.log"
    if args.gc == "default":
        app.GC_THRESHOLD = (700, 10, 10)  # CPython's
    marks: dict[str, Any] = {}
    start, stop = app.Service.start, app.Service.stop

    async def timed_start(self: Any) -> None:
        await start(self)
        marks["t0"] = _snapshot(self)

    async def timed_stop(self: Any) -> bool:
        marks["t1"] = _snapshot(self)
        pid = _engine_pid(self)
        if pid is not None:
            marks["child_rss"] = _peak_rss_mib(pid)
        delivered: bool = await stop(self)
        return delivered

    app.Service.start, app.Service.stop = timed_start, timed_stop
    bundle = open_bundle(args.bundle)
    pipeline = {"engine_process": args.engine == "process"}
    for _ in range(args.rounds):
        run = asyncio.run(e2e._run(bundle, data, 0.0, args.duration, False, pipeline))
        (w0, m0, c0, s0), (w1, m1, c1, s1) = marks["t0"], marks["t1"]
        wall, n = w1 - w0, run["load"]["records_acked"]
        windows = max(1.0, run["windows_scored_in_run"])
        print(
            f"{args.engine}, gc {args.gc}: {run['load']['records_per_s_acked']:,.0f} records/s; "
            f"server {(m1 - m0) / wall:.2f} cores, {(m1 - m0) / n * 1e6:.0f} us/record; "
            f"engine process {(c1 - c0) / wall:.2f} cores, "
            f"{(c1 - c0) / windows * 1e6:.0f} us/window; "
            f"machine busy {((s1[0] - s0[0]) - (s1[1] - s0[1])) / wall:.2f} of "
            f"{(s1[0] - s0[0]) / wall:.2f} cores; engine process peak RSS "
            f"{marks.get('child_rss', float('nan')):.0f} MiB",
            flush=True,
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the server process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
