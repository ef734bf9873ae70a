"""ADALog's text side: per-line preprocessing and a WordPiece tokenizer learned from logs.

Preprocessing (:class:`Preprocessor`): the line is masked with logsieve's own rules
(:mod:`logsieve.logs.masking`), preceded by two rules for what those leave in raw
supercomputer lines (a leading epoch-seconds field, BGL rack locations such as
``R02-M1-N0-C:J12-U11``); then it is split into words (a placeholder such as ``<NUM>``, a
run of letters/digits, or one punctuation character), timestamps (``<TS>``) are dropped
and words are lower-cased (placeholders keep their case, so ``<num>`` in a log stays text).

Tokenizer (:class:`WordPieceTokenizer`): the vocabulary is learned from the training
lines the way HuggingFace's WordPiece trainer does it (BPE-style merges of the most
frequent adjacent pieces, continuation pieces prefixed ``##``); encoding is BERT's
greedy longest-match-first per word, a word with no match becomes ``[UNK]``. Ids:
``[PAD]=0 [CLS]=1 [MASK]=2 [UNK]=3 [SEP]=4``, then the placeholders, then the pieces.
A line encodes as ``[CLS] pieces… [SEP]``, cut to ``max_len`` (``[SEP]`` always kept).

The tokenizer is saved as our own versioned JSON (:data:`TOKENIZER_FORMAT`), preprocessing
settings included, so ``tokenizer.json`` alone turns a raw line into model input.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from logsieve.config import DEFAULT_MASK_RULES, MaskingConfig, MaskRule
from logsieve.errors import BundleError, ConfigError
from logsieve.logs.masking import TRUNCATED_TOKEN, Masker

__all__ = [
    "ADALOG_MASK_RULES",
    "CLS",
    "MASK",
    "PAD",
    "SEP",
    "SPECIAL_TOKENS",
    "TOKENIZER_FORMAT",
    "UNK",
    "Preprocessor",
    "TextConfig",
    "WordPieceTokenizer",
    "pad_ids",
]

TOKENIZER_FORMAT = "logsieve.adalog.wordpiece/1"
SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[MASK]", "[UNK]", "[SEP]")
PAD, CLS, MASK, UNK, SEP = range(len(SPECIAL_TOKENS))
_CONT = "##"

# Before the default rules: a 9-10 digit epoch at the start of a line is a timestamp
# (BGL/Thunderbird field 2 once the label is gone), and a BGL rack location would
# otherwise be cut into a dozen subwords per line (and make every new node "unseen").
ADALOG_MASK_RULES: tuple[MaskRule, ...] = (
    MaskRule("TS", r"^\s*\d{9,10}(?:\.\d+)?(?!\S)"),
    MaskRule("NODE", r"(?<![\w-])R\d{2}-M\d(?:-[A-Z0-9]+)*(?::[A-Z0-9]+(?:-[A-Z0-9]+)*)?(?![\w-])"),
    *DEFAULT_MASK_RULES,
)


@dataclass(frozen=True)
class TextConfig:
    """Preprocessing and tokenizer-training settings (stored in ``tokenizer.json``).

    ``vocab_size`` is an upper bound (training stops earlier when no pair of pieces
    occurs ``min_frequency`` times); characters seen fewer than ``min_frequency`` times
    are left out (they encode as ``[UNK]``). A word longer than ``max_word_chars`` is
    ``[UNK]`` (bounds the greedy matcher's work on hostile input).
    """

    vocab_size: int = 1000
    min_frequency: int = 2
    max_word_chars: int = 64
    lowercase: bool = True
    drop_timestamps: bool = True
    masking: MaskingConfig = field(
        default_factory=lambda: MaskingConfig(rules=ADALOG_MASK_RULES, max_line_chars=4096)
    )

    def __post_init__(self) -> None:
        for name, low in (("vocab_size", 16), ("min_frequency", 1), ("max_word_chars", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"text.{name}", value, f"an integer >= {low}")
        for name in ("lowercase", "drop_timestamps"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"text.{name}", getattr(self, name), "true or false")

    def to_dict(self) -> dict[str, Any]:
        return {
            "vocab_size": self.vocab_size,
            "min_frequency": self.min_frequency,
            "max_word_chars": self.max_word_chars,
            "lowercase": self.lowercase,
            "drop_timestamps": self.drop_timestamps,
            "masking": self.masking.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextConfig:
        known = set(cls.__dataclass_fields__)
        if set(data) - known:
            raise ConfigError("text", sorted(set(data) - known), f"only {sorted(known)}")
        args = dict(data)
        if "masking" in args:
            args["masking"] = MaskingConfig.from_dict(args["masking"])
        return cls(**args)


class Preprocessor:
    """Raw line → words: mask, split, drop timestamps, lower-case."""

    __slots__ = ("_drop", "_lower", "_masker", "_split", "placeholders")

    def __init__(self, cfg: TextConfig) -> None:
        self._masker = Masker(cfg.masking)
        tokens = dict.fromkeys(r.token for r in cfg.masking.rules)
        self.placeholders: tuple[str, ...] = (*tokens, TRUNCATED_TOKEN)
        alternatives = "|".join(re.escape(t) for t in self.placeholders)
        self._split = re.compile(rf"({alternatives})|[^\W_]+|[^\w\s]|_")
        self._drop = "<TS>" if cfg.drop_timestamps else None
        self._lower = cfg.lowercase

    def words(self, line: str) -> list[str]:
        """The line's words in order; placeholders are whole words."""
        out: list[str] = []
        for m in self._split.finditer(self._masker.mask(line)):
            word = m.group(0)
            if m.group(1) is not None:
                if word != self._drop:
                    out.append(word)
            else:
                out.append(word.lower() if self._lower else word)
        return out


class WordPieceTokenizer:
    """A learned WordPiece vocabulary plus the preprocessing that feeds it."""

    def __init__(self, cfg: TextConfig, pieces: Sequence[str]) -> None:
        self.cfg = cfg
        self.pre = Preprocessor(cfg)
        self.tokens: tuple[str, ...] = (*SPECIAL_TOKENS, *self.pre.placeholders, *pieces)
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        if len(self._ids) != len(self.tokens):
            raise BundleError("tokenizer: duplicate tokens in the vocabulary")
        self._cache: dict[str, tuple[int, ...]] = {}

    @property
    def size(self) -> int:
        """Vocabulary size including special tokens and placeholders."""
        return len(self.tokens)

    @property
    def first_piece(self) -> int:
        """Id of the first learned piece (random MLM replacements come from here on)."""
        return len(SPECIAL_TOKENS) + len(self.pre.placeholders)

    # -- training -------------------------------------------------------------------

    @classmethod
    def train(cls, lines: Iterable[str], cfg: TextConfig | None = None) -> WordPieceTokenizer:
        """Learn a vocabulary of at most ``cfg.vocab_size`` tokens from ``lines``."""
        cfg = cfg or TextConfig()
        pre = Preprocessor(cfg)
        reserved = set(pre.placeholders)
        counts: Counter[str] = Counter()
        for line in lines:
            counts.update(w for w in pre.words(line) if w not in reserved)
        budget = cfg.vocab_size - len(SPECIAL_TOKENS) - len(pre.placeholders)
        words = sorted(w for w in counts if len(w) <= cfg.max_word_chars)
        freq = [counts[w] for w in words]
        # Alphabet: first characters and "##" continuation characters, most frequent first.
        alpha: Counter[str] = Counter()
        for w, f in zip(words, freq, strict=True):
            alpha[w[0]] += f
            for ch in w[1:]:
                alpha[_CONT + ch] += f
        ranked = sorted(alpha.items(), key=lambda kv: (-kv[1], kv[0]))
        pieces = [p for p, f in ranked if f >= cfg.min_frequency][: max(budget, 0)]
        known = set(pieces)
        symbols = [[w[0], *(_CONT + ch for ch in w[1:])] for w in words]
        pieces += _merges(symbols, freq, known, budget - len(pieces), cfg.min_frequency)
        return cls(cfg, pieces)

    # -- encoding -------------------------------------------------------------------

    def word_ids(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first pieces of one word (placeholders are one id)."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        out: tuple[int, ...]
        if word in self._ids and not word.startswith(_CONT):
            out = (self._ids[word],)
        elif len(word) > self.cfg.max_word_chars:
            out = (UNK,)
        else:
            got: list[int] = []
            start = 0
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else _CONT + word[start:end]
                    if piece in self._ids:
                        got.append(self._ids[piece])
                        break
                    end -= 1
                if end == start:  # no piece matches here: the whole word is unknown
                    got = [UNK]
                    break
                start = end
            out = tuple(got)
        if len(self._cache) < 200_000:  # bounded: serving sees unbounded distinct words
            self._cache[word] = out
        return out

    def encode(self, line: str, max_len: int) -> list[int]:
        """``[CLS] pieces… [SEP]`` of one raw line, at most ``max_len`` ids."""
        if max_len < 2:
            raise ConfigError("max_len", max_len, "an integer >= 2 ([CLS] and [SEP])")
        ids = [CLS]
        room = max_len - 1
        for word in self.pre.words(line):
            ids.extend(self.word_ids(word))
            if len(ids) >= room:
                del ids[room:]
                break
        ids.append(SEP)
        return ids

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Token strings of ids (for evidence)."""
        return [self.tokens[i] if 0 <= i < self.size else "[UNK]" for i in ids]

    # -- persistence ----------------------------------------------------------------

    def to_json(self) -> str:
        """Versioned JSON: format, preprocessing settings and the ordered vocabulary."""
        body = {"format": TOKENIZER_FORMAT, "text": self.cfg.to_dict(), "tokens": self.tokens}
        return json.dumps(body, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> WordPieceTokenizer:
        """Inverse of :meth:`to_json`; anything else is a :class:`BundleError`."""
        try:
            body = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"tokenizer: not valid JSON ({exc})") from None
        if not isinstance(body, dict) or body.get("format") != TOKENIZER_FORMAT:
            raise BundleError(f"tokenizer: not a {TOKENIZER_FORMAT} file")
        try:
            cfg = TextConfig.from_dict(body["text"])
        except (ConfigError, KeyError, TypeError) as exc:
            raise BundleError(f"tokenizer: bad settings ({exc})") from None
        tokens = body.get("tokens")
        tok = cls(cfg, [])
        head = list(tok.tokens)
        if not isinstance(tokens, list) or tokens[: len(head)] != head:
            raise BundleError("tokenizer: special tokens/placeholders do not match its settings")
        if not all(isinstance(t, str) for t in tokens):
            raise BundleError("tokenizer: tokens must be strings")
        return cls(cfg, tokens[len(head) :])


def _merges(
    symbols: list[list[str]], freq: list[int], known: set[str], budget: int, min_frequency: int
) -> list[str]:
    """BPE-style merges: repeatedly join the most frequent adjacent pair into a new piece.

    Pair counts are weighted by word frequency and updated only for the words a merge
    touches; ties go to the lexically smallest pair, so training is deterministic.
    """
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for i, syms in enumerate(symbols):
        for pair in pairwise(syms):
            pairs[pair] += freq[i]
            where.setdefault(pair, set()).add(i)
    new: list[str] = []
    while len(new) < budget and pairs:
        (a, b), count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < min_frequency:
            break
        merged = a + b[len(_CONT) :]
        if merged not in known:
            known.add(merged)
            new.append(merged)
        for i in sorted(where.pop((a, b), ())):
            syms = symbols[i]
            for pair in pairwise(syms):
                pairs[pair] -= freq[i]
                if pairs[pair] <= 0:
                    del pairs[pair]
            out: list[str] = []
            j = 0
            while j < len(syms):
                if j + 1 < len(syms) and syms[j] == a and syms[j + 1] == b:
                    out.append(merged)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            symbols[i] = out
            for pair in pairwise(out):
                pairs[pair] += freq[i]
                where.setdefault(pair, set()).add(i)
        pairs.pop((a, b), None)
    return new


def pad_ids(seqs: Sequence[Sequence[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(ids int64[B, T], lengths int64[B])``, right-padded with ``[PAD]``."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    ids = np.full((len(seqs), int(lengths.max(initial=2))), PAD, dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    return ids, lengths
