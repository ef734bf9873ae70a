"""BGL-like synthetic per-host streams (import from :mod:`export.data.synth`)."""

from __future__ import annotations

import random
from collections.abc import Iterable

from logsieve.errors import ConfigError
from logsieve.export.data.synth_base import (
    ANOMALY_KINDS,
    BGL_CATEGORY,
    Event,
    Stamps,
    SynthLog,
    check_kinds,
    novel_text,
)

__all__ = ["BGL_START", "generate_bgl"]

BGL_START = 1117838570.0  # 2005-06-03 22:42:50 UTC

_K = "RAS KERNEL INFO"
_BGL_NORMAL = (  # (weight, type/component/level, template); {n} {h} {node} filled per line
    (40, _K, "instruction cache parity error corrected"),
    (12, _K, "generating core.{n}"),
    (8, _K, "CE sym {n}, at 0x{h8}, mask 0x{h2}"),
    (6, _K, "{n} ddr errors(s) detected and corrected on rank 0, symbol {n}, bit {n}"),
    (6, _K, "{n} floating point alignment exceptions"),
    (5, _K, "{n} double-hummer alignment exceptions"),
    (3, _K, "total of {n} ddr error(s) detected and corrected"),
    (2, _K, "{n} L3 EDRAM error(s) (dcr 0x{h4}) detected and corrected"),
    (1, "RAS LINKCARD INFO", "MidplaneSwitchController performing bit sparing on {node} bit {n}"),
    (
        1,
        "RAS MMCS ERROR",
        "idoproxydb hit ASSERT condition: ASSERT expression=0 Source "
        "file=idotransportmgr.cpp Source line=1043 Function=int IdoTransportMgr::SendPacket",
    ),
)
_BGL_WEIGHTS = [w for w, _, _ in _BGL_NORMAL]
_BGL_JOB = (  # a job's lifecycle on a host; "missing_step"/"wrong_order" break it
    "ciod: starting job {job} for user {user}",
    "ciod: loading program image {prog} for job {job}",
    "ciod: job {job} running on {n} compute nodes",
    "ciod: job {job} exited with status 0",
    "ciod: generated 0 core files for program {prog}",
)
_BGL_FATAL = (  # never in normal data
    "data TLB error interrupt",
    "machine check interrupt (bit=0x{h2}): L2 dcache unit data parity error",
    "rts: kernel terminated for reason {n}",
    "Lustre mount FAILED : bglio{n} : point /p/gb{n}",
    "ciod: Error loading {prog}: invalid or missing program image, No such file or directory",
)


def _fill(rng: random.Random, template: str, node: str, job: int = 0, prog: str = "") -> str:
    return template.format(
        n=rng.randrange(1, 4096),
        h8=f"{rng.getrandbits(32):08x}",
        h4=f"{rng.getrandbits(16):04x}",
        h2=f"{rng.getrandbits(8):02x}",
        node=node.split(":")[0],
        job=job,
        user=f"user{job % 37}",
        prog=prog,
    )


def _bgl_nodes(rng: random.Random, n: int) -> list[str]:
    out: dict[str, None] = {}
    while len(out) < n:
        kind = "C" if rng.random() < 0.9 else "I"
        node = (
            f"R{rng.randrange(64):02d}-M{rng.randrange(2)}-N{rng.randrange(16):X}-{kind}:"
            f"J{rng.randrange(2, 19):02d}-U{rng.choice((1, 11)):02d}"
        )
        out[node] = None
    return list(out)


def _bgl_job(
    rng: random.Random, node: str, t: float, job: int, cut: str | None
) -> list[tuple[float, str, str]]:
    prog = f"/bgl/apps/{rng.choice(('sppm', 'raptor', 'miniben', 'spasm'))}/run{job % 97}.rts"
    lines = [_fill(rng, s, node, job, prog) for s in _BGL_JOB]
    if cut == "missing_step":
        del lines[rng.randrange(1, len(lines))]
    elif cut == "wrong_order":
        i = rng.randrange(len(lines) - 1)
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    out = []
    for text in lines:
        out.append((t, "RAS APP INFO", text))
        t += rng.uniform(1.0, 60.0)
    return out


