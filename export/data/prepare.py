"""Datasets → encoded windows, split chronologically, ready to train and evaluate.

Every dataset goes through the FastLogAD protocol: walk the windows in order; the first
``train_n`` normal windows form the training pool (its last ``val_fraction`` is
validation); everything else is test. Training and validation pass the label firewall
(:func:`~logsieve.export.data.datasets.chronological_split` strips their labels), so labels
reach :class:`Prepared` only on the test side.

Raw-line datasets are cut into windows by the key/time rules alone (no templates yet);
templates are then mined over the *training* windows' lines only, and every window is
labelled with template ids by the serving matcher. Test lines the training never saw
map to ``[UNK]`` and are counted (``summary["test_unknown_rate"]``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from logsieve.config import LogConfig
from logsieve.errors import ConfigError, DataError
from logsieve.export.data.datasets import (
    ReadStats,
    Sequence,
    chronological_split,
    read_bgl_windows,
    read_hdfs_block_labels,
    read_hdfs_sessions_dir,
    read_templates_tsv,
)
from logsieve.export.data.formats import (
    check_parsed,
    default_log_config,
    line_format_for,
    read_records,
)
from logsieve.logs.keys import KeyExtractor
from logsieve.logs.lineformat import LineParser
from logsieve.logs.novelty import NoveltyTracker, judge_offline
from logsieve.logs.pipeline import mine_templates
from logsieve.logs.template_growth import grow_templates
from logsieve.logs.templates import TemplateMatcher
from logsieve.logs.vocab import Vocab
from logsieve.logs.windows import replay

__all__ = [
    "DATASETS",
    "LINE_DATASETS",
    "Prepared",
    "block_labels",
    "dataset_log_config",
    "prepare",
]

IdArray = npt.NDArray[np.int64]
DATASETS = ("hdfs", "hdfs-sessions", "bgl", "bgl-windows", "thunderbird", "lines")
LINE_DATASETS = ("hdfs", "bgl", "thunderbird", "lines")  # datasets read from raw lines
# How many normal windows train when --train-n is not given (the paper: ~5,000; the
# BGL window file has only ~4,100 normal windows, so half of the log trains there).
_TRAIN_N = {"hdfs-sessions": None, "bgl-windows": 2000}
_DEFAULT_TRAIN_N = 5000


@dataclass
class Prepared:
    """Encoded, split data. ``test`` holds each window's chunks (a window longer than
    ``max_len - 1`` events is split, never cut; it scores as its highest chunk)."""

    dataset: str
    log_config: LogConfig
    vocab: Vocab
    templates_state: dict[str, Any] | None
    train: list[IdArray]
    validation: list[IdArray]
    test: list[list[IdArray]] = field(default_factory=list)
    test_labels: IdArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    test_keys: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    # Per test window, the identity of each line no training template matched (an
    # event id, or a new pattern's text): what the novelty rule judges offline.
    test_unseen: list[list[str]] = field(default_factory=list)

    def test_rare(self) -> npt.NDArray[np.bool_]:
        """Per test window, whether it holds a rare new template under the config's
        ``unseen_templates = "novelty"`` rule, the test windows judged all at once
        (:func:`~logsieve.logs.novelty.judge_offline`); all False for other policies."""
        if self.log_config.unseen_templates != "novelty" or not self.test_unseen:
            return np.zeros(len(self.test), dtype=bool)
        return np.array(judge_offline(self.test_unseen, self.log_config.novelty)) > 0


def prepare(
    dataset: str,
    path: Path,
    *,
    log_config: LogConfig | None = None,
    train_n: int | None = None,
    val_fraction: float = 0.1,
    labels_path: Path | None = None,
    pattern: str | None = None,
    templates_state: dict[str, Any] | None = None,
    vocab_event_ids: list[int] | None = None,
    grow_templates_of: dict[str, Any] | None = None,
    time_format: str | None = None,
) -> Prepared:
    """Read ``path`` as ``dataset`` (one of :data:`DATASETS`) and split it.

    ``templates_state``: a bundle's template state to label raw lines with (evaluation);
    without it, templates are mined over the training windows' lines, and a file where
    most lines do not parse is a :class:`DataError` naming the first bad line.
    Raw-line datasets: ``pattern``/``time_format`` (``lines``) override the config's
    ``line_format``; the format read, with the time format detected, is stored in
    ``Prepared.log_config.line_format`` (and so in the bundle).
    ``vocab_event_ids``: for the pre-parsed datasets, a bundle's table of the event id
    each template id stands for (its manifest's ``data.vocab_event_ids``); ids map
    through it instead of a vocabulary re-derived from this folder's training file.
    ``grow_templates_of``: a bundle's template state to *grow* with the training
    windows' lines (``logsieve update``: known ids kept, new templates appended; see
    :func:`~logsieve.logs.template_growth.grow_templates`).
    """
    if dataset not in DATASETS:
        raise ConfigError("dataset", dataset, f"one of {', '.join(DATASETS)}")
    config = log_config or dataset_log_config(dataset)
    n = train_n if train_n is not None else _TRAIN_N.get(dataset, _DEFAULT_TRAIN_N)
    if dataset == "hdfs-sessions":
        data = _hdfs_sessions(Path(path), config, val_fraction, vocab_event_ids)
    elif dataset == "bgl-windows":
        data = _bgl_windows(Path(path), config, n, val_fraction, vocab_event_ids)
    else:
        assert n is not None
        lf = line_format_for(
            dataset, pattern=pattern, time_format=time_format, stored=config.line_format
        )
        parser = LineParser(lf)
        if not parser.expects_time and config.windows.kind == "sliding":
            # Every window would be dated 1970: sliding windows cut on event time.
            raise ConfigError(
                "line_format.pattern", lf.pattern, "a (?P<time>...) group: sliding windows "
                "cut on event time"
            )  # fmt: skip
        data = _raw(
            dataset, Path(path), config, n, val_fraction, labels_path, parser, templates_state,
            grow_templates_of,
        )  # fmt: skip
    data.summary["split"] = {"train_n": n, "val_fraction": val_fraction}
    return data


def dataset_log_config(dataset: str) -> LogConfig:
    """The preset :class:`LogConfig` of a dataset: its log format's (the pre-parsed
    ``hdfs-sessions``/``bgl-windows`` take ``hdfs``/``bgl``). A ``--config`` file is
    layered over it (:func:`logsieve.config.load_log_config`)."""
    if dataset not in DATASETS:
        raise ConfigError("dataset", dataset, f"one of {', '.join(DATASETS)}")
    return default_log_config(dataset.split("-")[0])


def _encode(vocab: Vocab, ids: list[int], config: LogConfig) -> list[IdArray]:
    return vocab.encode(ids, config.max_len, config.truncate)


def _finish(
    dataset: str,
    config: LogConfig,
    vocab: Vocab,
    state: dict[str, Any] | None,
    split: Any,
    ids_of: Any,
    summary: dict[str, Any],
    unseen_of: Any = None,
) -> Prepared:
    """Encode a split whose items are :class:`Sequence` (``ids_of(item)`` gives template
    ids; ``unseen_of(item, ids)`` the identities of its unseen lines, default: their
    event ids)."""
    if unseen_of is None:
        unseen_of = _unseen_event_ids
    train = [c for s in split.train for c in _encode(vocab, ids_of(s), config)]
    val = [c for s in split.validation for c in _encode(vocab, ids_of(s), config)]
    test_ids = [ids_of(s) for s in split.test]
    test = [_encode(vocab, ids, config) for ids in test_ids]
    test_unseen = [unseen_of(s, ids) for s, ids in zip(split.test, test_ids, strict=True)]
    labels = np.array([int(bool(s.label)) for s in split.test], dtype=np.int64)
    unknown = [vocab.count_unknown(ids) for ids in test_ids]
    n_events = sum(len(ids) for ids in test_ids)
    summary = {
        "test_unknown_rate": sum(unknown) / n_events if n_events else 0.0,
        "test_windows_with_unknown": sum(1 for u in unknown if u),
        **summary,
        "train_windows": len(split.train),
        "validation_windows": len(split.validation),
        "test_windows": len(split.test),
        "test_anomalous": int(labels.sum()),
    }
    return Prepared(
        dataset,
        config,
        vocab,
        state,
        train,
        val,
        test,
        labels,
        [s.key for s in split.test],
        summary,
        test_unseen,
    )


def _unseen_event_ids(item: Sequence, ids: list[int]) -> list[str]:
    return [f"E{e}" for e, t in zip(item.event_ids, ids, strict=True) if t < 0]


def _hdfs_sessions(
    path: Path, config: LogConfig, val_fraction: float, given: list[int] | None
) -> Prepared:
    if not path.is_dir():
        raise DataError(
            f"{path}: hdfs-sessions needs a folder with train_normal, dev_normal, dev_abnormal"
        )
    sessions = read_hdfs_sessions_dir(path, val_fraction=val_fraction)
    names = _hdfs_template_names(path / "HDFS_templates.csv")
    # Event ids are loghub's 1-based numbering; template text i is event id i + 1.
    vocab, ids_of, seen = _training_vocab(
        sessions, lambda e: names[e - 1] if 0 < e <= len(names) else None, given
    )
    return _finish(
        "hdfs-sessions", config, vocab, None, sessions, ids_of,
        {"source": str(path), "vocab_event_ids": seen},
    )  # fmt: skip


def _training_vocab(
    split: Any, name: Any, given: list[int] | None = None
) -> tuple[Vocab, Any, list[int]]:
    """The vocabulary of the event ids the *training* split holds (train + validation),
    ``ids_of(item)`` mapping an item's event ids into it (others: ``-1``), and the
    event id of each template id.

    An event id that only test data has becomes ``[UNK]``, as an unseen template does
    when serving: no embedding is trained for it, and neither the vocabulary nor the
    model depends on what the test split contains. ``name(event_id)`` gives a
    template's text (None when unknown: the vocabulary then keeps no texts).
    ``given``: a bundle's event id of each template id, used as it is (evaluation).
    """
    if given is not None:
        seen = list(given)
    else:
        seen = sorted({e for s in split.train + split.validation for e in s.event_ids})
    index = {e: i for i, e in enumerate(seen)}
    texts = [name(e) for e in seen]
    vocab = Vocab(len(seen), texts if all(t is not None for t in texts) else None)
    return vocab, lambda s: [index.get(e, -1) for e in s.event_ids], seen


def _hdfs_template_names(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return [row[1] for row in rows[1:] if len(row) >= 2]


def _bgl_windows(
    path: Path,
    config: LogConfig,
    train_n: int | None,
    val_fraction: float,
    given: list[int] | None,
) -> Prepared:
    jsonl = path / "train.jsonl" if path.is_dir() else path
    tsv = jsonl.with_name("templates.tsv")
    names = read_templates_tsv(tsv) if tsv.is_file() else {}
    split = chronological_split(read_bgl_windows(jsonl), train_n=train_n, val_fraction=val_fraction)
    vocab, ids_of, seen = _training_vocab(
        split, lambda e: names.get(e, f"E{e}") if names else None, given
    )
    return _finish(
        "bgl-windows", config, vocab, None, split, ids_of,
        {"source": str(jsonl), "vocab_event_ids": seen},
    )  # fmt: skip


def _raw(
    dataset: str,
    path: Path,
    config: LogConfig,
    train_n: int,
    val_fraction: float,
    labels_path: Path | None,
    parser: LineParser,
    templates_state: dict[str, Any] | None,
    grow_templates_of: dict[str, Any] | None = None,
) -> Prepared:
    stats = ReadStats()
    records = list(read_records(path, parser.format, stats=stats, parser=parser))
    if templates_state is None:
        check_parsed(stats, path)
    config = replace(config, line_format=parser.resolved())
    blocks = block_labels(path, labels_path) if dataset == "hdfs" else None
    keys = KeyExtractor(config.windows)
    windows = list(
        replay(config.windows, ((r.time, keys.keys(r), i) for i, r in enumerate(records)))
    )
    seqs = []
    for i, w in enumerate(windows):
        if blocks is not None:
            label: int | None = blocks.get(w.key)
            line_labels = None
        else:
            line_labels = [records[j].label or 0 for j in w.items]
            has = any(records[j].label is not None for j in w.items)
            label = int(any(line_labels)) if has else None
            line_labels = line_labels if has else None
        # Window i keeps its record indices aside; the key carries i back after the split.
        seqs.append(Sequence([], label, line_labels, w.start, f"{w.key}#{i}"))
    split = chronological_split(seqs, train_n=train_n, val_fraction=val_fraction)
    if not split.train:
        raise DataError(f"{path}: no normal window to train on ({len(windows)} windows)")

    def lines_of(s: Sequence) -> list[int]:
        return windows[int(s.key.rsplit("#", 1)[1])].items

    train_texts = (records[j].text for s in split.train for j in lines_of(s))
    growth = None
    if templates_state is not None:
        state = templates_state
    elif grow_templates_of is not None:
        state, growth = grow_templates(grow_templates_of, train_texts, config)
    else:
        state = mine_templates(train_texts, config)
    matcher = TemplateMatcher.from_state(state)
    ids = [matcher.match(r.text) for r in records]
    vocab = Vocab(len(matcher.templates), [t.template for t in matcher.templates])
    tracker = NoveltyTracker.for_config(config)

    def unseen_of(s: Sequence, _ids: list[int]) -> list[str]:
        return [str(tracker.observe(records[j].text, (), None)) for j in lines_of(s) if ids[j] < 0]

    prepared = _finish(
        dataset, config, vocab, state, split, lambda s: [ids[j] for j in lines_of(s)],
        {"source": str(path), "read": stats.as_dict(), "templates": len(matcher.templates)},
        unseen_of,
    )  # fmt: skip
    test_lines = [j for s in split.test for j in lines_of(s)]
    unknown = sum(1 for j in test_lines if ids[j] < 0)
    prepared.summary["test_unknown_rate"] = unknown / len(test_lines) if test_lines else 0.0
    prepared.test_keys = [s.key.rsplit("#", 1)[0] for s in split.test]
    if growth is not None:
        prepared.summary["template_growth"] = growth.as_dict()
    return prepared


def block_labels(path: Path, labels_path: Path | None) -> dict[str, int]:
    candidates = [labels_path] if labels_path else [
        path.with_name(path.name.removesuffix(".log") + ".block_labels.csv"),
        path.with_name("anomaly_label.csv"),
    ]  # fmt: skip
    for c in candidates:
        if c is not None and c.is_file():
            return read_hdfs_block_labels(c)
    # Unlabelled logs are fine for training (all windows count as normal).
    return {}
