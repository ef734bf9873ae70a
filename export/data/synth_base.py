"""Shared pieces of the synthetic log generators: the result type and helpers.

Import from :mod:`export.data.synth`; this module exists so the HDFS and BGL
generators can live in modules of their own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from logsieve.errors import ConfigError
from logsieve.export.data.readers import parse_bgl_line, parse_hdfs_line
from logsieve.logs.records import LogRecord

__all__ = [
    "ANOMALY_KINDS",
    "BGL_CATEGORY",
    "Event",
    "Stamps",
    "SynthLog",
    "check_kinds",
    "novel_text",
    "random_ip",
    "write_synth",
]

ANOMALY_KINDS: tuple[str, ...] = (
    "unexpected_template",  # an error template never seen in normal data
    "missing_step",  # one step of a lifecycle left out
    "wrong_order",  # two steps of a lifecycle swapped
    "burst",  # a burst of a (known) error line
    "unseen_line",  # random novel text
)

# BGL's first field is the alert category; ours name the injected kind.
BGL_CATEGORY = {
    "unexpected_template": "SYNFATAL",
    "missing_step": "SYNSTEP",
    "wrong_order": "SYNORDER",
    "burst": "SYNBURST",
    "unseen_line": "SYNNOVEL",
}

# One event before formatting: (time, tie-break, key, rendered tail, kind or None).
Event = tuple[float, int, str, str, "str | None"]


@dataclass(slots=True)
class SynthLog:
    """Generated raw lines (time-ordered) and their ground truth.

    ``labels`` maps each session key (HDFS block id; BGL host) to 0/1;
    ``kinds`` maps each anomaly to its kind (HDFS: block id; BGL: episode
    ``<host>@<epoch second>``). ``line_labels``/``line_kinds`` give the same
    per line (an HDFS line carries its block's label).
    """

    format: str
    lines: list[str]
    line_labels: list[int]
    line_kinds: list[str | None]
    labels: dict[str, int]
    kinds: dict[str, str]

    def records(self) -> Iterator[LogRecord]:
        """The lines as :class:`LogRecord`, parsed by the same code as files are."""
        for line, label in zip(self.lines, self.line_labels, strict=True):
            if self.format == "hdfs":
                rec = parse_hdfs_line(line)
            else:
                got = parse_bgl_line(line)
                rec = got[0] if got else None
            assert rec is not None, line  # we wrote it: a parse failure is a bug here
            yield LogRecord(rec.time, rec.host, rec.text, label)


def check_kinds(anomaly_rate: float, kinds: Iterable[str]) -> tuple[str, ...]:
    if not 0.0 <= anomaly_rate <= 1.0:
        raise ConfigError("anomaly_rate", anomaly_rate, "a fraction in [0, 1]")
    ks = tuple(kinds)
    bad = [k for k in ks if k not in ANOMALY_KINDS]
    if bad or (anomaly_rate > 0 and not ks):
        raise ConfigError("kinds", ks, f"a non-empty subset of {ANOMALY_KINDS}")
    return ks


class Stamps:
    """Formats epoch seconds with a per-second cache (lines share seconds a lot)."""

    def __init__(self, fmt: str) -> None:
        self._fmt = fmt
        self._cache: dict[int, str] = {}

    def __call__(self, sec: int) -> str:
        s = self._cache.get(sec)
        if s is None:
            s = self._cache[sec] = time.strftime(self._fmt, time.gmtime(sec))
        return s


def novel_text(rng: random.Random) -> str:
    """Random words built from syllables: text no template has ever matched."""
    syl = ("qua", "zor", "vex", "plin", "dro", "mek", "ith", "sul", "tav", "kro", "yen", "fub")
    words = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 3))) for _ in range(6)]
    return " ".join(words[: rng.randint(3, 6)]) + f" {rng.randrange(1 << 16):#x}"


def random_ip(rng: random.Random) -> str:
    return f"10.{rng.choice((250, 251))}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def write_synth(log: SynthLog, path: str | Path, *, labels_path: str | Path | None = None) -> None:
    """Write ``log.lines`` to ``path`` (``\\n`` endings) and optionally its labels.

    The labels file is CSV: ``BlockId,Label,Kind`` for HDFS (readable by
    ``read_hdfs_block_labels``), ``Host,Label,Kind`` for BGL (kinds of a host's
    episodes joined by ``;``); ``Label`` is ``Normal``/``Anomaly``.
    """
    with Path(path).open("w", encoding="utf-8", newline="\n") as fh:
        for line in log.lines:
            fh.write(line)
            fh.write("\n")
    if labels_path is None:
        return
    per_key: dict[str, list[str]] = {}
    for key, kind in log.kinds.items():
        per_key.setdefault(key.split("@")[0], []).append(kind)
    head = "BlockId" if log.format == "hdfs" else "Host"
    with Path(labels_path).open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(f"{head},Label,Kind\n")
        for key, label in log.labels.items():
            kinds = ";".join(sorted(set(per_key.get(key, []))))
            fh.write(f"{key},{'Anomaly' if label else 'Normal'},{kinds}\n")
