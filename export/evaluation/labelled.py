"""Score labelled files entirely as test data with a bundle (``logsieve eval --test``).

Nothing is re-derived from data: raw lines are cut into windows and matched to
templates with the bundle's own settings and template state, pre-parsed event ids map
through the bundle's own event-id table (:func:`bundle_eval.bundle_event_ids`), and
every window is scored and judged by the code ``logsieve score`` runs
(:func:`~logsieve.export.fastlogad.scoring.score_file` for raw lines; the same window
engine and :func:`~logsieve.verdict.scored_windows` for id sequences), so a window's
verdict here is its verdict there.

Where the labels come from, per dataset kind:

* ``hdfs-sessions``: one session per line of event ids; the file's label is given
  (``--test-label normal|anomalous``, one per ``--test``): the files are split by class.
* ``bgl-windows``: JSONL, each window carries ``label`` (or ``line_labels``).
* ``hdfs``: a ``BlockId,Label`` CSV (``--labels``, default ``<log>.block_labels.csv`` or
  ``anomaly_label.csv`` beside the log), by window key.
* ``bgl`` / ``thunderbird``: each line's first field (``-`` normal); a window is
  anomalous when one of its lines is.
* ``lines``: a ``Key,Label`` CSV (``--labels``) by window key (host or session key).

A window without a label (its key absent from the labels file) is counted and left out
of the metrics.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from logsieve.bundle import Bundle, open_bundle
from logsieve.config import LogConfig
from logsieve.errors import ConfigError, DataError
from logsieve.export.data.datasets import read_bgl_windows, read_sessions
from logsieve.export.data.formats import read_records
from logsieve.export.data.prepare import block_labels
from logsieve.export.evaluation.bundle_eval import (
    PRE_PARSED,
    bundle_event_ids,
    check_bundle_data,
    check_bundle_reads,
)
from logsieve.export.evaluation.metrics import (
    Metrics,
    average_precision,
    projected_hdfs,
    roc_auc,
)
from logsieve.export.fastlogad.scoring import score_file, window_engine
from logsieve.logs.keys import KeyExtractor
from logsieve.logs.novelty import WindowNovelty, judge_offline
from logsieve.logs.pipeline import Event
from logsieve.logs.templates import UNKNOWN
from logsieve.logs.vocab import UNSEEN_SCORE
from logsieve.logs.windows import Window, replay
from logsieve.verdict import (
    ScoredWindow,
    known_ids,
    scored_windows,
    seen_in_training,
    template_ids,
)

__all__ = [
    "TEST_LABELS",
    "evaluate_labelled",
    "format_labelled_report",
    "read_key_labels",
    "verdict_metrics",
]

# --test-label values (hdfs-sessions files are split by class, the label is the file's).
TEST_LABELS = {"normal": 0, "anomalous": 1}


@dataclass
class _Scored:
    """Every scored window of the test files, with its label (None: unlabelled)."""

    anomaly: list[bool] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    unseen: list[bool] = field(default_factory=list)
    labels: list[int | None] = field(default_factory=list)

    def add(self, windows: Iterable[ScoredWindow], labels: Iterable[int | None]) -> None:
        for sw, y in zip(windows, labels, strict=True):
            self.anomaly.append(sw.anomaly)
            # A window a rare new template flags ranks above every scored one, one the
            # training data held below, as in eval --data (score_windows): ROC-AUC then
            # agrees with the verdicts.
            if any(sw.rare_new):
                self.scores.append(UNSEEN_SCORE)
            else:
                self.scores.append(-UNSEEN_SCORE if sw.seen_in_training else sw.score)
            self.unseen.append(sw.unknown_lines > 0)
            self.labels.append(y)


def evaluate_labelled(
    bundle_path: Path,
    dataset: str,
    tests: Sequence[Path],
    *,
    test_labels: Sequence[str] = (),
    labels_path: Path | None = None,
    pattern: str | None = None,
    backend: str | None = "auto",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Score each file of ``tests`` as ``dataset`` with the bundle; returns the report.

    ``test_labels``: for ``hdfs-sessions``, one of :data:`TEST_LABELS` per file, in the
    order of ``tests`` (no other kind takes it). ``labels_path``: the key-label CSV of a
    raw ``hdfs`` or ``lines`` log (one file). ``backend``: the engine ``score`` would
    use (``auto``); ``None`` scores with the eager model.
    """
    if not tests:
        raise ConfigError("test", tests, "at least one labelled file")
    bundle = open_bundle(bundle_path)
    check_bundle_data(bundle, None)
    check_bundle_reads(bundle, dataset)
    _check_label_sources(dataset, tests, test_labels, labels_path)
    scored = _Scored()
    t0 = time.perf_counter()
    if dataset in PRE_PARSED:
        _score_sequences(bundle, dataset, tests, test_labels, backend, batch_size, scored)
    else:
        fmt = bundle.manifest.get("format")
        if fmt is not None and fmt != dataset:
            raise ConfigError("dataset", dataset, f"{fmt!r}: the line format the bundle reads")
        for path in tests:
            _score_raw(bundle, dataset, path, labels_path, pattern, backend, scored)
    seconds = time.perf_counter() - t0
    return _report(bundle, dataset, tests, scored, seconds)


