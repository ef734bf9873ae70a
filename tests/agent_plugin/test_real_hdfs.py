"""Real HDFS traffic end to end: raw loghub lines → fluent-logger → server → flags upstream.

Skipped with a reason when ``../shared/data`` (or ``$LOGSIEVE_DATA``) is absent.
"""

from __future__ import annotations

import asyncio
import csv
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.bundle import Bundle
from logsieve.engine import load_engine
from logsieve.export.data.prepare import prepare
from logsieve.export.fastlogad.scoring import score_file

from .served import replay, settings, train_small_bundle

pytestmark = [pytest.mark.data, pytest.mark.slow]

# The README's Fluent Bit parser for HDFS lines (Python's named-group spelling).
HDFS_PARSER = re.compile(
    r"^(?P<time>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\w+) (?P<component>[^:]+): (?P<log>.*)$"
)


def fluent_bit_events(path: Path) -> list[tuple[float, dict[str, Any]]]:
    """(event time, record) per raw line, as Fluent Bit's tail input with that parser
    sends them: the content in ``log``, pid/level/component beside it, ``Time_Key time``
    with ``Time_Format %y%m%d %H%M%S`` (UTC) as the event time."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = HDFS_PARSER.match(line)
        assert m is not None, line
        fields = m.groupdict()
        t = datetime.strptime(fields.pop("time"), "%y%m%d %H%M%S").replace(tzinfo=timezone.utc)
        out.append((t.timestamp(), fields))
    return out


@pytest.fixture(scope="module")
def hdfs_raw(shared_data: Path) -> Path:
    root = shared_data / "hdfs" / "raw"
    if not (root / "HDFS_20000.log").is_file() or not (root / "HDFS_5k.log").is_file():
        pytest.skip(f"HDFS raw logs not found under {root}")
    return root


@pytest.fixture(scope="module")
def real_bundle(hdfs_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A small FastLogAD (d 32, 1 layer, 1+1 epochs) on the raw lines of HDFS_20000 (~10 s)."""
    data = prepare(
        "hdfs",
        hdfs_raw / "HDFS_20000.log",
        train_n=800,
        labels_path=hdfs_raw / "HDFS_20000.block_labels.csv",
    )
    return train_small_bundle(data, tmp_path_factory.mktemp("real_hdfs") / "bundle")


@pytest.mark.asyncio
async def test_real_hdfs_lines_flag_a_known_anomalous_block_upstream(
    real_bundle: Bundle, hdfs_raw: Path
) -> None:
    """HDFS_5k.log (110 complete blocks, 10 labelled anomalous) replayed line by line with
    the real fluent-logger client; the flag for a known anomalous block must come back
    upstream with that block id as ``key`` and its evidence lines.

    This checks the serving path, not model quality: the block asserted on is one that
    the *same* bundle flags offline (``score_file`` on the same file), and the served
    flags must be exactly the offline ones. A small model flags only some of the ten
    anomalous blocks; which ones is decided here, at run time, from the offline scores.
    """
    log_path = hdfs_raw / "HDFS_5k.log"
    with (hdfs_raw / "HDFS_5k.block_labels.csv").open(encoding="utf-8") as f:
        labels = {row["BlockId"]: row["Label"] for row in csv.DictReader(f)}
    assert sum(1 for v in labels.values() if v == "Anomaly") == 10
    offline = {
        sw.key: sw
        for sw in score_file(real_bundle, log_path, "hdfs", backend="onnxruntime")
        if sw.anomaly
    }
    known = sorted(k for k in offline if labels.get(k) == "Anomaly")
    assert known, "the bundle flags none of the 10 anomalous blocks offline: retrain it"
    events = fluent_bit_events(log_path)
    engine = load_engine(real_bundle, "onnxruntime")
    rx = FlagReceiver()
    await rx.start()
    try:
        service = Service(settings(rx.port), real_bundle, engine)
        await service.start()
        try:
            await asyncio.to_thread(replay, service.port, events)
            # Message mode has no acks: wait until the server has decoded every line.
            counter = service.metrics.records_received.labels(mode="message")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30.0
            while sample_value(counter) < len(events) and loop.time() < deadline:
                await asyncio.sleep(0.02)
            assert sample_value(counter) == len(events)
        finally:
            # Blocks idle out after a day of event time: stop() flushes every window
            # through the engine and waits for the upstream acks.
            await service.stop()
        flags = {f["key"]: f for f in rx.flags("logsieve.flag")}
    finally:
        await rx.stop()
    assert set(flags) == set(offline)  # every flag arrived, none invented
    texts = [r["log"] for _, r in events]
    for key in known:
        flag = flags[key]
        assert flag["verdict"] == "anomaly"
        # Why, as offline: its score, or a rare new template (HDFS_5k's anomalous
        # blocks hold error lines HDFS_20000 never has).
        assert flag["reasons"] == offline[key].reasons and flag["reasons"]
        if "score" in flag["reasons"]:
            assert flag["score"] > flag["threshold"]
        assert flag["model_id"] == real_bundle.model_id
        assert flag["lines"] == sum(1 for t in texts if key in t)
        assert flag["evidence"], key
        for e in flag["evidence"]:
            assert key in e["line"] and e["line"] in texts
