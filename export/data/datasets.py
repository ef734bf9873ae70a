"""Dataset readers, the training-label firewall and chronological splits.

Raw line readers live in :mod:`export.data.readers` and are re-exported here, so
``from logsieve.export.data.datasets import read_hdfs_raw`` works; this module adds
pre-parsed sequences (DeepLog-style HDFS sessions, BGL window JSONL), label
files, and the split helpers.

**Labels are for evaluation only.** Readers return labels because evaluation
needs them; training and threshold calibration must take their data through
:func:`normal_only` or :func:`chronological_split`, both of which drop
anomalous items and strip the label fields from what they pass on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from logsieve.errors import ConfigError, DataError
from logsieve.export.data.lines import DEFAULT_MAX_LINE_BYTES, ReadStats, iter_lines
from logsieve.export.data.readers import (
    HDFS_BLOCK_RE,
    hdfs_block_ids,
    parse_bgl_line,
    parse_hdfs_line,
    parse_thunderbird_line,
    read_bgl_raw,
    read_bgl_raw_with_category,
    read_hdfs_raw,
    read_lines,
    read_thunderbird_raw,
    read_thunderbird_raw_with_category,
)
from logsieve.logs.records import LogRecord

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "HDFS_BLOCK_RE",
    "HdfsSessions",
    "ReadStats",
    "Sequence",
    "Split",
    "chronological_split",
    "hdfs_block_ids",
    "normal_only",
    "parse_bgl_line",
    "parse_hdfs_line",
    "parse_thunderbird_line",
    "read_bgl_raw",
    "read_bgl_raw_with_category",
    "read_bgl_windows",
    "read_hdfs_block_labels",
    "read_hdfs_raw",
    "read_hdfs_sessions_dir",
    "read_lines",
    "read_sessions",
    "read_templates_tsv",
    "read_thunderbird_raw",
    "read_thunderbird_raw_with_category",
]


@dataclass(slots=True)
class Sequence:
    """One pre-parsed sequence of template ids (an HDFS session or a BGL window).

    ``label`` is 0/1 where the dataset says, ``None`` when unknown or stripped;
    ``line_labels`` gives one 0/1 per event where the dataset has them.
    ``start`` is the event time of the first line when known (the pre-parsed
    files carry none). ``key`` identifies the sequence: ``<file>:<line>`` for
    session files, ``<file>@<window_start>`` for BGL windows (their
    ``window_start`` is a line offset into the log, not a time).
    """

    event_ids: list[int]
    label: int | None
    line_labels: list[int] | None
    start: float | None
    key: str


T = TypeVar("T", LogRecord, Sequence)


@dataclass(slots=True, frozen=True)
class Split(Generic[T]):
    """A chronological split: training and validation are normal-only, label-free."""

    train: list[T]
    validation: list[T]
    test: list[T]


@dataclass(slots=True, frozen=True)
class HdfsSessions:
    """The HDFS session splits as ``hdfs/sessions/README`` prescribes.

    ``train``/``validation``: ``train_normal`` in file order, the last
    ``val_fraction`` held out, labels stripped. ``test``: ``dev_normal``
    (label 0) then ``dev_abnormal`` (label 1), each in file order.
    """

    train: list[Sequence]
    validation: list[Sequence]
    test: list[Sequence]


def _is_normal(item: LogRecord | Sequence) -> bool:
    if item.label not in (0, None):
        return False
    # A window whose overall label was lost but whose lines say "anomalous"
    # is still anomalous.
    return not (isinstance(item, Sequence) and item.line_labels and any(item.line_labels))


def _strip(item: T) -> T:
    if isinstance(item, Sequence):
        return Sequence(item.event_ids, None, None, item.start, item.key)
    return dataclasses.replace(item, label=None)


def normal_only(items: Iterable[T]) -> Iterator[T]:
    """The training-label firewall: yield items labelled 0 or ``None``, labels removed.

    Anomalous items (label 1, or any line label 1) are dropped; what passes has
    ``label=None`` (and ``line_labels=None``), so code downstream of this call
    cannot read a label even by mistake. Unlabelled data counts as normal: that
    is the production case (training on a site's own logs). Order is kept and
    the input is consumed lazily.
    """
    for item in items:
        if _is_normal(item):
            yield _strip(item)


def chronological_split(
    items: Iterable[T], *, train_n: int | None = None, val_fraction: float = 0.1
) -> Split[T]:
    """Split in file order: the first ``train_n`` normal items train, the rest test.

    The FastLogAD protocol: walk ``items`` in order; the first ``train_n``
    normal items (label 0 or ``None``; all of them when ``train_n`` is
    ``None``) form the training pool, whose *last* ``floor(val_fraction * n)``
    items (at least one when ``val_fraction > 0`` and the pool has two) become
    validation; everything else — anomalies anywhere and every item after the
    pool is full — is test, labels intact. Training and validation items pass
    through the label firewall (labels stripped). Deterministic, no shuffling.
    """
    if train_n is not None and train_n < 0:
        raise ConfigError("train_n", train_n, "a count >= 0, or None for all normal items")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError("val_fraction", val_fraction, "a fraction in [0, 1)")
    pool: list[T] = []
    test: list[T] = []
    for item in items:
        if (train_n is None or len(pool) < train_n) and _is_normal(item):
            pool.append(_strip(item))
        else:
            test.append(item)
    n_val = int(len(pool) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(pool) >= 2:
        n_val = 1
    cut = len(pool) - n_val
    return Split(train=pool[:cut], validation=pool[cut:], test=test)


def read_sessions(
    path: str | Path,
    label: int | None,
    *,
    stats: ReadStats | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[Sequence]:
    """Stream a DeepLog-style session file: one session per line of event ids.

    Ids are whitespace-separated non-negative integers; every session gets
    ``label`` (the files are split by class). Empty lines are skipped (counted);
    any other token raises :class:`DataError` naming ``file:line`` — these
    files are machine-written, so a bad token means a wrong or corrupt file.
    """
    if label not in (0, 1, None):
        raise ConfigError("label", label, "0, 1 or None")
    st = stats if stats is not None else ReadStats()
    p = Path(path)
    for lineno, line in iter_lines(p, st, max_line_bytes=max_line_bytes):
        try:
            ids = [int(tok) for tok in line.split()]
        except ValueError:
            raise DataError(f"{p}:{lineno}: expected event ids, got {line[:120]!r}") from None
        if any(i < 0 for i in ids):
            raise DataError(f"{p}:{lineno}: negative event id in {line[:120]!r}")
        st.records += 1
        yield Sequence(ids, label, None, None, f"{p.name}:{lineno}")


def read_hdfs_sessions_dir(
    directory: str | Path, *, val_fraction: float = 0.1, stats: ReadStats | None = None
) -> HdfsSessions:
    """Read ``train_normal``, ``dev_normal``, ``dev_abnormal`` into :class:`HdfsSessions`.

    Raises :class:`DataError` when one of the three files is missing.
    """
    d = Path(directory)
    for name in ("train_normal", "dev_normal", "dev_abnormal"):
        if not (d / name).is_file():
            raise DataError(f"{d / name}: missing (expected an HDFS sessions directory)")
    split = chronological_split(
        read_sessions(d / "train_normal", 0, stats=stats), val_fraction=val_fraction
    )
    test = list(read_sessions(d / "dev_normal", 0, stats=stats))
    test.extend(read_sessions(d / "dev_abnormal", 1, stats=stats))
    return HdfsSessions(train=split.train, validation=split.validation, test=test)


def read_hdfs_block_labels(path: str | Path, *, stats: ReadStats | None = None) -> dict[str, int]:
    """Read ``BlockId,Label[,NumLines…]`` (loghub ``anomaly_label.csv`` style).

    ``Label`` is ``Normal``/``Anomaly`` (any case) or ``0``/``1``. Extra
    columns are ignored. Raises :class:`DataError` naming ``file:line`` on a
    missing header, a bad row, an unknown label or a block listed twice with
    different labels.
    """
    st = stats if stats is not None else ReadStats()
    p = Path(path)
    labels: dict[str, int] = {}
    values = {"normal": 0, "anomaly": 1, "0": 0, "1": 1}
    cols: tuple[int, int] | None = None
    for lineno, line in iter_lines(p, st):
        fields = [f.strip().strip('"') for f in line.split(",")]
        if cols is None:
            try:
                cols = (fields.index("BlockId"), fields.index("Label"))
            except ValueError:
                raise DataError(f"{p}:{lineno}: header lacks BlockId,Label: {line!r}") from None
            continue
        if len(fields) <= max(cols):
            raise DataError(f"{p}:{lineno}: expected BlockId,Label, got {line[:120]!r}")
        block, raw = fields[cols[0]], fields[cols[1]]
        label = values.get(raw.lower())
        if label is None or not HDFS_BLOCK_RE.fullmatch(block):
            raise DataError(f"{p}:{lineno}: bad block id or label: {line[:120]!r}")
        if labels.setdefault(block, label) != label:
            raise DataError(f"{p}:{lineno}: {block} listed again with a different label")
        st.records += 1
    if cols is None:
        raise DataError(f"{p}: empty label file")
    return labels


def _int_list(obj: object) -> list[int] | None:
    if isinstance(obj, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in obj):
        return obj
    return None


def read_bgl_windows(
    path: str | Path,
    *,
    stats: ReadStats | None = None,
    max_line_bytes: int = 16 * 1024 * 1024,
) -> Iterator[Sequence]:
    """Stream BGL window JSONL: ``window_start``, ``event_ids``, ``line_labels``, ``label``.

    ``label`` defaults to ``max(line_labels)`` when absent; ``line_labels`` is
    optional but must match ``event_ids`` in length. A malformed JSON line or
    a missing/ill-typed field raises :class:`DataError` naming ``file:line``.
    The line limit is larger than for raw logs because a window is one line.
    """
    st = stats if stats is not None else ReadStats()
    p = Path(path)
    before = st.truncated
    for lineno, line in iter_lines(p, st, max_line_bytes=max_line_bytes):
        where = f"{p}:{lineno}"
        if st.truncated != before:
            raise DataError(f"{where}: line longer than {max_line_bytes} bytes")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: malformed JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        ids = _int_list(obj.get("event_ids"))
        if ids is None:
            raise DataError(f"{where}: 'event_ids' must be a list of integers")
        line_labels = _int_list(obj["line_labels"]) if "line_labels" in obj else None
        if "line_labels" in obj and (line_labels is None or len(line_labels) != len(ids)):
            raise DataError(f"{where}: 'line_labels' must be integers, one per event id")
        label = obj.get("label")
        if label is None and line_labels is not None:
            label = max(line_labels, default=0)
        if label not in (0, 1, None) or isinstance(label, bool):
            raise DataError(f"{where}: 'label' must be 0 or 1, got {label!r}")
        start = obj.get("window_start", lineno)
        st.records += 1
        yield Sequence(ids, label, line_labels, None, f"{p.name}@{start}")


def read_templates_tsv(path: str | Path) -> dict[int, str]:
    """Read ``event_id<TAB>template`` lines (a header row is skipped) into a dict.

    Raises :class:`DataError` naming ``file:line`` on a line without a tab, a
    non-integer id, or an id given twice.
    """
    p = Path(path)
    out: dict[int, str] = {}
    for lineno, line in iter_lines(p):
        key, sep, template = line.partition("\t")
        if lineno == 1 and not key.strip().lstrip("-").isdigit():
            continue  # header
        bad = DataError(f"{p}:{lineno}: expected '<id>\\t<template>', got {line[:120]!r}")
        if not sep:
            raise bad
        try:
            event_id = int(key)
        except ValueError:
            raise bad from None
        if event_id in out:
            raise DataError(f"{p}:{lineno}: event id {event_id} given twice")
        out[event_id] = template
    return out
