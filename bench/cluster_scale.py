"""Scale-out mode: records/s and close→verdict latency with 1, 2 and 3 workers.

One ``nats-server -js`` (fresh store per run), one ``logsieve serve --nats`` ingress,
N ``logsieve worker`` processes (engine in the worker process), a Forward receiver for
the verdicts (``every_verdict``: one per block). The load is generated HDFS-like raw
lines (as Fluent Bit ``tail`` sends them) pushed by the project's acking Forward client
as fast as the ingress acks, 1,000 records a frame. Measured per run:

* records/s: records / (first send → last verdict, less ``idle_close``: the last
  window cannot close sooner), the whole path;
* ingest records/s: records / (first send → last frame acked), i.e. into JetStream;
* CPU per record of the ingress, the workers together and nats-server (/proc, from the
  first send to the last verdict: start-up excluded), the cost model;
* close→verdict latency per block: verdict arrival - (ack of the frame holding the
  block's last line) - ``idle_close``, the time a closed window waits for its verdict
  (including any backlog between the stream and the worker), p50 / p95 / max.

Run (repo root; BUNDLE e.g. the demo bundle ``logsieve demo`` caches in .cache/)::

    PYTHONPATH=. .venv/bin/python bench/cluster_scale.py BUNDLE [--blocks 1500]
        [--workers 1 2 3] [--partitions 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logsieve.agent_plugin.receiver import FlagReceiver, Received
from logsieve.agent_plugin.upstream import UpstreamClient
from logsieve.agent_plugin.upstream_config import UpstreamConfig
from logsieve.bundle import open_bundle
from logsieve.export.data.readers import parse_hdfs_line
from logsieve.export.data.synth import generate_hdfs
from tests.agent_plugin.serve_proc import free_port
from tests.cluster import procs

IDLE_CLOSE = 1.0
FRAME = 1000


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def config(partitions: int) -> str:
    return f"""\
[server]
udp_heartbeat = false

[upstream]
self_hostname = 'bench'
flush_interval = 0.02

[pipeline]
every_verdict = true
idle_close = {IDLE_CLOSE}
advance_interval = 0.1
engine_process = false

[cluster]
partitions = {partitions}
lease_ttl = 2.0
"""


def load(
    blocks: int,
) -> tuple[list[list[tuple[float, dict[str, str]]]], dict[tuple[str, float], int]]:
    """Frames of raw lines, and per (block, event time) the last frame holding such a
    line (a verdict's ``window_end`` names its window's last line)."""
    log = generate_hdfs(blocks, seed=21)
    events = []
    frame_of: dict[tuple[str, float], int] = {}
    for i, line in enumerate(log.lines):
        events.append((time.time(), {"log": line}))
        parsed = parse_hdfs_line(line)
        assert parsed is not None and parsed.time is not None
        for key in re.findall(r"blk_-?\d+", line):
            frame_of[(key, parsed.time)] = i // FRAME
    frames = [events[i : i + FRAME] for i in range(0, len(events), FRAME)]
    return frames, frame_of


async def run(
    bundle_path: Path, workers: int, blocks: int, partitions: int, keep: bool = False
) -> dict[str, Any]:
    bundle = open_bundle(bundle_path)
    tmp = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    store = tmp / "nats"
    port = free_port()
    nats = subprocess.Popen(
        ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"nats://127.0.0.1:{port}"
    arrivals: list[tuple[float, str, float]] = []  # (when, key, window_end)

    def on_record(r: Received) -> None:
        arrivals.append((time.monotonic(), str(r.record["key"]), r.record["window_end"]))

    rx = FlagReceiver(on_record=on_record)
    await rx.start()
    cfg = tmp / "c.toml"
    cfg.write_text(config(partitions))
    running: list[procs.Proc] = []
    try:
        await asyncio.sleep(0.5)
        for i in range(workers):
            running.append(
                await procs.worker(bundle, cfg, url, rx.port, f"w{i}", tmp / f"w{i}.log")
            )
        ingress_port = free_port()
        running.append(await procs.ingress(bundle, cfg, ingress_port, url, tmp / "in.log"))
        await asyncio.sleep(3.0)  # leases settle (a lease round is lease_ttl / 3)
        frames, frame_of = load(blocks)
        keys = {k for k, _ in frame_of}
        client = UpstreamClient(
            UpstreamConfig(
                host="127.0.0.1", port=ingress_port, self_hostname="agent", ack_timeout=30.0,
                flush_interval=0.01, max_batch_records=FRAME,
            )
        )  # fmt: skip
        await client.start()
        acked_at: list[float] = []
        pids = {
            "ingress": [running[-1].proc.pid],
            "workers": [p.proc.pid for p in running[:-1]],
            "nats": [nats.pid],
        }
        cpu_before = {name: sum(_cpu(pid) for pid in group) for name, group in pids.items()}
        began = time.monotonic()
        for frame in frames:
            for t, rec in frame:
                await client.send("hdfs", rec, time=t)
            assert await client.flush(60.0), client.last_error
            acked_at.append(time.monotonic())
        ingested = time.monotonic()
        deadline = ingested + 60
        while not keys <= {k for _, k, _ in arrivals} and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        missing = keys - {k for _, k, _ in arrivals}
        if missing:
            print(f"{len(missing)} block(s) without a verdict after 60 s: {sorted(missing)[:5]}")
            for p in running:
                print(
                    p.log,
                    [ln for ln in p.text().splitlines() if "WARN" in ln or "ERROR" in ln][-8:],
                )
        await asyncio.sleep(3 * IDLE_CLOSE)  # the last pieces of split blocks
        done = max(t for t, _, _ in arrivals)
        await client.stop(timeout=1.0)
        cpu = {
            name: sum(_cpu(pid) for pid in group) - cpu_before[name] for name, group in pids.items()
        }
    finally:
        for p in running:
            await p.stop()
        await rx.stop()
        nats.terminate()
        nats.wait(10)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    records = sum(len(f) for f in frames)
    lat = sorted(t - acked_at[frame_of[(k, end)]] - IDLE_CLOSE for t, k, end in arrivals)
    return {
        "workers": workers,
        "records": records,
        "blocks": len(keys),
        "verdicts": len(arrivals),
        "records_per_s": records / (done - began - IDLE_CLOSE),
        "ingest_records_per_s": records / (ingested - began),
        "latency_p50": statistics.median(lat),
        "latency_p95": lat[int(0.95 * (len(lat) - 1))],
        "latency_max": lat[-1],
        **{f"cpu_{name}": seconds / records * 1e6 for name, seconds in cpu.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--blocks", type=int, default=1500)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--partitions", type=int, default=16)
    args = ap.parse_args()
    print(
        "| workers | records | windows / blocks | records/s (end to end) | ingest records/s "
        "| close→verdict p50 / p95 / max (s) | CPU µs/record: ingress, workers, nats-server |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in args.workers:
        r = asyncio.run(run(args.bundle, n, args.blocks, args.partitions))
        print(
            f"| {n} | {r['records']} | {r['verdicts']}/{r['blocks']} | {r['records_per_s']:.0f} "
            f"| {r['ingest_records_per_s']:.0f} | {r['latency_p50']:.2f} / "
            f"{r['latency_p95']:.2f} / {r['latency_max']:.2f} | {r['cpu_ingress']:.0f}, "
            f"{r['cpu_workers']:.0f}, {r['cpu_nats']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
