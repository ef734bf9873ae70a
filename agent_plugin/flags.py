"""Flag records: what logsieve sends upstream for a scored window (DESIGN "Flags sent upstream").

One Forward record per incident (:mod:`logsieve.incidents`: a session window, or the
overlapping anomalous sliding windows of one host merged, each line listed once), and
with ``every_verdict`` one per normal window too, sent on the tag ``logsieve.flag`` by
default::

    builder = FlagBuilder(model_id=bundle.model_id, detector="fastlogad", top_k=5)
    record = builder.build(window)            # None for a normal window by default
    if record is not None:
        await upstream.send(builder.tag, record, time=window.end)
    record = builder.build_incident(incident) # an anomaly's flag

Record keys: ``flag_id``, ``key``, ``window_start``, ``window_end`` (float Unix
seconds), ``lines`` (count), ``score``, ``threshold``, ``model_id``,
``detector``, ``verdict`` (``"anomaly"``/``"normal"``), ``reasons`` (why an anomaly:
``score`` above the threshold and/or ``rare_new_template``) and ``evidence``: lines of
rare new templates first (template ``"[NEW] ..."``), then the top-k lines by per-token
anomaly probability, each ``{"line", "template", "template_id", "prob"}``.

Every record is valid JSON once decoded: a score that is not a finite number (a window
holding a template training never saw scores +inf) is sent as ``score: null`` with
``score_reason`` saying why (``unseen_template``, else ``not_finite``); a non-finite
probability is sent as null.

``flag_id`` is a hash of (model id, key, window start, window end, its lines as a
multiset), so a resend of the same window, even from a restarted process, carries the
same id and a
receiver can drop the repeat (the upstream client is at-least-once). An incident's id
is that of its first window; its ``window_start``/``window_end`` cover all its
windows. The verdict, the evidence order and the id come from :mod:`logsieve.verdict`,
the rule offline scoring uses too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from logsieve.errors import ConfigError
from logsieve.incidents import Incident
from logsieve.verdict import ScoredWindow, Verdict, label_of, make_flag_id, verdict_of

__all__ = ["DEFAULT_FLAG_TAG", "FlagBuilder", "build_flag", "enrich"]

DEFAULT_FLAG_TAG = "logsieve.flag"


def build_flag(
    window: ScoredWindow,
    *,
    model_id: str,
    detector: str,
    top_k: int = 5,
    flag_id: str | None = None,
) -> dict[str, Any]:
    """The flag record for ``window`` (whatever its verdict); ``flag_id`` overrides the
    window's own id (an incident's id is its first window's)."""
    if flag_id is None:
        flag_id = make_flag_id(model_id, window.key, window.start, window.end, window.lines)
    top = window.evidence(top_k)
    evidence = [
        {
            "line": window.lines[i],
            "template": window.templates[i],
            "template_id": int(window.template_ids[i]),
            "prob": _finite(window.token_probs[i]),
        }
        for i in top
    ]
    record: dict[str, Any] = {
        "flag_id": flag_id,
        "key": window.key,
        "window_start": float(window.start),
        "window_end": float(window.end),
        "lines": len(window.lines),
        "score": _finite(window.score),
        "threshold": float(window.threshold),
        "model_id": model_id,
        "detector": detector,
        "verdict": label_of(window),
        "reasons": window.reasons,
        "evidence": evidence,
    }
    if record["score"] is None:
        unseen = window.unknown_lines and window.score == math.inf
        record["score_reason"] = "unseen_template" if unseen else "not_finite"
    return record


def _finite(value: float) -> float | None:
    """``value`` as a float, or None where JSON has no number for it (inf, NaN)."""
    x = float(value)
    return x if math.isfinite(x) else None


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
            raise ConfigError("top_k", self.top_k, "an integer >= 0")
        if not self.tag:
            raise ConfigError("flag_tag", self.tag, "a non-empty tag")

    def build(self, window: ScoredWindow) -> dict[str, Any] | None:
        """The record to send, or None for a normal window unless ``every_verdict``."""
        if not self.every_verdict and not window.anomaly:
            return None  # decided before the id hash and the evidence: most windows
        return build_flag(window, model_id=self.model_id, detector=self.detector, top_k=self.top_k)

    def build_incident(self, incident: Incident) -> dict[str, Any]:
        """The flag record of an incident (always sent)."""
        return build_flag(
            incident.window,
            model_id=self.model_id,
            detector=self.detector,
            top_k=self.top_k,
            flag_id=incident.flag_id,
        )

    def verdict(self, window: ScoredWindow, flag_id: str | None = None) -> Verdict:
        """The window's verdict; ``flag_id`` (its incident's) overrides the window's id."""
        if flag_id is None:
            return verdict_of(window, self.model_id)
        return Verdict(label_of(window), float(window.score), flag_id)


def enrich(record: Mapping[Any, Any], verdict: Verdict) -> dict[Any, Any]:
    """A copy of ``record`` with ``logsieve_verdict``, ``logsieve_score`` and
    ``logsieve_flag_id`` added (pass-through mode); ``record`` is not modified."""
    out = dict(record)
    out["logsieve_verdict"] = verdict.label
    out["logsieve_score"] = _finite(verdict.score)
    out["logsieve_flag_id"] = verdict.flag_id
    return out
