"""Length bucketing: score many windows of mixed lengths with as little padding as possible.

Windows are sorted by length and cut into batches of at most ``batch_size``; each batch is
padded only to its own longest window rounded up to a bucket width (a multiple of
:data:`ALIGN`), never to ``max_len``. On HDFS most sessions are under 32 events while
a few exceed 200: padding everything to the longest would multiply the work several
times. Rounding to a few widths keeps the number of distinct shapes small, which is what
shape-specialising backends (TensorRT profiles, cached kernels) need.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from logsieve.errors import ConfigError

from .base import Engine, FloatArray, IdArray

__all__ = ["ALIGN", "bucket_width", "pad", "score_windows"]

ALIGN = 8


def bucket_width(length: int, max_len: int) -> int:
    """The padded width for a batch whose longest row is ``length``."""
    if length <= 16:  # tiny windows: a handful of widths, nearly no waste
        width = max(2, 1 << (max(length, 2) - 1).bit_length())
    else:
        width = -(-length // ALIGN) * ALIGN
    return min(width, max_len)


def pad(windows: Sequence[IdArray], width: int) -> tuple[IdArray, IdArray]:
    """``(ids [B, width], lengths [B])`` with ``[PAD]`` (0) after each window."""
    ids = np.zeros((len(windows), width), dtype=np.int64)
    lengths = np.empty(len(windows), dtype=np.int64)
    for i, w in enumerate(windows):
        ids[i, : len(w)] = w
        lengths[i] = len(w)
    return ids, lengths


def score_windows(
    engine: Engine, windows: Sequence[IdArray], batch_size: int = 256
) -> tuple[FloatArray, list[FloatArray]]:
    """Score every window; returns ``(scores [N], token_probs per window, unpadded)``.

    Each window must already hold ``[CLS]`` and fit the engine (``2..max_len`` tokens;
    the vocabulary's encoder splits longer ones).
    """
    info = engine.info
    batch_size = min(batch_size, info.max_batch)
    if batch_size < 1:
        raise ConfigError("batch_size", batch_size, "an integer >= 1")
    lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
    if len(windows) and (lengths.min() < 2 or lengths.max() > info.max_len):
        bad = int(lengths.min() if lengths.min() < 2 else lengths.max())
        raise ConfigError("window length", bad, f"2..{info.max_len} tokens for {info.label}")
    order = np.argsort(lengths, kind="stable")
    scores = np.empty(len(windows), dtype=np.float32)
    probs: list[FloatArray] = [np.empty(0, dtype=np.float32)] * len(windows)
    for start in range(0, len(windows), batch_size):
        idx = order[start : start + batch_size]
        width = bucket_width(int(lengths[idx[-1]]), info.max_len)
        ids, lens = pad([windows[i] for i in idx], width)
        s, p = engine.score(ids, lens)
        scores[idx] = s
        for row, i in enumerate(idx):
            probs[i] = p[row, : lens[row]]
    return scores, probs
