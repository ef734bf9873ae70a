"""HDFS_5k raw lines (``log`` = the whole line, no parser) through a real Service.

Usage: ``.venv/bin/python bench/served_raw_hdfs.py BUNDLE`` with a bundle trained on
``HDFS_20000.log``; prints the anomalous and normal blocks flagged upstream against
``HDFS_5k.block_labels.csv``. Records carry the agent's read time (now), not the line's
own: the bundle's parser takes the time from the line.
"""

from __future__ import annotations

import asyncio
import csv
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.bundle import open_bundle
from logsieve.engine import load_engine
from tests.agent_plugin.served import replay, settings

DATA = Path(os.environ.get("LOGSIEVE_DATA", Path(__file__).resolve().parents[2] / "shared/data"))


async def main(bundle_path: Path) -> None:
    raw = DATA / "hdfs" / "raw"
    bundle = open_bundle(bundle_path)
    with (raw / "HDFS_5k.log").open(encoding="utf-8", errors="replace") as f:
        lines = [line.rstrip("\r\n") for line in f if line.strip()]
    with (raw / "HDFS_5k.block_labels.csv").open(encoding="utf-8") as f:
        labels = {r["BlockId"]: r["Label"] for r in csv.DictReader(f)}
    t0 = time.time()
    events = [(t0 + i * 0.001, {"log": line}) for i, line in enumerate(lines)]
    rx = FlagReceiver()
    await rx.start()
    svc = Service(settings(rx.port), bundle, load_engine(bundle, "onnxruntime"))
    await svc.start()
    await asyncio.to_thread(replay, svc.port, events)
    received = svc.metrics.records_received.labels(mode="message")
    while sample_value(received) < len(events):
        await asyncio.sleep(0.05)
    parsed = dict(svc.pipeline.reader.raw_counts)
    await svc.stop()
    await rx.stop()
    keys = {f["key"] for f in rx.flags("logsieve.flag") if f["verdict"] == "anomaly"}
    anomalous = sum(1 for k in keys if labels.get(k) == "Anomaly")
    normal = sum(1 for k in keys if labels.get(k) == "Normal")
    print(
        f"served raw lines: {len(lines)} records ({parsed}); anomalous blocks flagged "
        f"{anomalous}/10, normal {normal}/100; new-pattern records "
        f"{len(rx.records('logsieve.pattern'))}"
    )


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
