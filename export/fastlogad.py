"""FastLogAD end to end: prepared data → trained, calibrated bundle; bundle → metrics;
bundle + log file → flagged windows with evidence.

The threshold is the ``quantile`` of the scores of the *normal validation* windows
(:func:`~logsieve.export.calibrate.threshold_from_normal`); no anomaly label is read by
training or calibration: both only see :attr:`Prepared.train` / :attr:`Prepared.validation`,
which the label firewall produced.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from logsieve import __version__
from logsieve.bundle import Bundle, BundleWriter, open_bundle
from logsieve.config import UnseenPolicy
from logsieve.errors import BundleError
from logsieve.logs.pipeline import Event, windows_of
from logsieve.logs.templates import TemplateMatcher
from logsieve.logs.vocab import UNSEEN_SCORE, holds_unknown
from logsieve.logs.windows import Window

from .calibrate import Metrics, metrics, project_metrics, score_sequences, threshold_from_normal
from .formats import FORMATS, read_records
from .model import Discriminator, ModelConfig, load_discriminator, save_checkpoint
from .prepare import Prepared
from .train import TrainConfig, TrainResult, train

__all__ = ["EagerEngine", "Flag", "evaluate", "score_file", "score_windows", "train_bundle"]

IdArray = npt.NDArray[np.int64]
# HDFS's full labelled test population (../shared/data/README.md): the projection that
# makes figures on the dev sample comparable with the papers'.
HDFS_NORMAL, HDFS_ANOMALOUS = 553_366, 16_838


def train_bundle(
    data: Prepared,
    out: Path,
    *,
    train_cfg: TrainConfig,
    model_cfg: ModelConfig | None = None,
    quantile: float = 0.99,
    progress: bool = True,
) -> tuple[Bundle, TrainResult]:
    """Train on ``data.train``, calibrate on ``data.validation``, write the bundle."""
    model_cfg = model_cfg or ModelConfig(
        vocab_size=data.vocab.size, max_len=data.log_config.max_len
    )
    result = train(data.train, data.validation, data.vocab.size, model_cfg, train_cfg, progress)
    calib = data.validation or data.train  # tiny data sets: no held-out part
    val_scores = score_sequences(result.model, calib)
    threshold = threshold_from_normal(val_scores, quantile)
    writer = BundleWriter(out)
    try:
        writer.add_text("vocab.json", data.vocab.to_json())
        if data.templates_state is not None:
            writer.add_json("templates.json", data.templates_state)
        writer.add_with(
            "model.pt",
            lambda p: save_checkpoint(
                p, result.model, result.model_args, {"train": result.train_config}
            ),
        )
        writer.finish(
            {
                "detector": "fastlogad",
                # The raw-line format it reads (None: trained on pre-parsed template ids).
                "format": data.dataset if data.dataset in FORMATS else None,
                "logsieve_version": __version__,
                "log": data.log_config.to_dict(),
                "vocab_size": data.vocab.size,
                "threshold": {
                    "value": threshold,
                    "method": "quantile of normal validation scores",
                    "quantile": quantile,
                    "n_validation": len(calib),
                    "validation_held_out": bool(data.validation),
                },
                "model_args": result.model_args,
                "train": {
                    **result.train_config,
                    "n_train_windows": result.n_train_raw,
                    "n_train_unique": result.n_train,
                    "best_epoch": result.best_epoch,
                    "seconds": result.timings,
                },
                "data": {k: v for k, v in data.summary.items() if not k.startswith("test")},
                "onnx": {"inputs": ["ids", "lengths"], "outputs": ["scores", "token_probs"]},
            }
        )
    except BaseException:
        writer.abort()
        raise
    return open_bundle(out), result


def load_model(bundle: Bundle) -> Discriminator:
    """The bundle's discriminator (eval mode, CPU)."""
    if bundle.detector != "fastlogad":
        raise BundleError(f"{bundle.path}: a {bundle.detector} bundle, not fastlogad")
    return load_discriminator(bundle.file("model.pt"))


def score_windows(
    model: Discriminator,
    windows: list[list[IdArray]],
    batch_size: int = 256,
    unseen: UnseenPolicy = "flag",
) -> npt.NDArray[np.float64]:
    """Score of each window: the highest score of its chunks; ``UNSEEN_SCORE`` for a
    window holding ``[UNK]`` when ``unseen="flag"`` (``LogConfig.unseen_templates``)."""
    flat = [c for w in windows for c in w]
    owner = np.repeat(np.arange(len(windows)), [len(w) for w in windows])
    chunk_scores = score_sequences(model, flat, batch_size) if flat else np.zeros(0)
    out = np.full(len(windows), -np.inf)
    np.maximum.at(out, owner, chunk_scores)
    if unseen == "flag":
        out[[holds_unknown(w) for w in windows]] = UNSEEN_SCORE
    return out