def _check_label_sources(
    dataset: str, tests: Sequence[Path], test_labels: Sequence[str], labels_path: Path | None
) -> None:
    if dataset == "hdfs-sessions":
        if len(test_labels) != len(tests):
            raise ConfigError(
                "test_label", list(test_labels),
                f"one of {'/'.join(TEST_LABELS)} per --test file ({len(tests)} given): "
                "a session file has no labels of its own",
            )  # fmt: skip
        for label in test_labels:
            if label not in TEST_LABELS:
                raise ConfigError("test_label", label, f"one of {', '.join(TEST_LABELS)}")
    elif test_labels:
        raise ConfigError(
            "test_label", list(test_labels), f"only for hdfs-sessions files ({dataset} files "
            "carry their labels, or take --labels)",
        )  # fmt: skip
    if labels_path is not None:
        if dataset not in ("hdfs", "lines"):
            raise ConfigError(
                "labels", str(labels_path), f"only for hdfs or lines logs ({dataset}: the "
                "labels are in the file)",
            )  # fmt: skip
        if len(tests) > 1:
            raise ConfigError("labels", str(labels_path), "one --test file with --labels")
    elif dataset == "lines":
        raise ConfigError("labels", None, "a Key,Label CSV for a lines log (--labels)")


def _score_sequences(
    bundle: Bundle,
    dataset: str,
    tests: Sequence[Path],
    test_labels: Sequence[str],
    backend: str | None,
    batch_size: int,
    scored: _Scored,
) -> None:
    """Event-id files: ids map through the bundle's table (-1, unseen, when absent);
    then what ``score`` does for windows of raw lines (``model_inputs`` → engine →
    ``scored_windows``). Under ``unseen_templates = "novelty"`` the windows of all the
    files are judged at once (:func:`~logsieve.logs.novelty.judge_offline`, as
    ``eval --data`` judges a pre-parsed test split), an unseen event id standing for
    itself (``E<id>``)."""
    index = {e: i for i, e in enumerate(bundle_event_ids(bundle))}
    items: list[tuple[Window[Event], int | None]] = []
    for n, path in enumerate(tests):
        if dataset == "hdfs-sessions":
            seqs = read_sessions(path, TEST_LABELS[test_labels[n]])
        else:
            seqs = read_bgl_windows(path)
        for seq in seqs:
            events = [Event(None, index.get(e, UNKNOWN), f"E{e}") for e in seq.event_ids]
            items.append((Window(seq.key, 0.0, 0.0, events), seq.label))
    judged = _judge_offline([w for w, _ in items], bundle.log_config)
    engine = window_engine(bundle, backend)
    try:
        for start in range(0, len(items), batch_size):
            part = items[start : start + batch_size]
            windows = [w for w, _ in part]
            ids = template_ids(windows)
            verdicts = None if judged is None else judged[start : start + batch_size]
            if verdicts is not None:  # the model scores the known lines only
                ids = known_ids(ids, verdicts)
            results = engine.score_ids(ids)
            seen = seen_in_training(ids, bundle)
            scored.add(
                scored_windows(windows, results, bundle.vocab, bundle.threshold, verdicts, seen),
                [y for _, y in part],
            )
    finally:
        engine.close()


