"""Log templates: mining at training time, matching at serving time.

:class:`TemplateMiner` masks each line with our :class:`~logsieve.logs.masking.Masker`
(drain3's own masking off) and feeds it to drain3's ``Drain``. Template ids are ours:
0, 1, 2, ... in order of first appearance of a Drain cluster, stable while Drain keeps
generalising the cluster's template. A masked line keeps the id it first got (Drain
could route an identical line elsewhere later), so repeats are not fed to Drain again.

:meth:`TemplateMiner.state` is a versioned JSON object of our own (never pickle): the
masking rules, the tokenizer, the final templates and the few training lines whose id
the matching rule would not reproduce ("pinned"), so that :class:`TemplateMatcher`
gives every training line its training id (train/serve parity) without drain3.

Why matching is ours and not drain3's ``match``: serving must not need drain3's
jsonpickle state, and on the hot path ours is 4-41x drain3 in the same run
(``bench/test_logs_bench.py``, figures in bench/RESULTS.md).

Matching rule: the masked line is split into tokens as drain3 does; it matches a
template with as many tokens whose every literal token is equal (``<*>`` stands for
exactly one token). The most specific match wins (most literal tokens), then the
lowest id; no match is :data:`UNKNOWN` (counted).

Hot path: lines that differ only in digits are frequent, so the matcher first looks
up the raw line with its digits folded (:class:`~logsieve.logs.masking.DigitFolding`,
one C-speed ``bytes.translate``) and runs the masking regexes only on a miss. A result
is cached under a folded key only when the rules provably treat those digits alike
and the masked line kept none of them, so cached results equal uncached ones. The
caches are bounded (cleared when full, counted).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from logsieve.config import MaskingConfig, TemplateConfig
from logsieve.errors import BundleError, ConfigError, DataError
from logsieve.logs.masking import Masker

__all__ = [
    "PARAM",
    "SCHEMA_VERSION",
    "UNKNOWN",
    "Template",
    "TemplateMatcher",
    "TemplateMiner",
    "grouping_accuracy",
    "tokenize",
]

UNKNOWN = -1
"""Template id of a line that matches no known template."""
SCHEMA_VERSION = 1
"""Version of the :meth:`TemplateMiner.state` JSON layout."""
PARAM = "<*>"
"""The wildcard token in templates: stands for exactly one token."""
STATE_KIND = "logsieve.templates"


@dataclass(frozen=True, slots=True)
class Template:
    """One mined template: its id, text (tokens joined by one space) and line count."""

    id: int
    template: str
    count: int


def tokenize(masked: str, extra_delimiters: Sequence[str] = ()) -> list[str]:
    """Split a masked line into tokens exactly as drain3's ``Drain`` does."""
    masked = masked.strip()
    for delimiter in extra_delimiters:
        masked = masked.replace(delimiter, " ")
    return masked.split()


