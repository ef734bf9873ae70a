"""Seeded synthetic logs: HDFS-like block sessions and BGL-like per-host streams.

The embedded data for the demo, the in-repo tests and the load generator (no
real log is copied: templates are written here from the public formats). The
output uses the real raw line formats, so :mod:`export.data.readers` parses it.
Anomalies of five kinds (:data:`ANOMALY_KINDS`) can be injected, each labelled
with its kind; the same arguments and seed always give identical output.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

from logsieve.errors import ConfigError
from logsieve.export.data.synth_base import (
    ANOMALY_KINDS,
    Event,
    Stamps,
    SynthLog,
    check_kinds,
    novel_text,
    random_ip,
    write_synth,
)
from logsieve.export.data.synth_bgl import BGL_START, generate_bgl

__all__ = [
    "ANOMALY_KINDS",
    "BGL_START",
    "HDFS_START",
    "SynthLog",
    "generate_bgl",
    "generate_hdfs",
    "write_synth",
]

HDFS_START = 1226262918.0  # 2008-11-09 20:35:18 UTC, where the real HDFS log starts

_XC = "INFO dfs.DataNode$DataXceiver"
_PR = "INFO dfs.DataNode$PacketResponder"
_NS = "INFO dfs.FSNamesystem"
_HDFS_ERRORS = (  # never produced by a normal block
    "{pid} INFO dfs.DataNode$DataXceiver: writeBlock {blk} received exception "
    "java.io.IOException: Could not read from stream",
    "{pid} INFO dfs.DataNode$PacketResponder: PacketResponder {blk} 2 Exception "
    "java.io.InterruptedIOException: Interruped while waiting for IO on channel",
    "{pid} INFO dfs.DataNode$BlockReceiver: Exception in receiveBlock for block {blk} "
    "java.io.IOException: Connection reset by peer",
    "{pid} WARN dfs.FSDataset: Unexpected error trying to delete block {blk}. "
    "BlockInfo not found in volumeMap.",
    "{pid} INFO dfs.PendingReplicationMonitor: PendingReplicationMonitor timed out block {blk}",
)


def _hdfs_block(
    rng: random.Random, nodes: list[str], blk: str, t0: float, job: str
) -> list[tuple[float, int, str]]:
    """One normal block's lifecycle as ``(time, phase, tail)``, in lifecycle order."""
    reps = rng.sample(nodes, 3)
    size = 67108864 if rng.random() < 0.7 else rng.randrange(1000, 67108864)
    task = rng.randrange(2000)
    if rng.random() < 0.05:
        path = f"/mnt/hadoop/mapred/system/job_{job}/job.{rng.choice(('jar', 'split', 'xml'))}"
    else:
        path = f"/user/root/rand/_temporary/_task_{job}_m_{task:06d}_0/part-{task:05d}"
    ns = rng.randrange(19, 36)
    out = [(t0, 0, f"{ns} {_NS}: BLOCK* NameSystem.allocateBlock: {path}. {blk}")]
    t = t0
    for ip in reps:
        t += rng.uniform(0.0, 0.3)
        port = rng.randrange(30000, 61000)
        out.append(
            (
                t,
                1,
                f"{rng.randrange(140, 170)} {_XC}: Receiving block {blk} "
                f"src: /{ip}:{port} dest: /{ip}:50010",
            )
        )
    for k in rng.sample(range(3), 3):
        t += rng.uniform(0.05, 1.5)
        pid = rng.randrange(140, 170)
        out.append((t, 2, f"{pid} {_PR}: PacketResponder {k} for block {blk} terminating"))
        out.append(
            (t + 0.001, 2, f"{pid} {_PR}: Received block {blk} of size {size} from /{reps[k]}")
        )
    for ip in reps:
        t += rng.uniform(0.0, 0.2)
        out.append(
            (
                t + 0.01,
                3,
                f"{rng.randrange(19, 36)} {_NS}: BLOCK* NameSystem."
                f"addStoredBlock: blockMap updated: {ip}:50010 is added to "
                f"{blk} size {size}",
            )
        )
    for _ in range(min(int(rng.expovariate(0.5)), 8)):
        src, dst = rng.choice(reps), random_ip(rng)
        ts = t0 + rng.uniform(10, 600)
        out.append(
            (ts, 4, f"{rng.randrange(140, 170)} {_XC}: {src}:50010 Served block {blk} to /{dst}")
        )
        if rng.random() < 0.1:  # real HDFS: an occasional client hang-up is normal
            out.append(
                (
                    ts + 0.5,
                    4,
                    f"{rng.randrange(140, 170)} WARN dfs.DataNode$DataXceiver: "
                    f"{src}:50010:Got exception while serving {blk} to /{dst}:",
                )
            )
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        ts = t0 + rng.uniform(60, 900)
        out.append((ts, 4, f"13 INFO dfs.DataBlockScanner: Verification succeeded for {blk}"))
    if rng.random() < 0.85:  # else the block outlives the log
        td = t0 + rng.uniform(1000, 1800)
        for ip in reps:
            out.append(
                (
                    td,
                    5,
                    f"{rng.randrange(19, 36)} {_NS}: BLOCK* NameSystem.delete: "
                    f"{blk} is added to invalidSet of {ip}:50010",
                )
            )
        for _ in reps:
            out.append(
                (
                    td + rng.uniform(1, 40),
                    6,
                    f"{rng.randrange(15, 25)} INFO dfs.FSDataset: "
                    f"Deleting block {blk} file /mnt/hadoop/dfs/data/current/{blk}",
                )
            )
    out.sort(key=lambda e: (e[1], e[0]))
    return out


