"""FastLogAD's split read as lines: what ADALog trains, calibrates and is tested on.

ADALog is per line; its windows are rebuilt from the raw file by the same windowing and
split code ``prepare`` runs, and checked window for window against the ``Prepared``
(:func:`window_lines`), so both detectors are judged on the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from logsieve.bundle import Bundle
from logsieve.errors import DataError
from logsieve.export.adalog.bundle import AdaLogConfig, read_line_texts, train_adalog_bundle
from logsieve.export.adalog.text import TextConfig
from logsieve.export.data.datasets import Sequence, chronological_split
from logsieve.export.data.formats import read_records
from logsieve.export.data.prepare import LINE_DATASETS, Prepared, block_labels
from logsieve.logs.keys import KeyExtractor
from logsieve.logs.windows import replay

__all__ = ["AdaLogSplit", "WindowLines", "adalog_split", "train_adalog_split", "window_lines"]

_LINE_LABELLED = ("bgl", "thunderbird")  # per-line labels: ADALog's own metric applies


@dataclass(frozen=True)
class WindowLines:
    """The line indices (into the raw file) of every window of a raw-line ``Prepared``."""

    train: list[list[int]]
    validation: list[list[int]]
    test: list[list[int]]
    n_records: int


def window_lines(
    data: Prepared, path: Path, *, labels_path: Path | None = None, pattern: str | None = None
) -> WindowLines:
    """Rebuild ``data``'s windows as line indices, with the code ``prepare`` splits by.

    Raises :class:`DataError` if the rebuilt split differs from ``data`` in any window
    count or test label (then ADALog would not be judged on the same windows).
    """
    if data.dataset not in LINE_DATASETS:
        raise DataError(f"{data.dataset}: pre-parsed windows have no raw lines")
    # The format prepare read (the detected time format included), so windows match.
    stored = data.log_config.line_format
    records = list(
        read_records(path, stored)
        if stored is not None and pattern is None
        else read_records(path, data.dataset, pattern=pattern)
    )
    config = data.log_config.windows
    keys = KeyExtractor(config)
    windows = list(replay(config, ((r.time, keys.keys(r), i) for i, r in enumerate(records))))
    blocks = block_labels(path, labels_path) if data.dataset == "hdfs" else None
    seqs = []
    for i, w in enumerate(windows):
        if blocks is not None:
            label: int | None = blocks.get(w.key)
        else:
            marks = [records[j].label for j in w.items]
            label = int(any(marks)) if any(m is not None for m in marks) else None
        seqs.append(Sequence([], label, None, w.start, str(i)))
    split_args = data.summary.get("split", {})
    split = chronological_split(
        seqs, train_n=split_args.get("train_n"), val_fraction=split_args.get("val_fraction", 0.1)
    )
    got = (len(split.train), len(split.validation), len(split.test))
    want = tuple(
        data.summary.get(k) for k in ("train_windows", "validation_windows", "test_windows")
    )
    labels = np.array([int(bool(s.label)) for s in split.test], dtype=np.int64)
    if got != want or not np.array_equal(labels, data.test_labels):
        raise DataError(f"{path}: rebuilt windows {got} differ from the prepared split {want}")

    def lines(items: list[Sequence]) -> list[list[int]]:
        return [list(windows[int(s.key)].items) for s in items]

    return WindowLines(lines(split.train), lines(split.validation), lines(split.test), len(records))


@dataclass(frozen=True)
class AdaLogSplit:
    """ADALog's view of a raw-line split: line texts and the line indices of each part."""

    windows: WindowLines
    texts: list[str]
    line_labels: npt.NDArray[np.int64]
    view: str  # the read_line_texts format
    train: list[int]
    validation: list[int]


def adalog_split(
    data: Prepared, path: Path, *, labels_path: Path | None = None, pattern: str | None = None
) -> AdaLogSplit:
    """``data``'s split as ADALog sees it: line texts, and the lines of each part."""
    wl = window_lines(data, path, labels_path=labels_path, pattern=pattern)
    view = data.dataset if data.dataset in _LINE_LABELLED else "lines"
    texts, line_labels = read_line_texts(path, view)
    if len(texts) != wl.n_records:
        raise DataError(f"{path}: ADALog's line view and the windowed records differ in length")
    train_idx = sorted({j for w in wl.train for j in w})
    val_all = {j for w in wl.validation for j in w}
    # Sliding windows overlap: calibrate on validation lines training did not see.
    val_idx = sorted(val_all - set(train_idx)) or sorted(val_all)
    return AdaLogSplit(wl, texts, line_labels, view, train_idx, val_idx)


def train_adalog_split(
    data: Prepared,
    path: Path,
    out: Path,
    cfg: AdaLogConfig,
    text_cfg: TextConfig | None = None,
    *,
    labels_path: Path | None = None,
    pattern: str | None = None,
) -> Bundle:
    """Train an ADALog bundle on the lines of ``data``'s normal training windows and
    calibrate on its validation windows' lines: FastLogAD's split, read as lines."""
    sp = adalog_split(data, Path(path), labels_path=labels_path, pattern=pattern)
    return train_adalog_bundle(
        [sp.texts[j] for j in sp.train], [sp.texts[j] for j in sp.validation], Path(out), cfg,
        text_cfg=text_cfg, fmt=sp.view,
    )  # fmt: skip