class TemplateMiner:
    """Training-time template mining: drain3's Drain on our masked lines.

    ``templates.depth`` follows drain3's convention: it counts the root and the
    token-count levels, so depth ``d`` routes on the first ``d - 3`` tokens.
    """

    def __init__(self, masking: MaskingConfig, templates: TemplateConfig) -> None:
        # drain3 (and jsonpickle/cachetools behind it) is needed for training only.
        from drain3.drain import Drain

        self.masking = masking
        self.config = templates
        self._masker = Masker(masking)
        self._drain = Drain(
            depth=templates.depth,
            sim_th=templates.sim_th,
            max_children=templates.max_children,
            max_clusters=templates.max_clusters,
            extra_delimiters=templates.extra_delimiters,
            param_str=PARAM,
        )
        self._cluster_to_id: dict[int, int] = {}
        self._tokens: list[tuple[str, ...]] = []
        self._counts: list[int] = []
        self._seen: dict[str, int] = {}  # masked line -> the id it first got
        self.lines = 0

    def add(self, line: str) -> int:
        """Mine one raw line; returns its template id (stable, 0-based)."""
        self.lines += 1
        masked = self._masker.mask(line)
        tid = self._seen.get(masked)
        if tid is None:
            cluster, _ = self._drain.add_log_message(masked)
            tid = self._cluster_to_id.get(cluster.cluster_id)
            if tid is None:
                tid = len(self._tokens)
                self._cluster_to_id[cluster.cluster_id] = tid
                self._tokens.append(())
                self._counts.append(0)
            # Only an add can change a cluster's template; keep our copy current (it
            # also survives drain3 evicting the cluster under max_clusters).
            self._tokens[tid] = tuple(cluster.log_template_tokens)
            self._seen[masked] = tid
        self._counts[tid] += 1
        return tid

    @property
    def templates(self) -> tuple[Template, ...]:
        """The current templates, by id."""
        return tuple(
            Template(i, " ".join(tokens), count)
            for i, (tokens, count) in enumerate(zip(self._tokens, self._counts, strict=True))
        )

    def state(self) -> dict[str, Any]:
        """Our versioned JSON state: everything :class:`TemplateMatcher` needs.

        The values are JSON types only; dump it with ``json.dumps`` (its default
        ``ensure_ascii=True`` also carries lone surrogates from undecodable input).
        """
        delimiters = self.config.extra_delimiters
        index = _Index(self._tokens)
        pinned = [
            {"masked": masked, "id": tid}
            for masked, tid in self._seen.items()
            if index.resolve(tokenize(masked, delimiters)) != tid
        ]
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": STATE_KIND,
            "masking": [{"name": r.name, "pattern": r.pattern} for r in self.masking.rules],
            "max_line_chars": self.masking.max_line_chars,
            "extra_delimiters": list(delimiters),
            "param": PARAM,
            # For the record only (matching needs no Drain setting).
            "drain": {k: v for k, v in asdict(self.config).items() if k != "extra_delimiters"},
            "lines": self.lines,
            "templates": [
                {"id": t.id, "template": t.template, "count": t.count} for t in self.templates
            ],
            "pinned": pinned,
        }


class _Index:
    """Templates indexed for the matching rule (see the module docstring)."""

    __slots__ = ("by_first", "exact", "wild_first")

    def __init__(self, templates: Sequence[tuple[str, ...]]) -> None:
        self.exact: dict[tuple[str, ...], int] = {}
        # (token count, first token) -> candidates; and token count -> candidates whose
        # first token is a wildcard. Candidates: (-literal count, id, literal positions),
        # sorted so that the first match found is the most specific, then lowest id.
        self.by_first: dict[tuple[int, str], list[tuple[int, int, tuple[tuple[int, str], ...]]]]
        self.by_first = {}
        self.wild_first: dict[int, list[tuple[int, int, tuple[tuple[int, str], ...]]]] = {}
        for tid, tokens in enumerate(templates):
            literals = tuple((i, t) for i, t in enumerate(tokens) if t != PARAM)
            if len(literals) == len(tokens):
                self.exact.setdefault(tokens, tid)
                continue
            entry = (-len(literals), tid, literals)
            if tokens[0] == PARAM:
                self.wild_first.setdefault(len(tokens), []).append(entry)
            else:
                self.by_first.setdefault((len(tokens), tokens[0]), []).append(entry)
        for bucket in (*self.by_first.values(), *self.wild_first.values()):
            bucket.sort()

    def resolve(self, tokens: list[str]) -> int:
        tid = self.exact.get(tuple(tokens))
        if tid is not None:
            return tid
        n = len(tokens)
        if n == 0:
            return UNKNOWN
        best: tuple[int, int] | None = None
        for bucket in (self.by_first.get((n, tokens[0])), self.wild_first.get(n)):
            for rank, cand, literals in bucket or ():
                if best is not None and (rank, cand) >= best:
                    break
                if all(tokens[i] == t for i, t in literals):
                    best = (rank, cand)
                    break
        return UNKNOWN if best is None else best[1]


