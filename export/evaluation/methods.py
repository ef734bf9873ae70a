"""The methods the accuracy harness compares, each behind one fit-and-score adapter.

Every adapter gets the *same* :class:`~logsieve.export.data.prepare.Prepared` (one
``prepare`` per dataset, shared by all methods and seeds), fits on its normal
``train``/``validation`` windows only, chooses its threshold without labels, and scores
``Prepared.test`` (one score per test window, aligned with ``test_labels``). What comes
back is a :class:`Fitted`; the harness alone reads labels.

ADALog is per line: it applies where the raw lines exist (``hdfs``, ``bgl``,
``thunderbird``, ``lines`` read from a log file) and scores every line of a test window;
the window is flagged when any line is above ADALog's line threshold (its score is the
max over its lines). Its windows are rebuilt from the raw file by the same windowing and
split code ``prepare`` runs, and checked window for window against the ``Prepared``
(:func:`window_lines`). On pre-parsed window files it does not apply.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from logsieve.errors import ConfigError
from logsieve.export.adalog.bundle import (
    AdaLogConfig,
    TextConfig,
    score_lines,
)
from logsieve.export.adalog.split import adalog_split, train_adalog_split
from logsieve.export.baselines import (
    Baseline,
    DeepLog,
    DeepLogConfig,
    IForest,
    IForestConfig,
    LogBERT,
    LogBERTConfig,
    score_chunked,
)
from logsieve.export.calibrate import DEFAULT_QUANTILE, threshold_from_normal
from logsieve.export.data.prepare import LINE_DATASETS, Prepared
from logsieve.export.fastlogad.model import ModelConfig
from logsieve.export.fastlogad.scoring import score_sequences, score_windows
from logsieve.export.fastlogad.train import TrainConfig, train
from logsieve.logs.known import KnownWindows
from logsieve.logs.vocab import UNK, pad_batch
from logsieve.verdict import template_text

__all__ = [
    "LINE_DATASETS",
    "METHODS",
    "EvalOptions",
    "Evidence",
    "Fitted",
    "Method",
]

FloatArray = npt.NDArray[np.float64]
_LINE_LABELLED = ("bgl", "thunderbird")  # per-line labels: ADALog's own metric applies


@dataclass(frozen=True)
class EvalOptions:
    """How the harness prepares data and sizes every method.

    ``train_n``/``val_fraction``/``labels_path``/``pattern``: the split, as ``prepare``
    takes them. ``tiny``: tiny models and one or two epochs (a smoke run that proves the
    plumbing, not a result). ``epochs``: caps every method's epoch count. ``threads``:
    torch intra-op threads while the harness runs (``None`` leaves them alone).
    """

    train_n: int | None = None
    val_fraction: float = 0.1
    labels_path: Path | None = None
    pattern: str | None = None
    tiny: bool = False
    epochs: int | None = None
    batch_size: int = 256
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ConfigError("epochs", self.epochs, "an integer >= 1, or None")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError("batch_size", self.batch_size, "an integer >= 1")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError("threads", self.threads, "an integer >= 1, or None")


@dataclass(frozen=True)
class Evidence:
    """Why one flagged test window was flagged: one value per line, lines labelled."""

    method: str
    window: int  # index into Prepared.test
    key: str
    score: float
    threshold: float
    labels: list[str]  # the line's template (FastLogAD) or text (ADALog)
    values: list[float]
    value_name: str
    line_threshold: float | None = None  # when values are compared with one (ADALog)


@dataclass
class Fitted:
    """One method fitted on one seed, scored on the test windows. No label is inside.

    ``other_thresholds``: further label-free thresholds the method knows (DeepLog's
    paper g). ``oracle_candidates``: set for baselines, whose oracle rows the harness
    also reports. ``line_scores``/``line_labels``: ADALog on per-line labelled data.
    """

    scores: FloatArray
    threshold: float
    rule: str
    fit_seconds: float
    score_seconds: float
    other_thresholds: dict[str, float] = field(default_factory=dict)
    oracle_candidates: FloatArray | None = None
    line_scores: FloatArray | None = None
    line_labels: npt.NDArray[np.int64] | None = None
    evidence: Callable[[int], Evidence] | None = None
    notes: dict[str, Any] = field(default_factory=dict)


FitScore = Callable[[Prepared, Path, int, EvalOptions], Fitted]


@dataclass(frozen=True)
class Method:
    """A named detector: ``fit_score(data, data_path, seed, options)``."""

    name: str
    summary: str
    fit_score: FitScore
    raw_lines: bool = False  # needs the raw log lines (ADALog)

    def not_applicable(self, dataset: str) -> str | None:
        """Why this method cannot run on ``dataset`` (``None``: it can)."""
        if self.raw_lines and dataset not in LINE_DATASETS:
            return "n/a: needs raw lines"
        return None


def _epochs(opt: EvalOptions, default: int) -> int:
    """The method's epoch count, capped by ``opt.epochs`` (a cap never adds epochs)."""
    return default if opt.epochs is None else min(opt.epochs, default)


