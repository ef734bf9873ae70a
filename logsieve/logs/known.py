"""Windows the normal training data held verbatim: normal by what the model was shown.

A small model does not fit every shape of its own training data: on the demo's generated
HDFS logs 33 of the 226 distinct training windows score above the threshold calibrated
on the validation part, and 19 of 22 false flags on fresh normal traffic were windows
whose exact template sequence training had. On HDFS, 4,263 of the 4,784 normal dev
sessions repeat a training session verbatim and none of the 5,051 anomalous ones does.

So the bundle stores a hash of every training and validation window the model saw
(after encoding: ``[CLS]`` and template tokens, chunk by chunk), and a window whose
model input matches chunk for chunk is normal whatever it scores (``seen_in_training``
on its verdict). Label-free: training data is normal by the method's own assumption.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from logsieve.config import LogConfig
from logsieve.errors import BundleError
from logsieve.logs.vocab import Vocab

__all__ = ["KnownWindows", "chunk_key"]

STATE_KIND = "logsieve.known_windows"
SCHEMA_VERSION = 1


def chunk_key(chunk: npt.ArrayLike) -> str:
    """16 hex digits of BLAKE2b over one encoded chunk's int64 token ids."""
    raw = np.ascontiguousarray(chunk, dtype=np.int64).tobytes()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


class KnownWindows:
    """The set of encoded chunks the training data held."""

    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = frozenset(keys)

    @classmethod
    def of_chunks(cls, chunks: Iterable[npt.ArrayLike]) -> KnownWindows:
        """From encoded training chunks (``Prepared.train + Prepared.validation``)."""
        return cls(chunk_key(c) for c in chunks)

    def __len__(self) -> int:
        return len(self.keys)

    def holds(self, chunks: Sequence[npt.ArrayLike]) -> bool:
        """Whether every chunk of one window is a training chunk (no chunk: False)."""
        return bool(chunks) and all(chunk_key(c) in self.keys for c in chunks)

    def holds_ids(self, template_ids: Sequence[int], vocab: Vocab, config: LogConfig) -> bool:
        """:meth:`holds` for a window of template ids, encoded as the engine encodes it."""
        if not template_ids:
            return False
        return self.holds(vocab.encode(list(template_ids), config.max_len, config.truncate))

    def to_json(self) -> dict[str, Any]:
        """Versioned JSON form (``known_windows.json`` in a bundle)."""
        return {"kind": STATE_KIND, "schema_version": SCHEMA_VERSION, "keys": sorted(self.keys)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> KnownWindows:
        """Inverse of :meth:`to_json`; anything else is a :class:`BundleError`."""
        if not isinstance(obj, Mapping) or obj.get("kind") != STATE_KIND:
            raise BundleError(f"known windows: expected kind {STATE_KIND!r}")
        if obj.get("schema_version") != SCHEMA_VERSION:
            raise BundleError(
                f"known windows: schema_version={obj.get('schema_version')!r}, "
                f"this logsieve reads {SCHEMA_VERSION}"
            )
        keys = obj.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise BundleError("known windows: 'keys' must be a list of hex strings")
        return cls(keys)
