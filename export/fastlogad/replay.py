"""The normal windows a bundle was trained and calibrated on, kept for ``logsieve update``.

``normal_windows.json`` holds the encoded token-id sequences (``[CLS] t1 t2 ...``; no
line text) of the training windows (distinct ones) and of the validation windows that
set the threshold. An update trains on them together with the new logs and calibrates
on both validation sets, so the new version neither forgets the old normal behaviour
nor sets a threshold the old windows exceed: fine-tuning on the new logs alone did
both (bench/RESULTS.md, "Adapting a bundle"). Token ids stay valid across updates
because an update only appends templates.

Bounded: at most :data:`MAX_TRAIN` distinct training windows (the first ones) and the
last :data:`MAX_VALIDATION` validation windows, and :data:`MAX_TOKENS` token ids for
each of the two (a few MB of JSON at most).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from logsieve.bundle import Bundle
from logsieve.errors import BundleError
from logsieve.logs.vocab import CLS

__all__ = [
    "FILE",
    "MAX_TOKENS",
    "MAX_TRAIN",
    "MAX_VALIDATION",
    "normal_windows_doc",
    "read_normal_windows",
]

FILE = "normal_windows.json"
SCHEMA_VERSION = 1
MAX_TRAIN = 20_000
MAX_VALIDATION = 5_000
MAX_TOKENS = 500_000

IdArray = npt.NDArray[np.int64]


def normal_windows_doc(train: Sequence[IdArray], validation: Sequence[IdArray]) -> dict[str, Any]:
    """The JSON object :func:`read_normal_windows` reads back."""
    distinct: dict[bytes, list[int]] = {}
    tokens = 0
    for s in train:
        key = np.asarray(s, dtype=np.int64).tobytes()
        if key not in distinct:
            tokens += len(s)
            if len(distinct) >= MAX_TRAIN or tokens > MAX_TOKENS:
                break
            distinct[key] = [int(x) for x in s]
    kept: list[list[int]] = []
    tokens = 0
    for s in reversed(validation[-MAX_VALIDATION:]):
        tokens += len(s)
        if tokens > MAX_TOKENS:
            break
        kept.append([int(x) for x in s])
    return {
        "schema_version": SCHEMA_VERSION,
        "train": list(distinct.values()),
        "validation": kept[::-1],
    }


def read_normal_windows(bundle: Bundle) -> tuple[list[IdArray], list[IdArray]] | None:
    """``(train, validation)`` sequences of ``bundle`` (None: it keeps none, e.g. a
    bundle written before they were kept); malformed content is a :class:`BundleError`."""
    if FILE not in bundle.manifest["files"]:
        return None
    import json

    where = bundle.path / FILE
    try:
        doc = json.loads(where.read_bytes())
    except ValueError as exc:
        raise BundleError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{where}: expected schema_version {SCHEMA_VERSION}")
    size = bundle.vocab.size if bundle.vocab is not None else 0
    out: list[list[IdArray]] = []
    for part in ("train", "validation"):
        seqs = doc.get(part)
        if not isinstance(seqs, list):
            raise BundleError(f"{where}: {part} must be a list of id lists")
        arrays = []
        for i, s in enumerate(seqs):
            ok = isinstance(s, list) and s and s[0] == CLS
            ok = ok and all(isinstance(x, int) and 0 <= x < size for x in s)
            if not ok:
                raise BundleError(f"{where}: {part}[{i}] is not [CLS] + token ids < {size}")
            arrays.append(np.asarray(s, dtype=np.int64))
        out.append(arrays)
    return out[0], out[1]