def _hdfs_anomaly(
    rng: random.Random, kind: str, steps: list[tuple[float, int, str]], blk: str, t0: float
) -> list[tuple[float, int, str]]:
    core = [i for i, s in enumerate(steps) if s[1] <= 3]
    if kind == "missing_step":
        del steps[rng.choice(core)]
    elif kind == "wrong_order":
        # Swap the times of an early step and a later-phase step: a step now
        # happens before one it must follow.
        i = rng.choice(core[:4])
        j = rng.choice([k for k, s in enumerate(steps) if s[1] > steps[i][1] + 1])
        (ti, pi, si), (tj, pj, sj) = steps[i], steps[j]
        steps[i], steps[j] = (tj, pi, si), (ti, pj, sj)
    elif kind == "unexpected_template":
        tail = rng.choice(_HDFS_ERRORS).format(pid=rng.randrange(140, 170), blk=blk)
        steps.append((t0 + rng.uniform(0.5, 3.0), 2, tail))
    elif kind == "burst":
        src, dst, tb = random_ip(rng), random_ip(rng), t0 + rng.uniform(5, 60)
        for _ in range(rng.randint(15, 40)):
            tb += rng.uniform(0.0, 0.3)
            steps.append(
                (
                    tb,
                    4,
                    f"{rng.randrange(140, 170)} WARN dfs.DataNode$DataXceiver: "
                    f"{src}:50010:Got exception while serving {blk} to /{dst}:",
                )
            )
    else:  # unseen_line
        steps.append(
            (
                t0 + rng.uniform(0.5, 30),
                3,
                f"{rng.randrange(10, 200)} INFO "
                f"dfs.{rng.choice(('DataNode', 'FSNamesystem'))}: {novel_text(rng)} {blk}",
            )
        )
    return steps


def generate_hdfs(
    n_blocks: int,
    *,
    anomaly_rate: float = 0.0,
    kinds: Iterable[str] = ANOMALY_KINDS,
    seed: int = 0,
    start: float = HDFS_START,
    blocks_per_s: float = 5.0,
) -> SynthLog:
    """HDFS-like raw lines for ``n_blocks`` interleaved block lifecycles.

    Normal lifecycle per block: allocateBlock → Receiving x3 replicas →
    (PacketResponder terminating, Received block) x3 → addStoredBlock x3 →
    some Served block / Verification succeeded → (85%) delete x3 → Deleting x3.
    Blocks start as a Poisson process (``blocks_per_s``); each is anomalous
    with probability ``anomaly_rate``, kinds assigned round-robin from
    ``kinds`` so every kind appears once there are enough anomalies.
    """
    if n_blocks < 0:
        raise ConfigError("n_blocks", n_blocks, "a count >= 0")
    ks = check_kinds(anomaly_rate, kinds)
    rng = random.Random(seed)
    nodes = list(dict.fromkeys(random_ip(rng) for _ in range(96)))
    job = time.strftime("%Y%m%d%H%M", time.gmtime(start)) + f"_{rng.randrange(1, 10):04d}"
    events: list[Event] = []
    labels: dict[str, int] = {}
    kind_of: dict[str, str] = {}
    t0, seq = start, 0
    for _ in range(n_blocks):
        blk = f"blk_{rng.getrandbits(64) - (1 << 63)}"
        while blk in labels:
            blk = f"blk_{rng.getrandbits(64) - (1 << 63)}"
        steps = _hdfs_block(rng, nodes, blk, t0, job)
        kind = None
        if rng.random() < anomaly_rate:
            kind = ks[len(kind_of) % len(ks)]
            kind_of[blk] = kind
            steps = _hdfs_anomaly(rng, kind, steps, blk, t0)
        labels[blk] = 0 if kind is None else 1
        for t, _phase, tail in steps:
            events.append((t, seq, blk, tail, kind))
            seq += 1
        t0 += rng.expovariate(blocks_per_s)
    events.sort()
    stamp = Stamps("%y%m%d %H%M%S")
    return SynthLog(
        format="hdfs",
        lines=[f"{stamp(int(e[0]))} {e[3]}" for e in events],
        line_labels=[labels[e[2]] for e in events],
        line_kinds=[e[4] for e in events],
        labels=labels,
        kinds=kind_of,
    )