def generate_bgl(
    n_hosts: int,
    duration_s: float,
    *,
    anomaly_rate: float = 0.0,
    kinds: Iterable[str] = ANOMALY_KINDS,
    seed: int = 0,
    start: float = BGL_START,
    rate_per_host: float = 0.2,
    job_every_s: float = 600.0,
    episode_s: float = 300.0,
) -> SynthLog:
    """BGL-like raw lines from ``n_hosts`` nodes over ``duration_s`` seconds.

    Each host logs kernel/link messages as a Poisson stream (``rate_per_host``
    lines/s, parity errors in short runs) plus job lifecycles (five ``ciod``
    steps, one job per ``job_every_s`` on average). Each ``episode_s`` slot of
    each host holds an anomaly episode with probability ``anomaly_rate`` (kinds
    round-robin); episode lines carry the kind's category (``SYN…``) in the
    label field, normal lines ``-``.
    """
    if n_hosts < 1 or duration_s <= 0:
        raise ConfigError("n_hosts/duration_s", (n_hosts, duration_s), "n_hosts >= 1, duration > 0")
    ks = check_kinds(anomaly_rate, kinds)
    rng = random.Random(seed)
    nodes = _bgl_nodes(rng, n_hosts)
    end = start + duration_s
    events: list[Event] = []
    kind_of: dict[str, str] = {}
    labels = dict.fromkeys(nodes, 0)
    job = rng.randrange(10000, 90000)

    def add(t: float, node: str, tcl: str, text: str, kind: str | None) -> None:
        if t < end:
            events.append((t, len(events), node, f"{node} {tcl} {text}", kind))

    for node in nodes:
        t = start + rng.expovariate(rate_per_host)
        while t < end:
            _, tcl, tpl = rng.choices(_BGL_NORMAL, _BGL_WEIGHTS)[0]
            for _ in range(rng.randint(1, 4) if tpl.startswith("instruction") else 1):
                add(t, node, tcl, _fill(rng, tpl, node), None)
                t += rng.uniform(0.0, 0.5)
            t += rng.expovariate(rate_per_host)
        t = start + rng.uniform(0, job_every_s)
        while t < end:
            job += 1
            for tj, tcl, text in _bgl_job(rng, node, t, job, None):
                add(tj, node, tcl, text, None)
            t += rng.expovariate(1.0 / job_every_s)
        slot = start
        while slot < end and anomaly_rate > 0:
            if rng.random() < anomaly_rate:
                kind = ks[len(kind_of) % len(ks)]
                t = slot + rng.uniform(0, episode_s * 0.5)
                kind_of[f"{node}@{int(t)}"] = kind
                labels[node] = 1
                if kind in ("missing_step", "wrong_order"):
                    job += 1
                    episode = _bgl_job(rng, node, t, job, kind)
                elif kind == "unexpected_template":
                    tpl = rng.choice(_BGL_FATAL)
                    text = _fill(rng, tpl, node, job, "/bgl/apps/missing/a.rts")
                    episode = [
                        (t + i * rng.uniform(0, 2), "RAS KERNEL FATAL", text)
                        for i in range(rng.randint(1, 3))
                    ]
                elif kind == "burst":
                    tpl = _BGL_NORMAL[-1][2]
                    episode = [
                        (t + i * rng.uniform(0.01, 0.3), "RAS MMCS ERROR", tpl)
                        for i in range(rng.randint(20, 60))
                    ]
                else:
                    episode = [
                        (t, rng.choice(("RAS KERNEL INFO", "RAS APP FATAL")), novel_text(rng))
                    ]
                for te, tcl, text in episode:
                    add(te, node, tcl, text, kind)
            slot += episode_s
    events.sort()
    date, stamp = Stamps("%Y.%m.%d"), Stamps("%Y-%m-%d-%H.%M.%S")
    lines = []
    for t, _, node, tail, k in events:
        sec = int(t)
        cat = "-" if k is None else BGL_CATEGORY[k]
        usec = int((t - sec) * 1e6)
        lines.append(f"{cat} {sec} {date(sec)} {node} {stamp(sec)}.{usec:06d} {tail}")
    return SynthLog(
        format="bgl",
        lines=lines,
        line_labels=[0 if e[4] is None else 1 for e in events],
        line_kinds=[e[4] for e in events],
        labels=labels,
        kinds=kind_of,
    )