# ---------------------------------------------------------------- FastLogAD


def _fastlogad(generator: str) -> FitScore:
    def fit_score(data: Prepared, _path: Path, seed: int, opt: EvalOptions) -> Fitted:
        tiny = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 32} if opt.tiny else {}
        model_cfg = ModelConfig(vocab_size=data.vocab.size, max_len=data.log_config.max_len, **tiny)
        rtd, hst = (1, 2) if opt.tiny else (TrainConfig.rtd_epochs, TrainConfig.hst_epochs)
        cfg = TrainConfig(
            generator="mlm" if generator == "mlm" else "random",
            seed=seed,
            rtd_epochs=_epochs(opt, rtd),
            hst_epochs=_epochs(opt, hst),
            batch_size=64 if opt.tiny else TrainConfig.batch_size,
        )
        t0 = time.perf_counter()
        result = train(data.train, data.validation, data.vocab.size, model_cfg, cfg, False)
        model = result.model.cpu().eval()
        val = score_sequences(model, data.validation or data.train, opt.batch_size)
        threshold = threshold_from_normal(val, DEFAULT_QUANTILE)
        t1 = time.perf_counter()
        scores = score_windows(
            model, data.test, opt.batch_size, data.log_config.unseen_templates,
            data.test_rare(), KnownWindows.of_chunks([*data.train, *data.validation]),
        )  # fmt: skip
        t2 = time.perf_counter()

        def evidence(i: int) -> Evidence:
            return _fastlogad_evidence(model, data, i, float(scores[i]), threshold)

        rule = f"q{DEFAULT_QUANTILE} of normal validation"
        return Fitted(scores, threshold, rule, t1 - t0, t2 - t1,
                      evidence=evidence, notes={"best_epoch": result.best_epoch})  # fmt: skip

    return fit_score


@torch.no_grad()
def _fastlogad_evidence(
    model: Any, data: Prepared, i: int, score: float, threshold: float
) -> Evidence:
    chunks = data.test[i]
    ids, lengths = pad_batch(chunks)
    _, probs = model.score(torch.from_numpy(ids), torch.from_numpy(lengths))
    # Token j >= 1 of a chunk is the next event of the window (chunks are consecutive).
    values = [float(p) for r, c in enumerate(chunks) for p in probs[r, 1 : len(c)]]
    labels = []
    for token in (int(t) for c in chunks for t in c[1:]):
        tid = data.vocab.template_id(token)
        labels.append(template_text(data.vocab, -1 if token == UNK or tid is None else tid))
    key = data.test_keys[i] if i < len(data.test_keys) else str(i)
    return Evidence("", i, key, score, threshold, labels, values, "replaced-token probability")


# ---------------------------------------------------------------- baselines


def _make_baseline(name: str, data: Prepared, seed: int, opt: EvalOptions) -> Baseline:
    v = data.vocab.size
    epochs = _epochs(opt, 3 if opt.tiny else 300)
    if name == "deeplog" and data.dataset == "hdfs-sessions":
        # The reference code's own data: run DeepLog as wuyifan18/DeepLog does (issue 18).
        ref = DeepLogConfig.reference(v, seed=seed, epochs=epochs)
        return DeepLog(replace(ref, hidden=32, batch_size=512) if opt.tiny else ref)
    if name in ("deeplog", "deeplog-ours"):
        dl = DeepLogConfig(v, seed=seed, epochs=epochs)
        return DeepLog(replace(dl, embed_dim=16, hidden=32, batch_size=512) if opt.tiny else dl)
    if name in ("logbert", "logbert-ours"):
        lb_epochs = _epochs(opt, 2 if opt.tiny else 200)
        if name == "logbert" and data.dataset == "hdfs-sessions":
            # The authors' own data: train LogBERT as HelenGuohx/logbert does (issue 18).
            lb_ref = LogBERTConfig.reference(
                v, max_len=data.log_config.max_len, seed=seed, epochs=lb_epochs
            )
            return LogBERT(replace(_tiny_logbert(lb_ref), warmup_steps=10) if opt.tiny else lb_ref)
        # The paper's settings: HDFS mask 0.65 / g 6; BGL and Thunderbird 0.5 / 15.
        hdfs = data.dataset.startswith("hdfs")
        lb = LogBERTConfig(
            v,
            max_len=data.log_config.max_len,
            mask_ratio=0.65 if hdfs else 0.5,
            g=6 if hdfs else 15,
            seed=seed,
            epochs=lb_epochs,
        )
        return LogBERT(_tiny_logbert(lb) if opt.tiny else lb)
    if name == "iforest":
        return IForest(IForestConfig(v, n_estimators=20 if opt.tiny else 100, seed=seed))
    raise ConfigError("method", name, "deeplog, deeplog-ours, logbert, logbert-ours or iforest")


