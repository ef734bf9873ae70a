"""Score → verdict → evidence: the one rule, used by ``score``, ``eval`` and ``serve``.

A window (or line) is an anomaly when ``score > threshold``, strictly
(:func:`is_anomaly`, :func:`anomalous`), or when it holds a line of a *rare new
template* (:mod:`logsieve.logs.novelty`: unseen in training and not spread widely
enough to be drift; :func:`model_inputs` judges that and leaves such lines out of
what the model scores); the threshold is calibrated so that a window
identical to the validation window at the quantile is *not* flagged
(:func:`logsieve.export.calibrate.threshold_from_normal`).

The evidence of a window is its lines in one order (:func:`evidence_order`): lines of
rare new templates (or, without novelty tracking, any line no training template
matched) first (the detector has never seen them: the clearest
"why"), then the highest per-line anomaly probability; ties keep window order. Offline
scoring prints it, the server sends it upstream, and a test pins that both give the same
verdict, score and evidence for the same lines.

This module sits in the core: offline scoring (``logsieve.export``) and serving
(``logsieve.agent_plugin``) both import it, and it imports nothing above the core.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import numpy.typing as npt

from logsieve.bundle import Bundle
from logsieve.errors import DataError
from logsieve.logs.novelty import NoveltyTracker, WindowNovelty
from logsieve.logs.pipeline import Event
from logsieve.logs.vocab import Vocab
from logsieve.logs.windows import Window

__all__ = [
    "UNKNOWN_TEMPLATE",
    "ScoredWindow",
    "TemplateNames",
    "Verdict",
    "VerdictLabel",
    "anomalous",
    "evidence_order",
    "is_anomaly",
    "known_ids",
    "label_of",
    "make_flag_id",
    "model_inputs",
    "scored_windows",
    "seen_in_training",
    "template_ids",
    "template_text",
    "verdict_of",
]

VerdictLabel = Literal["anomaly", "normal"]
UNKNOWN_TEMPLATE = "[UNK]"


def is_anomaly(score: float, threshold: float) -> bool:
    """The verdict rule: ``score > threshold`` (a NaN score is never an anomaly)."""
    return score > threshold


def anomalous(scores: npt.ArrayLike, threshold: float) -> npt.NDArray[np.bool_]:
    """:func:`is_anomaly` over an array of scores."""
    return np.asarray(scores, dtype=np.float64) > threshold


@dataclass(frozen=True, slots=True)
class ScoredWindow:
    """One window after scoring: what a verdict, a flag and the offline report need.

    Attributes:
        key: What the window groups by: a host, or an HDFS block id.
        start, end: Time of the first and last line, Unix seconds.
        lines: The raw log lines, in window order.
        template_ids: The template (log key) id of each line (negative: no template).
        templates: The template text of each line.
        score: The window's anomaly score (higher is more anomalous).
        threshold: The calibrated threshold (see :func:`is_anomaly`).
        token_probs: Per-line anomaly probability from the detector (for FastLogAD the
            discriminator's probability that the line's token was replaced; 0 for a
            line the model did not score).
        rare_new: Per line, whether it is a line of a rare new template (empty: no
            novelty judgement; then every unseen line counts as such in the evidence).
        seen_in_training: The model's input for this window was, chunk for chunk, a
            window of the normal training data (:mod:`logsieve.logs.known`): normal
            whatever it scores. The server looks it up only where the score is above
            the threshold (:func:`seen_in_training`'s ``where``) and leaves it False elsewhere.

    ``template_ids``, ``templates`` and ``token_probs`` are aligned with ``lines``
    (same length, same order); :class:`~logsieve.errors.DataError` otherwise.
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
    rare_new: Sequence[bool] = ()
    seen_in_training: bool = False

    def __post_init__(self) -> None:
        n = len(self.lines)
        for name in ("template_ids", "templates", "token_probs", "rare_new"):
            if name == "rare_new" and not self.rare_new:
                continue
            if len(getattr(self, name)) != n:
                raise DataError(
                    f"ScoredWindow {self.key!r}: {name} has {len(getattr(self, name))} "
                    f"items but lines has {n}; they must be aligned"
                )
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end < self.start:
            raise DataError(
                f"ScoredWindow {self.key!r}: bad time range {self.start!r}..{self.end!r}"
            )

    @property
    def anomaly(self) -> bool:
        """A line of a rare new template, or :func:`is_anomaly` unless the window was
        seen in training."""
        return bool(self.reasons)

    @property
    def reasons(self) -> list[str]:
        """Why the window is an anomaly: ``score`` and/or ``rare_new_template`` (empty
        for a normal window)."""
        scored = is_anomaly(self.score, self.threshold) and not self.seen_in_training
        return (["score"] if scored else []) + (["rare_new_template"] if any(self.rare_new) else [])

    @property
    def unknown_lines(self) -> int:
        """Lines no training template matched."""
        return sum(1 for t in self.template_ids if t < 0)

    def evidence(self, top_k: int) -> list[int]:
        """Indices of the ``top_k`` lines that explain the verdict (:func:`evidence_order`)."""
        return evidence_order(self.template_ids, self.token_probs, top_k, self.rare_new or None)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A window's verdict and its flag id (for pass-through records)."""

    label: VerdictLabel
    score: float
    flag_id: str


def evidence_order(
    template_ids: Sequence[int],
    probs: Sequence[float],
    top_k: int,
    first: Sequence[bool] | None = None,
) -> list[int]:
    """The ``top_k`` line indices that explain a window, most telling first.

    The lines ``first`` marks (rare new templates; without it, every line no template
    matched) first, then by descending probability, ties in window order.
    """
    if top_k < 0:
        raise DataError(f"top_k={top_k}: must be >= 0")
    if first is None:
        first = [t < 0 for t in template_ids]
    return heapq.nsmallest(
        top_k, range(len(template_ids)), key=lambda i: (not first[i], -float(probs[i]), i)
    )


def make_flag_id(
    model_id: str, key: str, start: float, end: float, lines: Sequence[str] = ()
) -> str:
    """Stable id of one window's verdict: 32 hex chars of SHA-256 over its identity.

    The identity is the model, the key, the time range and the window's lines as a
    multiset (their count and a digest of them sorted): two windows of one block with
    the same first and last time but other lines (records arriving out of order over
    two connections) got one id before, and a consumer dropping repeats by it lost a
    verdict; sorted, so the same lines replayed in another order keep the id. ``repr``
    of the floats is exact and round-trips, so the same window always hashes the same,
    in any process.
    """
    digest = hashlib.sha256("\n".join(sorted(lines)).encode("utf-8", "surrogatepass"))
    identity = json.dumps(
        [model_id, key, repr(float(start)), repr(float(end)), len(lines), digest.hexdigest()]
    )
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def label_of(window: ScoredWindow) -> VerdictLabel:
    """``"anomaly"`` when :func:`is_anomaly`, else ``"normal"``."""
    return "anomaly" if window.anomaly else "normal"


def verdict_of(window: ScoredWindow, model_id: str) -> Verdict:
    """The window's verdict and its flag id."""
    flag_id = make_flag_id(model_id, window.key, window.start, window.end, window.lines)
    return Verdict(label_of(window), float(window.score), flag_id)


def template_text(vocab: Vocab | None, template_id: int) -> str:
    """The template of ``template_id`` as the vocabulary names it (``[UNK]`` if none)."""
    if template_id < 0:
        return UNKNOWN_TEMPLATE
    names = vocab.templates if vocab is not None else None
    return names[template_id] if names and template_id < len(names) else f"T{template_id}"


class TemplateNames(Sequence[str]):
    """A window's template names, each made when it is read: :func:`template_text` of
    the line's id, or ``[NEW] <pattern>`` for a line of a new pattern.

    Most windows are normal and never name their templates (nothing is sent for them
    by default); naming every line of every window cost about a tenth of the server's
    per-record CPU. Compares equal to the list of the same names.
    """

    __slots__ = ("_ids", "_patterns", "_vocab")

    def __init__(
        self,
        vocab: Vocab | None,
        ids: Sequence[int],
        patterns: Sequence[str | None] | None = None,
    ) -> None:
        if patterns is not None and len(patterns) != len(ids):
            raise DataError(f"{len(patterns)} patterns for {len(ids)} template ids")
        self._vocab, self._ids, self._patterns = vocab, ids, patterns

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        pattern = self._patterns[index] if self._patterns is not None else None
        return (
            template_text(self._vocab, self._ids[index]) if pattern is None else f"[NEW] {pattern}"
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (TemplateNames, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so not hashable

    def __repr__(self) -> str:
        return repr(list(self))


def template_ids(windows: Sequence[Window[Event]]) -> list[list[int]]:
    """The template ids of each window's lines: what a :class:`WindowEngine` scores."""
    return [[e.template_id for e in w.items] for w in windows]


def model_inputs(
    windows: Sequence[Window[Event]], novelty: NoveltyTracker | None
) -> tuple[list[list[int]], list[WindowNovelty] | None]:
    """What the engine scores for each window, and each window's novelty judgement.

    Without a tracker: every line's template id (``[UNK]`` included, the ``flag`` and
    ``score`` policies). With one: only the known lines (new templates have no trained
    embedding); call it when the windows closed, since the judgement uses the spread
    seen so far.
    """
    ids = template_ids(windows)
    if novelty is None:
        return ids, None
    judged = [novelty.judge(w) for w in ids]
    return known_ids(ids, judged), judged


def known_ids(ids: Sequence[Sequence[int]], judged: Sequence[WindowNovelty]) -> list[list[int]]:
    """Each window's template ids cut to the lines its judgement leaves to the model."""
    return [[w[i] for i in j.known] for w, j in zip(ids, judged, strict=True)]


def seen_in_training(
    ids: Sequence[Sequence[int]], bundle: Bundle, where: Sequence[bool] | None = None
) -> list[bool] | None:
    """Per window of model input ids, whether the training data held it verbatim
    (None when the bundle stores no training windows).

    ``where``: look up only the windows it marks, False for the others. The server
    passes the windows whose score is above the threshold: for any other window being
    seen in training changes no verdict, reason or flag, and the lookup (an encode and
    a hash per chunk) of every window cost about a twentieth of its per-record CPU.
    Offline reports, which rank by it, look up every window.
    """
    known, vocab = bundle.known, bundle.vocab
    if known is None or vocab is None:
        return None
    cfg = bundle.log_config
    if where is None:
        return [known.holds_ids(w, vocab, cfg) for w in ids]
    return [ask and known.holds_ids(w, vocab, cfg) for w, ask in zip(ids, where, strict=True)]


def scored_windows(
    windows: Sequence[Window[Event]],
    scored: Sequence[tuple[float, Sequence[float]]],
    vocab: Vocab | None,
    threshold: float,
    judged: Sequence[WindowNovelty] | None = None,
    seen: Sequence[bool] | None = None,
) -> list[ScoredWindow]:
    """Pair each window with its ``(score, per-line probabilities)`` from the engine
    (``judged``: the :func:`model_inputs` judgements the engine input came from;
    ``seen``: :func:`seen_in_training` of that input)."""
    out: list[ScoredWindow] = []
    for n, (w, (score, per_line)) in enumerate(zip(windows, scored, strict=True)):
        ids = [e.template_id for e in w.items]
        templates = TemplateNames(vocab, ids)
        rare: list[bool] = []
        if judged is not None:
            j = judged[n]
            if len(per_line) != len(j.known):
                raise DataError(
                    f"window {w.key!r}: {len(per_line)} probabilities for "
                    f"{len(j.known)} scored lines"
                )
            probs = [0.0] * len(ids)
            for pos, i in enumerate(j.known):
                probs[i] = per_line[pos]
            per_line = probs
            rare = list(j.rare)
            templates = TemplateNames(vocab, ids, j.patterns)
        out.append(
            ScoredWindow(
                key=w.key,
                start=w.start,
                end=w.end,
                lines=[e.text for e in w.items],
                template_ids=ids,
                templates=templates,
                score=float(score),
                threshold=threshold,
                token_probs=per_line,
                rare_new=rare,
                seen_in_training=bool(seen[n]) if seen is not None else False,
            )
        )
    return out
