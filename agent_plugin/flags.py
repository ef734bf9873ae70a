"""Flag records: what logsieve sends upstream for a scored window (DESIGN "Flags sent upstream").

One Forward record per flagged window (or per window, with ``every_verdict``),
sent on the tag ``logsieve.flag`` by default::

    builder = FlagBuilder(model_id=bundle.model_id, detector="fastlogad", top_k=5)
    record = builder.build(window)            # None for a normal window by default
    if record is not None:
        await upstream.send(builder.tag, record, time=window.end)

Record keys: ``flag_id``, ``key``, ``window_start``, ``window_end`` (float Unix
seconds), ``lines`` (count), ``score``, ``threshold``, ``model_id``,
``detector``, ``verdict`` (``"anomaly"``/``"normal"``) and ``evidence``: the
top-k lines by per-token anomaly probability, highest first, each
``{"line", "template", "template_id", "prob"}``.

``flag_id`` is a hash of (model id, key, window start, window end), so a resend
of the same window, even from a restarted process, carries the same id and a
receiver can drop the repeat (the upstream client is at-least-once).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DEFAULT_FLAG_TAG",
    "FlagBuilder",
    "ScoredWindow",
    "Verdict",
    "VerdictLabel",
    "build_flag",
    "enrich",
    "label_of",
    "make_flag_id",
    "verdict_of",
]

DEFAULT_FLAG_TAG = "logsieve.flag"
VerdictLabel = Literal["anomaly", "normal"]


@dataclass(frozen=True, slots=True)
class ScoredWindow:
    """One window after scoring, as the flag builder needs it.

    Attributes:
        key: What the window groups by: a host, or an HDFS block id.
        start, end: Time of the first and last line, Unix seconds.
        lines: The raw log lines, in window order.
        template_ids: The template (log key) id of each line.
        templates: The template text of each line.
        score: The window's anomaly score (higher is more anomalous).
        threshold: The calibrated threshold; the window is an anomaly when
            ``score > threshold``.
        token_probs: Per-line anomaly probability from the detector (for
            FastLogAD the discriminator's probability that the line's token was
            replaced; higher is more anomalous).

    ``template_ids``, ``templates`` and ``token_probs`` are aligned with
    ``lines`` (same length, same order); ValueError otherwise.
    """

    key: str
    start: float
    end: float
    lines: Sequence[str]
    template_ids: Sequence[int]
    templates: Sequence[str]
    score: float
    threshold: float
    token_probs: Sequence[float]

    def __post_init__(self) -> None:
        n = len(self.lines)
        for name in ("template_ids", "templates", "token_probs"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"ScoredWindow {self.key!r}: {name} has {len(getattr(self, name))} "
                    f"items but lines has {n}; they must be aligned"
                )
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end < self.start:
            raise ValueError(
                f"ScoredWindow {self.key!r}: bad time range {self.start!r}..{self.end!r}"
            )


@dataclass(frozen=True, slots=True)
class Verdict:
    """A window's verdict, for enriching pass-through records (:func:`enrich`)."""

    label: VerdictLabel
    score: float
    flag_id: str


def make_flag_id(model_id: str, key: str, start: float, end: float) -> str:
    """Stable id of one window's verdict: 32 hex chars of SHA-256 over its identity.

    ``repr`` of the floats is exact and round-trips, so the same window always
    hashes the same, in any process.
    """
    identity = json.dumps([model_id, key, repr(float(start)), repr(float(end))])
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def label_of(window: ScoredWindow) -> VerdictLabel:
    """``"anomaly"`` when the score is above the threshold, else ``"normal"``."""
    return "anomaly" if window.score > window.threshold else "normal"


def verdict_of(window: ScoredWindow, model_id: str) -> Verdict:
    """The window's verdict and its flag id."""
    flag_id = make_flag_id(model_id, window.key, window.start, window.end)
    return Verdict(label_of(window), float(window.score), flag_id)


def build_flag(
    window: ScoredWindow, *, model_id: str, detector: str, top_k: int = 5
) -> dict[str, Any]:
    """The flag record for ``window`` (whatever its verdict)."""
    if top_k < 0:
        raise ValueError(f"top_k={top_k}: must be >= 0")
    verdict = verdict_of(window, model_id)
    # Lines no training template matched first (the detector has never seen them: the
    # clearest "why"), then the highest replaced-token probability; ties keep window
    # order. The same order as offline scoring (logsieve score).
    top = heapq.nsmallest(
        top_k,
        range(len(window.lines)),
        key=lambda i: (window.template_ids[i] >= 0, -float(window.token_probs[i]), i),
    )
    evidence = [
        {
            "line": window.lines[i],
            "template": window.templates[i],
            "template_id": int(window.template_ids[i]),
            "prob": float(window.token_probs[i]),
        }
        for i in top
    ]
    return {
        "flag_id": verdict.flag_id,
        "key": window.key,
        "window_start": float(window.start),
        "window_end": float(window.end),
        "lines": len(window.lines),
        "score": float(window.score),
        "threshold": float(window.threshold),
        "model_id": model_id,
        "detector": detector,
        "verdict": verdict.label,
        "evidence": evidence,
    }


@dataclass(frozen=True)
class FlagBuilder:
    """Flag records for one model; ``every_verdict`` also emits normal windows."""

    model_id: str
    detector: str
    top_k: int = 5
    every_verdict: bool = False
    tag: str = DEFAULT_FLAG_TAG

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k}: must be >= 0")
        if not self.tag:
            raise ValueError("tag must be non-empty")

    def build(self, window: ScoredWindow) -> dict[str, Any] | None:
        """The record to send, or None for a normal window unless ``every_verdict``."""
        if not self.every_verdict and label_of(window) == "normal":
            return None  # decided before the id hash and the evidence: most windows
        return build_flag(window, model_id=self.model_id, detector=self.detector, top_k=self.top_k)

    def verdict(self, window: ScoredWindow) -> Verdict:
        return verdict_of(window, self.model_id)


def enrich(record: Mapping[Any, Any], verdict: Verdict) -> dict[Any, Any]:
    """A copy of ``record`` with ``logsieve_verdict``, ``logsieve_score`` and
    ``logsieve_flag_id`` added (pass-through mode); ``record`` is not modified."""
    out = dict(record)
    out["logsieve_verdict"] = verdict.label
    out["logsieve_score"] = verdict.score
    out["logsieve_flag_id"] = verdict.flag_id
    return out