class TemplateMatcher:
    """Serving-time matching of raw lines to the template ids mined at training.

    Counters: ``lines`` matched, ``unknown`` (matched no template), ``cache_hits``
    (answered from the folded-digit key), ``masked_hits`` (answered from the masked
    line), ``cache_clears`` (a cache reached ``cache_size`` entries and was emptied).
    Only lines of at most ``cache_line_chars`` characters are cached, so the caches
    hold at most about ``2 * cache_size * cache_line_chars`` characters of keys.
    ``cache_size=0`` turns caching off (the reference for cache tests).
    """

    def __init__(
        self,
        masking: MaskingConfig,
        templates: Sequence[Template],
        *,
        extra_delimiters: Sequence[str] = (),
        pinned: Mapping[str, int] | None = None,
        cache_size: int = 65_536,
        cache_line_chars: int = 512,
    ) -> None:
        if cache_size < 0:
            raise ConfigError("cache_size", cache_size, "an integer >= 0")
        self.masking = masking
        self.templates = tuple(templates)
        self._masker = Masker(masking)
        self._plain_masker = Masker(masking)  # keeps match_uncached out of the counters
        self._folding = self._masker.folding
        self._delimiters = tuple(extra_delimiters)
        self._index = _Index([tuple(tokenize(t.template)) for t in self.templates])
        self._pinned = dict(pinned or {})
        self.cache_size = cache_size
        self._cache_line_chars = cache_line_chars if cache_size else -1
        self._fold_cache: dict[bytes, int] = {}
        self._masked_cache: dict[str, int] = {}
        self.lines = self.unknown = self.cache_hits = self.masked_hits = self.cache_clears = 0

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **cache: int) -> TemplateMatcher:
        """Build a matcher from :meth:`TemplateMiner.state` (e.g. a bundle's
        ``templates.json``); ``cache`` takes ``cache_size``/``cache_line_chars``. A
        corrupt or unsupported state is a :class:`BundleError` naming the problem."""
        masking, templates, delimiters, pinned = _parse_state(state)
        return cls(masking, templates, extra_delimiters=delimiters, pinned=pinned, **cache)

    def match(self, line: str) -> int:
        """The template id of a raw line, or :data:`UNKNOWN`."""
        self.lines += 1
        cacheable = len(line) <= self._cache_line_chars
        key = None
        if cacheable and self._folding is not None:
            key = line.encode("utf-8", "surrogatepass").translate(self._folding.table)
            tid = self._fold_cache.get(key)
            if tid is not None:
                self.cache_hits += 1
                if tid == UNKNOWN:
                    self.unknown += 1
                return tid
        masked = self._masker.mask(line)
        tid = self._masked_cache.get(masked) if cacheable else None
        if tid is not None:
            self.masked_hits += 1
        else:
            tid = self._resolve(masked)
            if cacheable:
                self._store(self._masked_cache, masked, tid)
        if key is not None and self._folding is not None and self._folding.is_exact(masked):
            self._store(self._fold_cache, key, tid)
        if tid == UNKNOWN:
            self.unknown += 1
        return tid

    def match_uncached(self, line: str) -> int:
        """:meth:`match` without caches or counters (the reference semantics)."""
        return self._resolve(self._plain_masker.mask(line))

    def nearest(self, line: str) -> tuple[int, float]:
        """The most similar template with the same token count and its similarity
        (share of positions that are equal or a wildcard; ties: lowest id), or
        ``(UNKNOWN, 0.0)``. Linear in the number of templates: a fallback for
        reporting or [UNK] handling, not for the hot path; not counted."""
        tokens = tokenize(self._plain_masker.mask(line), self._delimiters)
        if not tokens:
            empty = self._index.exact.get(())
            return (UNKNOWN, 0.0) if empty is None else (empty, 1.0)
        best, best_sim = UNKNOWN, 0.0
        for t in self.templates:
            cand = tokenize(t.template)
            if len(cand) == len(tokens):
                same = sum(1 for a, b in zip(cand, tokens, strict=True) if a in (PARAM, b))
                if same / len(tokens) > best_sim:
                    best, best_sim = t.id, same / len(tokens)
        return best, best_sim

    @property
    def unknown_rate(self) -> float:
        """Share of matched lines that matched no template (0.0 before any line)."""
        return self.unknown / self.lines if self.lines else 0.0

    def stats(self) -> dict[str, float | int]:
        """The counters as a dict, for metrics and reports."""
        return {
            "lines": self.lines,
            "unknown": self.unknown,
            "unknown_rate": self.unknown_rate,
            "cache_hits": self.cache_hits,
            "masked_hits": self.masked_hits,
            "cache_clears": self.cache_clears,
            "cache_entries": len(self._fold_cache) + len(self._masked_cache),
            "truncated": self._masker.truncated,
        }

    def _resolve(self, masked: str) -> int:
        pinned = self._pinned.get(masked)
        if pinned is not None:
            return pinned
        return self._index.resolve(tokenize(masked, self._delimiters))

    def _store(self, cache: dict[Any, int], key: Any, tid: int) -> None:
        if len(cache) >= self.cache_size:
            # Clear-when-full: O(1) amortised and no per-hit bookkeeping (an LRU would
            # cost a reordering on every hit of the hot path).
            cache.clear()
            self.cache_clears += 1
        cache[key] = tid


