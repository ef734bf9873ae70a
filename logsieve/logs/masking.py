"""Masking: replace the variable parts of a log line (ids, addresses, numbers,
timestamps) by fixed tokens such as ``<BLK>``, ``<IP>`` or ``<NUM>``.

The same :class:`Masker` runs at training time (before template mining) and at
serving time (before template matching), so both see identical text.

Semantics. Rules are applied one after another, in configuration order, each to
the output of the previous one (``re.sub`` with the rule's token), exactly like
drain3's ``LogMasker``. A line longer than ``MaskingConfig.max_line_chars`` is cut
to that length first and the masked result gets `` <TRUNC>`` appended (counted in
:attr:`Masker.truncated`), which bounds the regex work per line. Any ``str`` is
valid input: empty or whitespace-only lines mask to themselves, control
characters, U+FFFD (``errors="replace"``) and lone surrogates
(``errors="surrogateescape"``) are ordinary characters that no rule matches.

Digit folding (:class:`DigitFolding`) is the fast path's key: when the rules
treat (some classes of) ASCII digits alike, two lines that differ only by such
digits at the same positions mask identically, so a cheap byte translation of the
raw line can key a cache of masked results. :func:`digit_folding` proves this from
the parsed patterns and refuses (returns ``None``) when it cannot.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

from logsieve.config import MaskingConfig, MaskRule

if sys.version_info >= (3, 11):
    from re import _parser as _sre_parse
else:  # pragma: no cover - Python 3.10
    import sre_parse as _sre_parse

__all__ = ["TRUNCATED_TOKEN", "DigitFolding", "Masker", "digit_folding"]

TRUNCATED_TOKEN = "<TRUNC>"
"""Appended (after a space) to a line cut at ``max_line_chars``."""

_DIGITS = frozenset(range(ord("0"), ord("9") + 1))


class Masker:
    """Applies a :class:`~logsieve.config.MaskingConfig` to lines.

    Patterns are compiled once here. ``mask`` is pure apart from the
    :attr:`truncated` counter, so one instance can serve any number of streams.

    >>> Masker(MaskingConfig()).mask("Receiving block blk_-160 src: /10.250.19.102:54106")
    'Receiving block <BLK> src: /<IP>'
    """

    __slots__ = ("_max_chars", "_rules", "config", "folding", "truncated")

    def __init__(self, config: MaskingConfig) -> None:
        self.config = config
        # A plain replacement string is safe: tokens are "<" + [A-Z0-9_]+ + ">" (no
        # backslashes or group references), and a string is faster than a callable.
        self._rules: tuple[tuple[re.Pattern[str], str], ...] = tuple(
            (re.compile(rule.pattern), rule.token) for rule in config.rules
        )
        self._max_chars = config.max_line_chars
        self.folding: DigitFolding | None = digit_folding(config.rules)
        """The digit folding that is provably safe for these rules, or ``None``."""
        self.truncated = 0
        """How many lines were cut at ``max_line_chars``."""

    def mask(self, line: str) -> str:
        """The line with every rule's matches replaced by the rule's token."""
        cut = self._max_chars is not None and len(line) > self._max_chars
        if cut:
            self.truncated += 1
            line = line[: self._max_chars]
        for regex, token in self._rules:
            line = regex.sub(token, line)
        # Appended after the rules so that no rule can rewrite the marker.
        return line + " " + TRUNCATED_TOKEN if cut else line


@dataclass(frozen=True, slots=True)
class DigitFolding:
    """How to fold a raw line into a cache key that determines its masked form.

    ``table`` (for ``bytes.translate``) maps every ASCII digit to the smallest digit
    of its class; digits in one class are interchangeable for every rule. Two lines
    whose UTF-8 (``surrogatepass``) bytes fold to the same key mask to strings that
    differ at most in digits of multi-digit classes, at the same positions. Hence a
    masked line in which :meth:`is_exact` is true is *the* masked form of every line
    with that key, and a result computed from it may be cached under the key.
    """

    table: bytes
    unsafe: re.Pattern[str] | None
    """Matches a digit of a class with more than one member (None: no such class)."""

    def key(self, line: str) -> bytes:
        """The folded key of a raw line (injective apart from the digit folding)."""
        return line.encode("utf-8", "surrogatepass").translate(self.table)

    def is_exact(self, masked: str) -> bool:
        """True when ``masked`` holds no digit that folding could have changed."""
        return self.unsafe is None or self.unsafe.search(masked) is None


def digit_folding(rules: tuple[MaskRule, ...]) -> DigitFolding | None:
    """The coarsest digit classes that every rule treats alike, or ``None``.

    Each digit literal or character class in a pattern that names only some digits
    (``0x``, ``[0-5]``, ``25[0-5]``) splits the classes; ``\\d``, ``\\w``, ``[0-9]`` and
    friends do not. Length-specific repeats (``\\d{4}``) are fine because folding
    preserves length. Backreferences (``(\\d)\\1`` compares digits) and unknown
    regex constructs make the rules unfoldable: ``None``, and callers must key on
    the masked line instead.
    """
    splits: list[frozenset[int]] = []
    for rule in rules:
        try:
            parsed: Any = _sre_parse.parse(rule.pattern)
        except Exception:  # pragma: no cover - MaskRule already compiled it
            return None
        if not _collect_digit_sets(parsed, splits):
            return None
    classes: list[frozenset[int]] = [_DIGITS]
    for split in splits:
        refined: list[frozenset[int]] = []
        for cls in classes:
            for part in (cls & split, cls - split):
                if part:
                    refined.append(part)
        classes = refined
    table = bytearray(range(256))
    unsafe_digits: list[str] = []
    for cls in classes:
        rep = min(cls)
        for d in cls:
            table[d] = rep
        if len(cls) > 1:
            unsafe_digits.extend(chr(d) for d in sorted(cls))
    unsafe = re.compile("[" + "".join(unsafe_digits) + "]") if unsafe_digits else None
    return DigitFolding(bytes(table), unsafe)


def _collect_digit_sets(items: Any, out: list[frozenset[int]]) -> bool:
    """Append every proper subset of the digits that an atom distinguishes.

    Returns False for constructs whose digit behaviour is not known.
    """
    for op, arg in items:
        name = op.name  # _NamedIntConstant on 3.10 and 3.11+
        if name in ("LITERAL", "NOT_LITERAL"):
            if arg in _DIGITS:
                out.append(frozenset((arg,)))
        elif name == "IN":
            digits = _digits_in_set(arg)
            if digits is None:
                return False
            if digits and digits != _DIGITS:
                out.append(digits)
        elif name in ("ANY", "AT", "CATEGORY"):
            continue  # \d \w \s \b ^ $ . treat all ASCII digits alike
        elif name == "SUBPATTERN":
            if not _collect_digit_sets(arg[-1], out):
                return False
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            if not _collect_digit_sets(arg[2], out):
                return False
        elif name in ("ASSERT", "ASSERT_NOT"):
            if not _collect_digit_sets(arg[1], out):
                return False
        elif name == "ATOMIC_GROUP":
            if not _collect_digit_sets(arg, out):
                return False
        elif name == "BRANCH":
            if not all(_collect_digit_sets(branch, out) for branch in arg[1]):
                return False
        elif name == "GROUPREF_EXISTS":
            # The condition only asks whether a group matched, which folding keeps.
            _group, yes, no = arg
            if not _collect_digit_sets(yes, out):
                return False
            if no is not None and not _collect_digit_sets(no, out):
                return False
        else:  # GROUPREF (compares text) and anything unknown
            return False
    return True


def _digits_in_set(items: Any) -> frozenset[int] | None:
    """The ASCII digits a character set names (before any negation)."""
    digits: set[int] = set()
    for op, arg in items:
        name = op.name  # _NamedIntConstant on 3.10 and 3.11+
        if name == "LITERAL":
            if arg in _DIGITS:
                digits.add(arg)
        elif name == "RANGE":
            lo, hi = arg
            digits.update(d for d in _DIGITS if lo <= d <= hi)
        elif name in ("CATEGORY", "NEGATE"):
            # \d \w \s \D \W \S hold every ASCII digit or none: they never split a
            # class. Counting them as "none" can only over-split, which stays correct.
            continue
        else:
            return None
    return frozenset(digits)