def _judge_offline(
    windows: Sequence[Window[Event]], config: LogConfig
) -> list[WindowNovelty] | None:
    """The novelty judgement of every window (None unless the policy is ``novelty``).

    :func:`judge_offline` gives each window's count of rare lines; each unseen line of a
    window with any is marked rare (the verdict is exact; which unseen line of such a
    window is the rare one only orders the evidence, which eval does not print).
    """
    if config.unseen_templates != "novelty":
        return None
    unseen = [[e.text for e in w.items if e.template_id < 0] for w in windows]
    rare = judge_offline(unseen, config.novelty)
    out = []
    for w, n_rare in zip(windows, rare, strict=True):
        ids = [e.template_id for e in w.items]
        out.append(
            WindowNovelty(
                known=[i for i, t in enumerate(ids) if t >= 0],
                rare=[t < 0 and n_rare > 0 for t in ids],
                patterns=[e.text if e.template_id < 0 else None for e in w.items],
            )
        )
    return out


def _score_raw(
    bundle: Bundle,
    fmt: str,
    path: Path,
    labels_path: Path | None,
    pattern: str | None,
    backend: str | None,
    scored: _Scored,
) -> None:
    """A raw log through ``score_file``; labels per window from a replay of the same
    records through the same windowing (checked window by window)."""
    records = list(read_records(path, fmt, pattern=pattern))
    by_key: dict[str, int] | None = None
    if fmt == "hdfs":
        by_key = block_labels(path, labels_path)
        if not by_key:
            raise DataError(
                f"{path}: no block labels (give --labels BlockId,Label CSV, or put "
                f"{path.name.removesuffix('.log')}.block_labels.csv beside it)"
            )
    elif fmt == "lines":
        assert labels_path is not None
        by_key = read_key_labels(labels_path)
    keys = KeyExtractor(bundle.log_config.windows)
    events = ((r.time, keys.keys(r), i) for i, r in enumerate(records))
    cut = list(replay(bundle.log_config.windows, events))
    windows = list(score_file(bundle, path, fmt, pattern=pattern, backend=backend))
    if len(windows) != len(cut):
        raise DataError(f"{path}: {len(windows)} windows scored, {len(cut)} cut for labels")
    labels: list[int | None] = []
    for sw, w in zip(windows, cut, strict=True):
        if (sw.key, sw.start, sw.end, len(sw.lines)) != (w.key, w.start, w.end, len(w.items)):
            raise DataError(
                f"{path}: window {sw.key!r} at {sw.start} scored differently from how it was "
                "labelled (the windowing of score and eval disagree)"
            )
        if by_key is not None:
            labels.append(by_key.get(w.key))
        else:
            line_labels = [records[i].label for i in w.items]
            known = [y for y in line_labels if y is not None]
            labels.append(int(any(known)) if known else None)
    scored.add(windows, labels)


def read_key_labels(path: Path) -> dict[str, int]:
    """``Key,Label`` CSV (header row; the key column is the first one not named
    ``Label``; labels ``Normal``/``Anomaly`` or ``0``/``1``) → {key: 0/1}."""
    values = {"normal": 0, "anomaly": 1, "anomalous": 1, "0": 0, "1": 1}
    out: dict[str, int] = {}
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        header = [h.strip() for h in next(rows, [])]
        if "Label" not in header or len(header) < 2:
            raise DataError(f"{path}:1: expected a header like Key,Label, got {header!r}")
        label_col = header.index("Label")
        key_col = next(i for i, h in enumerate(header) if i != label_col)
        for lineno, row in enumerate(rows, 2):
            if not row:
                continue
            y = values.get(row[label_col].strip().lower()) if len(row) > label_col else None
            if y is None or len(row) <= key_col:
                raise DataError(f"{path}:{lineno}: expected key,label, got {row!r}")
            if out.setdefault(row[key_col].strip(), y) != y:
                raise DataError(f"{path}:{lineno}: {row[key_col]!r} again with another label")
    return out


