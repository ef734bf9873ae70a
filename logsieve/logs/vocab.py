"""Vocabulary: template ids to model token ids, window encoding and batch padding.

Token ids 0..3 are ``[PAD] [CLS] [MASK] [UNK]``; template id ``t`` (0-based, as the
template matcher numbers them) is token ``t + 4``. A template id outside the vocabulary
(``-1`` from the matcher for an unseen line, or one mined after training) becomes
``[UNK]``; :meth:`Vocab.count_unknown` lets the caller count and report the rate.

Stored in the bundle as ``vocab.json`` (a versioned JSON of our own).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from logsieve.config import TruncatePolicy
from logsieve.errors import BundleError, ConfigError

__all__ = [
    "CLS",
    "MASK",
    "N_SPECIAL",
    "PAD",
    "SPECIAL_TOKENS",
    "UNK",
    "UNSEEN_SCORE",
    "Vocab",
    "holds_unknown",
    "pad_batch",
]

PAD, CLS, MASK, UNK = 0, 1, 2, 3
# Score of a window that holds an unseen template under ``unseen_templates="flag"``.
UNSEEN_SCORE = float("inf")
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[CLS]", "[MASK]", "[UNK]")
N_SPECIAL = len(SPECIAL_TOKENS)
SCHEMA_VERSION = 1

IdArray = npt.NDArray[np.int64]


class Vocab:
    """Maps template ids ``0..n_templates-1`` to token ids ``4..n_templates+3``.

    ``templates`` optionally keeps each template's text (for evidence in flags and for
    reading a bundle by eye); when given its length must be ``n_templates``.
    """

    __slots__ = ("n_templates", "templates")

    def __init__(self, n_templates: int, templates: Sequence[str] | None = None) -> None:
        if not isinstance(n_templates, int) or isinstance(n_templates, bool) or n_templates < 0:
            raise ConfigError("vocab.n_templates", n_templates, "an integer >= 0")
        if templates is not None:
            if len(templates) != n_templates or not all(isinstance(t, str) for t in templates):
                raise ConfigError(
                    "vocab.templates", templates, f"None or {n_templates} template strings"
                )
            templates = tuple(templates)
        self.n_templates = n_templates
        self.templates: tuple[str, ...] | None = templates

    @property
    def size(self) -> int:
        """Number of token ids (special tokens included): the model's embedding rows."""
        return self.n_templates + N_SPECIAL

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self.n_templates == other.n_templates and self.templates == other.templates

    def __hash__(self) -> int:
        return hash((self.n_templates, self.templates))

    def __repr__(self) -> str:
        return f"Vocab(n_templates={self.n_templates})"

    def token_id(self, template_id: int) -> int:
        """Token id of one template id (``[UNK]`` when outside the vocabulary)."""
        if 0 <= template_id < self.n_templates:
            return template_id + N_SPECIAL
        return UNK

    def token_ids(self, template_ids: Sequence[int] | npt.ArrayLike) -> IdArray:
        """Token ids of many template ids, as int64 (no [CLS])."""
        arr = np.asarray(template_ids, dtype=np.int64).reshape(-1)
        known = (arr >= 0) & (arr < self.n_templates)
        return np.where(known, arr + N_SPECIAL, UNK).astype(np.int64, copy=False)

    def template_id(self, token_id: int) -> int | None:
        """Inverse of :meth:`token_id`; ``None`` for the special tokens."""
        if N_SPECIAL <= token_id < self.size:
            return token_id - N_SPECIAL
        return None

    def count_unknown(self, template_ids: Sequence[int] | npt.ArrayLike) -> int:
        """How many of ``template_ids`` map to ``[UNK]`` (for the reported UNK rate)."""
        arr = np.asarray(template_ids, dtype=np.int64).reshape(-1)
        return int(np.count_nonzero((arr < 0) | (arr >= self.n_templates)))

    def encode(
        self,
        template_ids: Sequence[int] | npt.ArrayLike,
        max_len: int,
        truncate: TruncatePolicy = "split",
    ) -> list[IdArray]:
        """Encode one window as int64 sequences, each ``[CLS]`` then at most ``max_len - 1`` ids.

        A window longer than ``max_len - 1`` events:

        - ``split``: consecutive chunks of near-equal length (they differ by at most one
          event), nothing dropped. Near-equal rather than full-then-remainder so no chunk
          is a context-free stub; the caller scores the window as the max over its
          chunks.
        - ``recent``: only the most recent ``max_len - 1`` events.

        An empty window encodes as ``[[CLS]]``.
        """
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 2:
            raise ConfigError("max_len", max_len, "an integer >= 2 (it counts [CLS])")
        if truncate not in ("split", "recent"):
            raise ConfigError("truncate", truncate, "'split' or 'recent'")
        ids = self.token_ids(template_ids)
        room = max_len - 1
        if len(ids) <= room:
            return [_with_cls(ids)]
        if truncate == "recent":
            return [_with_cls(ids[-room:])]
        n_chunks = -(-len(ids) // room)
        return [_with_cls(chunk) for chunk in np.array_split(ids, n_chunks)]

    def to_json(self) -> str:
        """The ``vocab.json`` text."""
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "special_tokens": list(SPECIAL_TOKENS),
            "n_templates": self.n_templates,
            "templates": list(self.templates) if self.templates is not None else None,
        }
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Vocab:
        """Inverse of :meth:`to_json`; anything malformed is a :class:`BundleError`."""
        try:
            doc = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleError(f"vocab.json: not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise BundleError(f"vocab.json: expected an object, got {type(doc).__name__}")
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"vocab.json: schema_version={version!r}, this logsieve reads {SCHEMA_VERSION}"
            )
        special = doc.get("special_tokens")
        if special != list(SPECIAL_TOKENS):
            raise BundleError(
                f"vocab.json: special_tokens={special!r}, expected {list(SPECIAL_TOKENS)}"
            )
        n = doc.get("n_templates")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise BundleError(f"vocab.json: n_templates={n!r}, expected an integer >= 0")
        templates = doc.get("templates")
        if templates is not None and (
            not isinstance(templates, list)
            or len(templates) != n
            or not all(isinstance(t, str) for t in templates)
        ):
            raise BundleError(f"vocab.json: templates must be null or {n} strings")
        return cls(n, templates)


def _with_cls(ids: IdArray) -> IdArray:
    out = np.empty(len(ids) + 1, dtype=np.int64)
    out[0] = CLS
    out[1:] = ids
    return out


def pad_batch(sequences: Sequence[IdArray]) -> tuple[IdArray, IdArray]:
    """Pad id sequences into ``(ids int64[B, T], lengths int64[B])`` with ``[PAD]``.

    ``T`` is the longest sequence in the batch (not ``max_len``), so short batches stay
    cheap; engines that want fixed shapes bucket on top of this.
    """
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    width = int(lengths.max()) if len(sequences) else 0
    batch = np.full((len(sequences), width), PAD, dtype=np.int64)  # (B, T)
    for row, seq in enumerate(sequences):
        batch[row, : len(seq)] = seq
    return batch, lengths


def holds_unknown(chunks: Sequence[IdArray]) -> bool:
    """Whether any chunk of one encoded window holds ``[UNK]`` (an unseen template)."""
    return any(bool((np.asarray(c) == UNK).any()) for c in chunks)
