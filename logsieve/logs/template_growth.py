"""Grow a bundle's template set with new lines, keeping every known template's id.

What ``logsieve update`` runs before it grows the vocabulary. The bundle stores no
training lines, only its templates (:meth:`~logsieve.logs.templates.TemplateMiner.state`),
so Drain cannot be replayed; instead:

1. each new line is matched with the bundle's own matcher; a line it matches keeps that
   id (known templates are frozen: their text is never generalised by new lines);
2. the lines no known template matches are mined with a fresh Drain, and the templates
   found get the next ids (``n_old``, ``n_old + 1``, ...);
3. a new template must never take a line a known template matches (a line the old
   bundle scored as template ``t`` must stay ``t``, also a line the update data does
   not hold). The matching rule prefers the template with more literal tokens, then
   the lower id, so a new template that could match the same line as a known one and
   has *more* literals is generalised (literals become ``<*>`` where the known one has
   a wildcard) until it has no more literals than the known one: the known one then
   wins the tie by its lower id;
4. every update line is checked against the merged matcher; a line whose id differs
   from the one it was given above is pinned (as training pins lines), so training,
   calibration and serving see the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from logsieve.config import LogConfig
from logsieve.logs.masking import Masker
from logsieve.logs.templates import PARAM, UNKNOWN, TemplateMatcher, TemplateMiner, tokenize

__all__ = ["TemplateGrowth", "grow_templates"]


@dataclass(frozen=True)
class TemplateGrowth:
    """What :func:`grow_templates` did: counts for the manifest and the report."""

    known: int
    """Templates the bundle had (ids ``0..known-1``, unchanged)."""
    added: int
    """New templates (ids ``known..known+added-1``)."""
    lines: int
    lines_known: int
    """Update lines a known template matched."""
    generalised: int
    """New templates generalised so as not to take lines of a known one."""
    pinned: int
    """Update lines pinned to their id (the rule alone would give another)."""

    def as_dict(self) -> dict[str, int]:
        return {
            "known": self.known,
            "added": self.added,
            "lines": self.lines,
            "lines_known": self.lines_known,
            "generalised": self.generalised,
            "pinned": self.pinned,
        }


def grow_templates(
    state: Mapping[str, Any], texts: Iterable[str], config: LogConfig
) -> tuple[dict[str, Any], TemplateGrowth]:
    """The bundle's template ``state`` grown with ``texts`` (module docstring).

    ``config`` is the bundle's log config (its masking and Drain settings mine the new
    lines). Returns the merged state (load it with
    :meth:`~logsieve.logs.templates.TemplateMatcher.from_state`) and the counts.
    """
    base = TemplateMatcher.from_state(state)
    n_old = len(base.templates)
    miner = TemplateMiner(config.masking, config.templates)
    given: list[tuple[str, int]] = []  # (line, the id it must keep), one per distinct line
    seen: set[str] = set()
    n_lines = n_known = 0
    old_counts = [t.count for t in base.templates]
    for text in texts:
        n_lines += 1
        tid = base.match(text)
        if tid != UNKNOWN:
            n_known += 1
            old_counts[tid] += 1
        else:
            tid = n_old + miner.add(text)
        if text not in seen:
            seen.add(text)
            given.append((text, tid))
    by_len: dict[int, list[tuple[str, ...]]] = {}
    for known in base.templates:
        old = tuple(tokenize(known.template))
        by_len.setdefault(len(old), []).append(old)
    new_templates: list[dict[str, Any]] = []
    generalised = 0
    for t in miner.templates:
        mined = tokenize(t.template)
        tokens = _unshadow(list(mined), by_len)
        generalised += tokens != mined
        new_templates.append({"id": n_old + t.id, "template": " ".join(tokens), "count": t.count})
    merged: dict[str, Any] = {
        **state,
        "lines": int(state.get("lines", 0)) + n_lines,
        "templates": [
            {"id": t.id, "template": t.template, "count": old_counts[t.id]} for t in base.templates
        ]
        + new_templates,
        "pinned": list(state.get("pinned", [])),
    }
    # The rule over the merged templates must give each update line the id it got above.
    check = TemplateMatcher.from_state(merged, cache_size=0)
    masker = Masker(config.masking)
    pins: dict[str, int] = {}
    for text, tid in given:
        if check.match_uncached(text) != tid:
            pins[masker.mask(text)] = tid
    merged["pinned"] += [{"masked": m, "id": tid} for m, tid in pins.items()]
    growth = TemplateGrowth(n_old, len(new_templates), n_lines, n_known, generalised, len(pins))
    return merged, growth


def _unshadow(tokens: list[str], known: Mapping[int, list[tuple[str, ...]]]) -> list[str]:
    """``tokens`` with literals turned into ``<*>`` until no known template of the same
    length could lose a line to it (step 3 of the module docstring)."""
    changed = True
    while changed:
        changed = False
        literals = sum(1 for t in tokens if t != PARAM)
        for old in known.get(len(tokens), ()):
            old_literals = sum(1 for t in old if t != PARAM)
            if literals <= old_literals:
                continue
            if not all(a in (PARAM, b) or b == PARAM for a, b in zip(tokens, old, strict=True)):
                continue  # no line can match both
            for i, b in enumerate(old):
                if literals <= old_literals:
                    break
                if b == PARAM and tokens[i] != PARAM:
                    tokens[i] = PARAM
                    literals -= 1
            changed = True
    return tokens
