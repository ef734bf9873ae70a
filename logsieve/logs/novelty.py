"""New templates while serving: drift or incident, decided by how widely they spread.

A line no training template matches is not, by itself, an anomaly: a log that changes
(an upgrade, a job type training never saw, HDFS deleting blocks after the training
hour) brings new templates into *every* window, and flagging each of those windows
floods the user on day one. Nor may it be ignored: a new error message in one block is
exactly what an SRE wants to hear about.

What separates the two is spread. The :class:`NoveltyTracker` groups unseen lines into
*new patterns* (masked tokens, merged Drain-style when they differ in a few positions)
and counts, per pattern, the distinct window keys (blocks, hosts) that carried it
against the keys active since it first appeared. A pattern seen in at least
``admit_fraction`` of those keys, and in at least ``admit_min_keys`` keys (or, where
fewer keys exist, that fraction of all keys known, at least 3), is drift:
it is *admitted* for good (persisted with :meth:`NoveltyTracker.state`) and no longer
counts against a window. A pattern below that is *rare*: a window holding it is an
anomaly (reason ``rare_new_template``) whatever the model scores, its lines first in
the evidence. Either way the model scores only the window's known lines (a new
template has no trained embedding), and each pattern is reported once as a
*new-pattern* record (first line, count, keys) and once more when it is admitted.

Measured on HDFS (train on ``HDFS_20000.log``, score ``HDFS_5k.log``): the three new
templates of normal blocks ("Deleting block", "NameSystem.delete", "Got exception
while serving") are in 95-99% of the blocks; those of the anomalous blocks in 1-5 of 110.
The minimum of keys matters for a pattern that first appears late: "addStoredBlock
request received ... does not belong to any file" shows in 4 blocks near the end of
the file, when fewer than 8 blocks are still active, so the fraction alone admits it.

Decisions happen when a window is judged (it closed and is about to be scored), with
the counts seen so far, in the same way offline (``logsieve score``) and online.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from logsieve.config import LogConfig, NoveltyConfig
from logsieve.errors import BundleError
from logsieve.logs.masking import Masker
from logsieve.logs.templates import PARAM, UNKNOWN, tokenize

__all__ = [
    "NOVEL_BASE",
    "NewPattern",
    "NoveltyTracker",
    "WindowNovelty",
    "is_novel",
    "judge_offline",
    "novel_index",
]

NOVEL_BASE = -2
"""Template id of new pattern ``k`` is ``NOVEL_BASE - k`` (``-2, -3, ...``); ``-1``
(:data:`~logsieve.logs.templates.UNKNOWN`) stays "unseen, not tracked"."""
STATE_KIND = "logsieve.novelty"
SCHEMA_VERSION = 1
_MAX_CANDIDATES = 64  # patterns compared per unseen line of one length (bounds the work)
_MIN_SPREAD = 3  # keys a pattern needs at least (unless admit_min_keys is lower)
_MAX_KEYS_PER_PATTERN = 4096  # enough to decide; an admitted pattern stops collecting


def is_novel(template_id: int) -> bool:
    """Whether ``template_id`` names a tracked new pattern."""
    return template_id <= NOVEL_BASE


def novel_index(template_id: int) -> int:
    """Index of the new pattern a template id names."""
    return NOVEL_BASE - template_id


@dataclass(slots=True)
class NewPattern:
    """One new template: its tokens (``<*>`` where its lines differed) and counts."""

    tokens: list[str]
    first_line: str
    first_time: float | None
    first_seq: int
    count: int = 0
    keys: set[str] = field(default_factory=set)
    n_keys: int = 0
    admitted: bool = False
    reported: str = ""  # "", "new" or "admitted": what its last record said

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


@dataclass(frozen=True, slots=True)
class WindowNovelty:
    """The novelty judgement of one window.

    ``known``: indices of the lines the model scores (template ids ``>= 0``);
    ``rare``: per line, whether it belongs to a rare new pattern (or is an untracked
    unseen line): such a line makes the window an anomaly; ``patterns``: the new
    pattern's text per line (``None`` for known and untracked lines), for the evidence.
    """

    known: list[int]
    rare: list[bool]
    patterns: list[str | None]

    @property
    def rare_lines(self) -> int:
        return sum(self.rare)


class NoveltyTracker:
    """Groups unseen lines into new patterns and judges windows by their spread.

    Not thread-safe: it lives beside the :class:`~logsieve.logs.pipeline.LinePipeline`
    that feeds it, on one task.
    """

    def __init__(
        self,
        config: NoveltyConfig,
        masker: Masker,
        *,
        sim_th: float = 0.5,
        extra_delimiters: Sequence[str] = (),
    ) -> None:
        self.config = config
        self._masker = masker
        self._sim_th = sim_th
        self._delimiters = tuple(extra_delimiters)
        self.patterns: list[NewPattern] = []
        self._exact: dict[tuple[str, ...], int] = {}
        self._by_len: dict[int, list[int]] = {}
        # Every key's last activity, oldest first: the keys active since a pattern
        # appeared are a suffix of this order (bounded: the oldest are forgotten).
        self._active: OrderedDict[str, int] = OrderedDict()
        self._seq = 0
        self._max_keys = config.max_keys  # read per line (the config is frozen)
        self.counts = {
            "lines_rare": 0, "lines_admitted": 0, "lines_untracked": 0,
            "windows_rare": 0, "windows_drift_only": 0, "patterns_new": 0,
            "patterns_admitted": 0,
        }  # fmt: skip

    @classmethod
    def for_config(cls, config: LogConfig) -> NoveltyTracker:
        """A tracker with ``config``'s masking rules and Drain similarity."""
        return cls(
            config.novelty,
            Masker(config.masking),
            sim_th=config.templates.sim_th,
            extra_delimiters=config.templates.extra_delimiters,
        )

    # -- per line ------------------------------------------------------------

    def touch(self, keys: Sequence[str]) -> None:
        """Note that ``keys`` were active now (called for every line)."""
        self._seq += 1
        active = self._active
        for key in keys:
            active[key] = self._seq
            active.move_to_end(key)
        if len(active) > self._max_keys:
            active.popitem(last=False)

    def observe(self, text: str, keys: Sequence[str], time: float | None) -> int:
        """The new pattern of an unseen line (a template id ``<= NOVEL_BASE``), or
        ``UNKNOWN`` when ``max_patterns`` are tracked already (counted: rare)."""
        tokens = tokenize(self._masker.mask(text), self._delimiters)
        k = self._find(tokens)
        if k is None:
            if len(self.patterns) >= self.config.max_patterns:
                self.counts["lines_untracked"] += 1
                return UNKNOWN
            k = len(self.patterns)
            self.patterns.append(NewPattern(tokens, text, time, self._seq))
            self._exact[tuple(tokens)] = k
            self._by_len.setdefault(len(tokens), []).append(k)
            self.counts["patterns_new"] += 1
        p = self.patterns[k]
        p.count += 1
        if not p.admitted and len(p.keys) < _MAX_KEYS_PER_PATTERN:
            p.keys.update(keys)
            p.n_keys = len(p.keys)
        return NOVEL_BASE - k

    def _find(self, tokens: list[str]) -> int | None:
        k = self._exact.get(tuple(tokens))
        if k is not None:
            return k
        n = len(tokens)
        if n == 0:
            return None
        for k in self._by_len.get(n, ())[:_MAX_CANDIDATES]:
            p = self.patterns[k]
            same = sum(1 for a, b in zip(p.tokens, tokens, strict=True) if a in (b, PARAM))
            if same / n >= self._sim_th:
                # Merge as Drain does: positions that differ become wildcards.
                p.tokens = [a if a == b else PARAM for a, b in zip(p.tokens, tokens, strict=True)]
                self._exact[tuple(tokens)] = k
                return k
        return None

    # -- per window ----------------------------------------------------------

    def admitted(self, k: int) -> bool:
        """Whether pattern ``k`` has spread widely enough to be drift (sticky)."""
        p = self.patterns[k]
        if p.admitted:
            return True
        cfg = self.config
        # A small fleet (5 hosts) can never show a pattern on 10 keys: the minimum is
        # capped at the admit fraction of every key known, but never below 3 keys (at
        # start-up one key is all there is, and one key is not a spread).
        floor = max(_MIN_SPREAD, math.ceil(cfg.admit_fraction * len(self._active)))
        if p.n_keys < min(cfg.admit_min_keys, floor):
            return False
        # Keys active since the pattern appeared, counted from the newest; stop as
        # soon as there are too many for the pattern to reach the admit fraction.
        limit = math.floor(p.n_keys / cfg.admit_fraction)
        for since, seq in enumerate(reversed(self._active.values()), 1):
            if seq < p.first_seq:
                break
            if since > limit:
                return False
        p.admitted = True
        p.keys = set()
        self.counts["patterns_admitted"] += 1
        return True

    def judge(self, template_ids: Sequence[int]) -> WindowNovelty:
        """Judge one window from its lines' template ids (see the module docstring)."""
        known: list[int] = []
        flags: list[bool] = []
        patterns: list[str | None] = []
        rare = drift = 0
        verdicts: dict[int, bool] = {}
        for i, tid in enumerate(template_ids):
            if tid >= 0:
                known.append(i)
                flags.append(False)
                patterns.append(None)
                continue
            if tid == UNKNOWN:
                rare += 1
                flags.append(True)
                patterns.append(None)
                continue
            k = NOVEL_BASE - tid
            ok = verdicts.get(k)
            if ok is None:
                ok = verdicts[k] = self.admitted(k)
            patterns.append(self.patterns[k].text)
            flags.append(not ok)
            if ok:
                drift += 1
            else:
                rare += 1
        self.counts["lines_rare"] += rare
        self.counts["lines_admitted"] += drift
        if rare:
            self.counts["windows_rare"] += 1
        elif drift:
            self.counts["windows_drift_only"] += 1
        return WindowNovelty(known, flags, patterns)

    def reports(self) -> list[dict[str, Any]]:
        """New-pattern records not sent yet: one when a pattern is first judged, one more
        when it is admitted. JSON-ready."""
        out: list[dict[str, Any]] = []
        for k, p in enumerate(self.patterns):
            status = "admitted" if p.admitted else "new"
            if p.reported == status or (status == "new" and p.count == 0):
                continue
            p.reported = status
            out.append(
                {
                    "pattern_id": k,
                    "pattern": p.text,
                    "status": status,
                    "first_line": p.first_line,
                    "first_time": p.first_time,
                    "lines": p.count,
                    "keys": p.n_keys,
                    "example_keys": sorted(p.keys)[:5],
                }
            )
        return out

    # -- persistence ---------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Versioned JSON of the patterns (admitted ones stay admitted after a restart)."""
        return {
            "kind": STATE_KIND,
            "schema_version": SCHEMA_VERSION,
            "patterns": [
                {
                    "tokens": p.tokens,
                    "first_line": p.first_line,
                    "first_time": p.first_time,
                    "count": p.count,
                    "keys": sorted(p.keys)[:256],  # n_keys keeps the count
                    "n_keys": p.n_keys,
                    "admitted": p.admitted,
                    "reported": p.reported,
                }
                for p in self.patterns
            ],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state` (a corrupt one is a :class:`BundleError`)."""
        if state.get("kind") != STATE_KIND or state.get("schema_version") != SCHEMA_VERSION:
            raise BundleError(
                f"novelty state: kind {state.get('kind')!r} version "
                f"{state.get('schema_version')!r}, expected {STATE_KIND!r} v{SCHEMA_VERSION}"
            )
        try:
            loaded = [_pattern_of(obj) for obj in state["patterns"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"novelty state: malformed pattern ({exc})") from None
        self.patterns, self._exact, self._by_len = [], {}, {}
        for k, p in enumerate(loaded[: self.config.max_patterns]):
            self.patterns.append(p)
            self._exact[tuple(p.tokens)] = k
            self._by_len.setdefault(len(p.tokens), []).append(k)

    def stats(self) -> dict[str, int]:
        """Decision counters plus the patterns held."""
        admitted = sum(1 for p in self.patterns if p.admitted)
        return {**self.counts, "patterns": len(self.patterns), "admitted": admitted}


def _pattern_of(obj: Mapping[str, Any]) -> NewPattern:
    tokens = obj["tokens"]
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise ValueError("tokens must be a list of strings")
    keys = set(map(str, obj.get("keys", ())))
    return NewPattern(
        tokens=tokens,
        first_line=str(obj["first_line"]),
        first_time=None if obj.get("first_time") is None else float(obj["first_time"]),
        first_seq=0,
        count=int(obj["count"]),
        keys=keys,
        n_keys=max(int(obj.get("n_keys", len(keys))), len(keys)),
        admitted=bool(obj["admitted"]),
        reported=str(obj.get("reported", "")),
    )


def judge_offline(windows: Iterable[Sequence[str]], config: NoveltyConfig) -> list[int]:
    """Rare-line counts of windows judged all at once (pre-parsed datasets).

    Each window is the identities of its unseen lines (event ids, masked texts); a
    pattern is admitted when it is in ``admit_fraction`` of the windows (and in at
    least ``admit_min_keys``): the offline analogue of every window open at once.
    """
    items = [list(w) for w in windows]
    spread: dict[str, int] = {}
    for w in items:
        for ident in set(w):
            spread[ident] = spread.get(ident, 0) + 1
    n = len(items)
    admitted = {
        ident
        for ident, c in spread.items()
        if c >= config.admit_min_keys and c >= config.admit_fraction * n
    }
    return [sum(1 for ident in w if ident not in admitted) for w in items]
