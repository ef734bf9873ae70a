"""Length bucketing: score many windows of mixed lengths with as little padding as possible.

Windows are sorted by length and grouped by bucket width (exact up to 16, then rounded
up in steps of an eighth of the power of two below the length: 2 from 17 to 32, 4 to
64, ... 32 to 512, so padding stays under 12.5% of any window); each group is cut into
batches of at most ``batch_size`` and padded to its width, never to ``max_len`` nor to
the longest window of a mixed batch. On HDFS most sessions are under 32 events while a few exceed
200: a batch of 256 sorted windows whose tail reaches 300 events would otherwise pad 200
short ones to 300. Rounding keeps the distinct shapes few (55 from 2 to 512), which
shape-specialising backends (cached kernels) want; TensorRT's profiles are ranges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from logsieve.errors import ConfigError

from .base import Engine, FloatArray, IdArray

__all__ = ["CPU_MAX_TOKENS", "batches", "bucket_width", "pad", "score_windows"]

# Tokens per engine call on a CPU. A batch of 256 BGL windows (101 tokens) carries 26k
# rows through every matrix product: ~80 MB of activations per layer, far past the
# caches. Calls of at most ~1,000 tokens ran 1.2-1.4x faster for every CPU backend on
# those windows, and no slower on HDFS ones (bench/RESULTS.md); GPUs want big batches.
CPU_MAX_TOKENS = 1024


def bucket_width(length: int, max_len: int) -> int:
    """The padded width for a batch whose longest row is ``length``."""
    n = max(length, 2)
    # Multiples of 8 (the first rule) padded a 17-event HDFS session to 24: 30% wasted
    # work in the biggest group; steps of an eighth cost 10-20% less engine time
    # on the benchmark's HDFS windows (bench/RESULTS.md) for 55 widths instead of 66.
    step = 1 if n <= 16 else 1 << ((n - 1).bit_length() - 4)
    return min(-(-n // step) * step, max_len)


def pad(windows: Sequence[IdArray], width: int) -> tuple[IdArray, IdArray]:
    """``(ids [B, width], lengths [B])`` with ``[PAD]`` (0) after each window."""
    ids = np.zeros((len(windows), width), dtype=np.int64)
    lengths = np.empty(len(windows), dtype=np.int64)
    for i, w in enumerate(windows):
        ids[i, : len(w)] = w
        lengths[i] = len(w)
    return ids, lengths


def batches(
    lengths: IdArray, batch_size: int, max_len: int, max_tokens: int | None = None
) -> list[tuple[IdArray, int]]:
    """``(indices, width)`` per batch: same-width groups of sorted lengths, each cut
    into pieces of at most ``batch_size`` rows and, if given, ``max_tokens`` padded
    tokens (never fewer than one row)."""
    order = np.argsort(lengths, kind="stable")
    widths = np.array([bucket_width(int(n), max_len) for n in lengths[order]], dtype=np.int64)
    out: list[tuple[IdArray, int]] = []
    cuts = np.flatnonzero(np.diff(widths)) + 1
    for group, group_widths in zip(np.split(order, cuts), np.split(widths, cuts), strict=True):
        width = int(group_widths[0])
        rows = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens // width))
        for start in range(0, len(group), rows):
            out.append((group[start : start + rows], width))
    return out


def score_windows(
    engine: Engine, windows: Sequence[IdArray], batch_size: int = 256
) -> tuple[FloatArray, list[FloatArray]]:
    """Score every window; returns ``(scores [N], token_probs per window, unpadded)``.

    Each window must already hold ``[CLS]`` and fit the engine (``2..max_len`` tokens;
    the vocabulary's encoder splits longer ones). ``batch_size`` caps the windows per
    engine call; on a CPU a call also holds at most :data:`CPU_MAX_TOKENS` tokens.
    """
    info = engine.info
    batch_size = min(batch_size, info.max_batch)
    if batch_size < 1:
        raise ConfigError("batch_size", batch_size, "an integer >= 1")
    lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
    if len(windows) and (lengths.min() < 2 or lengths.max() > info.max_len):
        bad = int(lengths.min() if lengths.min() < 2 else lengths.max())
        raise ConfigError("window length", bad, f"2..{info.max_len} tokens for {info.label}")
    scores = np.empty(len(windows), dtype=np.float32)
    probs: list[FloatArray] = [np.empty(0, dtype=np.float32)] * len(windows)
    max_tokens = CPU_MAX_TOKENS if info.device == "cpu" else None
    for idx, width in batches(lengths, batch_size, info.max_len, max_tokens):
        ids, lens = pad([windows[i] for i in idx], width)
        s, p = engine.score(ids, lens)
        scores[idx] = s
        for row, i in enumerate(idx):
            probs[i] = p[row, : lens[row]]
    return scores, probs