def grouping_accuracy(pred_ids: Sequence[Hashable], true_ids: Sequence[Hashable]) -> float:
    """Loghub's grouping accuracy: the share of lines whose predicted group holds
    exactly the lines of their true group (Zhu et al., ICSE-SEIP 2019)."""
    if len(pred_ids) != len(true_ids):
        raise DataError(f"grouping_accuracy: {len(pred_ids)} predictions for {len(true_ids)} lines")
    if not pred_ids:
        raise DataError("grouping_accuracy: no lines")
    true_sizes = Counter(true_ids)
    groups: dict[Hashable, Counter[Hashable]] = {}
    for pred, true in zip(pred_ids, true_ids, strict=True):
        groups.setdefault(pred, Counter())[true] += 1
    correct = 0
    for members in groups.values():
        if len(members) == 1:
            ((true, n),) = members.items()
            if true_sizes[true] == n:
                correct += n
    return correct / len(pred_ids)


def _parse_state(
    state: Mapping[str, Any],
) -> tuple[MaskingConfig, list[Template], tuple[str, ...], dict[str, int]]:
    """Validate a :meth:`TemplateMiner.state` object; :class:`BundleError` names the
    first problem found."""
    if not isinstance(state, Mapping):
        raise BundleError(f"template state: expected a JSON object, got {type(state).__name__}")
    version = state.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"template state: schema_version={version!r} unsupported (expected {SCHEMA_VERSION})"
        )
    if state.get("kind") != STATE_KIND:
        raise BundleError(f"template state: kind={state.get('kind')!r}, expected {STATE_KIND!r}")
    if state.get("param") != PARAM:
        raise BundleError(f"template state: param={state.get('param')!r}, expected {PARAM!r}")
    rules = _get(state, "masking", list)
    if "max_line_chars" not in state:  # None is a value (no cut), absence is corruption
        raise BundleError("template state: max_line_chars is missing")
    try:
        masking = MaskingConfig.from_dict(
            {"rules": rules, "max_line_chars": state["max_line_chars"]}
        )
    except ConfigError as exc:
        raise BundleError(f"template state: bad masking: {exc}") from None
    delimiters = _get(state, "extra_delimiters", list)
    if not all(isinstance(d, str) and d for d in delimiters):
        raise BundleError(f"template state: extra_delimiters={delimiters!r}: non-empty strings")
    templates: list[Template] = []
    for where, item in _objects(state, "templates"):
        tid, text = _get(item, "id", int, where), _get(item, "template", str, where)
        count = _get(item, "count", int, where)
        if tid != len(templates) or count < 0:
            raise BundleError(
                f"template state: {where} has id={tid}, count={count}: ids must be 0..n-1 "
                "in order and counts >= 0"
            )
        templates.append(Template(tid, text, count))
    pinned: dict[str, int] = {}
    for where, item in _objects(state, "pinned"):
        masked, tid = _get(item, "masked", str, where), _get(item, "id", int, where)
        if not 0 <= tid < len(templates):
            raise BundleError(f"template state: {where} names id={tid}, not a template id")
        pinned[masked] = tid
    return masking, templates, tuple(delimiters), pinned


def _get(obj: Mapping[str, Any], key: str, kind: type, where: str = "") -> Any:
    """``obj[key]`` checked to be of ``kind`` (bool is not an int here)."""
    label = f"{where}.{key}" if where else key
    if key not in obj:
        raise BundleError(f"template state: {label} is missing")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleError(
            f"template state: {label}={value!r:.80} is {type(value).__name__}, "
            f"expected {kind.__name__}"
        )
    return value


def _objects(state: Mapping[str, Any], key: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(where, item)`` for each item of the list ``state[key]``, each an object."""
    for pos, item in enumerate(_get(state, key, list)):
        if not isinstance(item, Mapping):
            raise BundleError(f"template state: {key}[{pos}] is {type(item).__name__}")
        yield f"{key}[{pos}]", item