def evaluate(bundle: Bundle, data: Prepared, *, batch_size: int = 256) -> dict[str, Any]:
    """Metrics of the bundle's model and threshold on ``data.test``.

    Reported twice: on the test windows as they are, and with identical test windows
    counted once (first label wins only if all copies agree; conflicting duplicates are
    counted and kept once per label). For HDFS session data the figures are also
    projected to HDFS's real class ratio.
    """
    model = load_model(bundle)
    if not data.test:
        raise BundleError(f"{data.summary.get('source')}: no test windows to evaluate on")
    t0 = time.perf_counter()
    scores = score_windows(model, data.test, batch_size, bundle.log_config.unseen_templates)
    seconds = time.perf_counter() - t0
    labels = data.test_labels
    m = metrics(scores, labels, bundle.threshold)
    keys = [tuple(int(x) for c in w for x in c) for w in data.test]
    seen: dict[tuple[tuple[int, ...], int], int] = {}
    for i, (k, y) in enumerate(zip(keys, labels.tolist(), strict=True)):
        seen.setdefault((k, y), i)
    idx = np.array(sorted(seen.values()))
    m_dedup = metrics(scores[idx], labels[idx], bundle.threshold)
    report: dict[str, Any] = {
        "dataset": data.dataset,
        "bundle": str(bundle.path),
        "threshold": bundle.threshold,
        "n_test": len(data.test),
        "n_test_anomalous": int(labels.sum()),
        "metrics": m.to_dict(),
        "dedup": {"n_test": len(idx), "metrics": m_dedup.to_dict()},
        "ms_per_window": 1000.0 * seconds / len(data.test),
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
    }
    if data.dataset == "hdfs-sessions":
        report["projected"] = _projected(m)
    if "test_unknown_rate" in data.summary:
        report["test_unknown_rate"] = data.summary["test_unknown_rate"]
    return report


def _projected(m: Metrics) -> dict[str, Any]:
    p = project_metrics(m, HDFS_NORMAL, HDFS_ANOMALOUS)
    return {**p, "n_normal": HDFS_NORMAL, "n_anomalous": HDFS_ANOMALOUS}


@dataclass(frozen=True)
class Flag:
    """A window scored above the threshold, with the lines that explain it."""

    key: str
    start: float
    end: float
    lines: int
    score: float
    threshold: float
    evidence: list[tuple[float, str, str]]  # (replaced-token probability, template, line)
    unknown_lines: int


def score_file(
    bundle: Bundle,
    path: Path,
    fmt: str,
    *,
    pattern: str | None = None,
    top: int = 3,
    batch: int = 64,
    backend: str | None = "auto",
) -> Iterator[tuple[Window[Event], float, Flag | None]]:
    """Score every window of a log file; yields ``(window, score, flag or None)``.

    ``backend``: the :mod:`logsieve.engine` backend to score with (``auto``: the fastest
    one here) when the bundle is exported; ``None``, or a bundle that was never exported,
    scores with the eager model from ``model.pt``.
    """
    if bundle.templates_state is None or bundle.vocab is None:
        raise BundleError(
            f"{bundle.path}: trained on pre-parsed template ids, it cannot read raw lines "
            "(train on a raw-line dataset to score files)"
        )
    engine = _engine(bundle, backend)
    config = bundle.log_config
    matcher = TemplateMatcher.from_state(bundle.templates_state)
    pending: list[Window[Event]] = []
    for window in windows_of(read_records(path, fmt, pattern=pattern), config, matcher):
        pending.append(window)
        if len(pending) >= batch:
            yield from _score_batch(bundle, engine, pending, top)
            pending = []
    yield from _score_batch(bundle, engine, pending, top)


class EagerEngine:
    """The eager discriminator from ``model.pt`` behind the :class:`~logsieve.engine.Engine`
    interface: scores unexported bundles, and is the reference in the engine benchmark."""

    def __init__(self, bundle: Bundle, max_batch: int = 1024) -> None:
        from logsieve.engine import EngineInfo

        self.model = load_model(bundle)
        self.info = EngineInfo(
            "torch-eager", "fp32", "cpu", max_batch, self.model.cfg.max_len, "model.pt"
        )

    @torch.inference_mode()
    def score(
        self, ids: IdArray, lengths: IdArray
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        scores, probs = self.model.score(torch.from_numpy(ids), torch.from_numpy(lengths))
        return scores.numpy(), probs.numpy()


def _engine(bundle: Bundle, backend: str | None) -> Any:
    """An engine for the bundle, or the eager model when it was never exported."""
    if backend is not None and "program.pt2" in bundle.manifest["files"]:
        from logsieve.engine import load_engine

        return load_engine(bundle, backend)
    return EagerEngine(bundle)


def _score_batch(
    bundle: Bundle, engine: Any, windows: list[Window[Event]], top: int
) -> Iterator[tuple[Window[Event], float, Flag | None]]:
    """Score a batch of windows (the scoring the server does, shared with it)."""
    if not windows:
        return
    from logsieve.engine.windows import score_template_windows

    assert bundle.vocab is not None
    ids = [[e.template_id for e in w.items] for w in windows]
    scored = score_template_windows(engine, bundle.vocab, bundle.log_config, ids)
    for w, (score, per_line) in zip(windows, scored, strict=True):
        if score <= bundle.threshold:
            yield w, score, None
            continue
        # Lines no training template matched explain a flag best; then the lines the
        # discriminator finds most likely replaced.
        order = sorted(range(len(w.items)), key=lambda i: (not w.items[i].unknown, -per_line[i]))[
            :top
        ]
        evidence = [
            (per_line[i], _template_text(bundle, w.items[i].template_id), w.items[i].text)
            for i in order
        ]
        unknown = sum(1 for e in w.items if e.unknown)
        yield (
            w,
            score,
            Flag(w.key, w.start, w.end, len(w.items), score, bundle.threshold, evidence, unknown),
        )


def _template_text(bundle: Bundle, template_id: int) -> str:
    names = bundle.vocab.templates if bundle.vocab is not None else None
    if template_id < 0:
        return "[UNK]"
    return names[template_id] if names and template_id < len(names) else f"T{template_id}"