def _report(
    bundle: Bundle, dataset: str, tests: Sequence[Path], s: _Scored, seconds: float
) -> dict[str, Any]:
    if not s.labels:
        raise DataError(f"{', '.join(map(str, tests))}: no window to evaluate")
    known = np.array([y is not None for y in s.labels])
    if not known.any():
        raise DataError(f"{', '.join(map(str, tests))}: no window has a label")
    y = np.array([v or 0 for v in s.labels], dtype=np.int64)[known]
    scores = np.array(s.scores, dtype=np.float64)[known]
    unseen = np.array(s.unseen)
    m = verdict_metrics(np.array(s.anomaly)[known], y, scores, bundle.threshold)

    def by_class(mask: npt.NDArray[np.bool_]) -> dict[str, int]:
        sub = mask[known]
        return {
            "normal": int(sub[y == 0].sum()),
            "anomalous": int(sub[y == 1].sum()),
            "unlabelled": int(mask[~known].sum()),
        }

    report: dict[str, Any] = {
        "dataset": dataset,
        "bundle": str(bundle.path),
        "test_files": [str(p) for p in tests],
        "threshold": bundle.threshold,
        "unseen_templates": bundle.log_config.unseen_templates,
        "n_windows": len(s.labels),
        "n_test": int(known.sum()),
        "n_test_normal": int((y == 0).sum()),
        "n_test_anomalous": int(y.sum()),
        "n_unlabelled": int((~known).sum()),
        "flagged": by_class(np.array(s.anomaly)),
        "windows_with_unseen": by_class(unseen),
        "metrics": {k: _finite(v) for k, v in m.to_dict().items()},
        "ms_per_window": 1000.0 * seconds / len(s.labels),
    }
    if dataset == "hdfs-sessions":
        report["projected"] = {k: _finite(v) for k, v in projected_hdfs(m).items()}
    return report


def verdict_metrics(
    flagged: npt.NDArray[np.bool_], labels: npt.NDArray[np.int64], scores: npt.ArrayLike,
    threshold: float,
) -> Metrics:  # fmt: skip
    """P/R/F1/FPR from the windows' own verdicts (``ScoredWindow.anomaly``: the rule
    ``score`` prints), ROC-AUC and PR-AUC from their scores (NaN with one class)."""
    y = labels.astype(bool)
    tp, fp = int(np.sum(flagged & y)), int(np.sum(flagged & ~y))
    fn, tn = int(np.sum(~flagged & y)), int(np.sum(~flagged & ~y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Metrics(
        precision=precision, recall=recall, f1=f1, fpr=fp / (fp + tn) if fp + tn else 0.0,
        roc_auc=roc_auc(scores, labels), pr_auc=average_precision(scores, labels),
        tp=tp, fp=fp, fn=fn, tn=tn, threshold=float(threshold),
    )  # fmt: skip


def _finite(value: Any) -> Any:
    """NaN (ROC-AUC with one class) as None, so ``--json`` stays valid JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


def format_labelled_report(report: dict[str, Any]) -> str:
    """The human-readable form of an :func:`evaluate_labelled` report."""
    m = report["metrics"]
    fl, un = report["flagged"], report["windows_with_unseen"]

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    out = [
        f"{report['dataset']}: {report['n_test']} labelled windows "
        f"({report['n_test_normal']} normal, {report['n_test_anomalous']} anomalous"
        + (f"; {report['n_unlabelled']} unlabelled, left out" if report["n_unlabelled"] else "")
        + f"), threshold {report['threshold']:.6g}",
        f"flagged: {fl['normal']} of {report['n_test_normal']} normal, "
        f"{fl['anomalous']} of {report['n_test_anomalous']} anomalous",
        f"P {num(m['precision'])}  R {num(m['recall'])}  F1 {num(m['f1'])}  "
        f"FPR {num(m['fpr'])}  ROC-AUC {num(m['roc_auc'])}  PR-AUC {num(m.get('pr_auc'))}",
        f"windows holding unseen templates: {un['normal']} normal, {un['anomalous']} "
        f"anomalous, {un['unlabelled']} unlabelled "
        f"(unseen_templates = {report['unseen_templates']!r})",
    ]
    if "projected" in report:
        p = report["projected"]
        out.append(
            f"projected to HDFS's class ratio: P {num(p['precision'])}  "
            f"R {num(p['recall'])}  F1 {num(p['f1'])}"
        )
    return "\n".join(out)