def _tiny_logbert(cfg: LogBERTConfig) -> LogBERTConfig:
    return replace(cfg, d_model=32, n_layers=1, n_heads=2, d_ff=64)


def _baseline(name: str) -> FitScore:
    def fit_score(data: Prepared, _path: Path, seed: int, opt: EvalOptions) -> Fitted:
        b = _make_baseline(name, data, seed, opt)
        t0 = time.perf_counter()
        b.fit(data.train, data.validation)
        t1 = time.perf_counter()
        scores = score_chunked(b, data.test)
        t2 = time.perf_counter()
        others = {k: v for k, v in b.thresholds.items() if k != b.threshold_rule}
        return Fitted(scores, b.threshold, b.threshold_rule, t1 - t0, t2 - t1, others,
                      oracle_candidates=b.threshold_candidates(scores))  # fmt: skip

    return fit_score


# ---------------------------------------------------------------- ADALog


def _adalog(data: Prepared, path: Path, seed: int, opt: EvalOptions) -> Fitted:
    sp = adalog_split(data, path, labels_path=opt.labels_path, pattern=opt.pattern)
    wl, texts = sp.windows, sp.texts
    test_idx = sorted({j for w in wl.test for j in w})
    cfg = AdaLogConfig(seed=seed, epochs=_epochs(opt, 1 if opt.tiny else 10))
    if opt.tiny:
        cfg = replace(cfg, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=32)
    text_cfg = TextConfig(vocab_size=200) if opt.tiny else TextConfig()
    with tempfile.TemporaryDirectory(prefix="adalog-") as tmp:
        t0 = time.perf_counter()
        bundle = train_adalog_split(
            data,
            path,
            Path(tmp) / "b",
            cfg,
            text_cfg,
            labels_path=opt.labels_path,
            pattern=opt.pattern,
        )
        t1 = time.perf_counter()
        line_scores, _ = score_lines(
            bundle, [texts[j] for j in test_idx], batch_size=opt.batch_size
        )
        t2 = time.perf_counter()
    by_line = dict(zip(test_idx, line_scores.tolist(), strict=True))
    scores = np.array([max(by_line[j] for j in w) if w else -np.inf for w in wl.test])
    threshold = bundle.threshold

    def evidence(i: int) -> Evidence:
        lines = wl.test[i]
        key = data.test_keys[i] if i < len(data.test_keys) else str(i)
        return Evidence("", i, key, float(scores[i]), threshold, [texts[j] for j in lines],
                        [by_line[j] for j in lines], "line score (mean token NLL, nats)",
                        line_threshold=threshold)  # fmt: skip

    labelled = data.dataset in _LINE_LABELLED
    return Fitted(
        scores, threshold, f"q{cfg.quantile} of normal validation lines", t1 - t0, t2 - t1,
        line_scores=line_scores if labelled else None,
        line_labels=sp.line_labels[test_idx] if labelled else None,
        evidence=evidence,
        notes={"n_train_lines": len(sp.train), "n_test_lines": len(test_idx),
               "ms_per_line": 1000.0 * (t2 - t1) / max(len(test_idx), 1)},
    )  # fmt: skip


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("fastlogad-mlm", "FastLogAD, MLM generator", _fastlogad("mlm")),
        Method("fastlogad-random", "FastLogAD, random generator", _fastlogad("random")),
        Method("adalog", "ADALog, per line (window = max line)", _adalog, raw_lines=True),
        Method(
            "deeplog",
            "DeepLog (LSTM next key, top-g; on hdfs-sessions as its reference code runs it)",
            _baseline("deeplog"),
        ),
        Method(
            "deeplog-ours",
            "DeepLog, every key scored from a [PAD]ded history",
            _baseline("deeplog-ours"),
        ),
        Method(
            "logbert",
            "LogBERT (masked keys + hypersphere; on hdfs-sessions as its authors' code trains it)",
            _baseline("logbert"),
        ),
        Method(
            "logbert-ours",
            "LogBERT, distinct sessions, [MASK] only, summed hypersphere term, constant lr",
            _baseline("logbert-ours"),
        ),
        Method("iforest", "Drain + IsolationForest on counts", _baseline("iforest")),
    )
}
