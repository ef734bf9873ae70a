"""FastLogAD training end to end: prepared data → trained, calibrated bundle.

The threshold is the ``quantile`` of the scores of the *normal validation* windows
(:func:`~logsieve.export.calibrate.threshold_from_normal`); no anomaly label is read by
training or calibration: both only see :attr:`Prepared.train` / :attr:`Prepared.validation`,
which the label firewall produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from logsieve import __version__
from logsieve.bundle import Bundle, BundleWriter, open_bundle
from logsieve.export.calibrate import DEFAULT_QUANTILE, threshold_from_normal
from logsieve.export.data.formats import FORMATS
from logsieve.export.data.prepare import Prepared
from logsieve.export.fastlogad.model import Discriminator, ModelConfig, save_checkpoint
from logsieve.export.fastlogad.replay import FILE as REPLAY_FILE
from logsieve.export.fastlogad.replay import normal_windows_doc
from logsieve.export.fastlogad.scoring import score_sequences
from logsieve.export.fastlogad.train import TrainConfig, TrainResult, train
from logsieve.logs.known import KnownWindows

__all__ = ["train_bundle"]


def train_bundle(
    data: Prepared,
    out: Path,
    *,
    train_cfg: TrainConfig,
    model_cfg: ModelConfig | None = None,
    quantile: float = DEFAULT_QUANTILE,
    progress: bool = True,
    init: Discriminator | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> tuple[Bundle, TrainResult]:
    """Train on ``data.train``, calibrate on ``data.validation``, write the bundle.

    ``init``: fine-tune these weights instead of training a fresh model;
    ``manifest_extra``: more top-level manifest fields (``logsieve update``'s lineage).
    """
    model_cfg = model_cfg or ModelConfig(
        vocab_size=data.vocab.size, max_len=data.log_config.max_len
    )
    result = train(
        data.train, data.validation, data.vocab.size, model_cfg, train_cfg, progress, init
    )
    calib = data.validation or data.train  # tiny data sets: no held-out part
    val_scores = score_sequences(result.model, calib)
    threshold = threshold_from_normal(val_scores, quantile)
    writer = BundleWriter(out)
    try:
        writer.add_text("vocab.json", data.vocab.to_json())
        writer.add_json(
            "known_windows.json", KnownWindows.of_chunks([*data.train, *data.validation]).to_json()
        )
        writer.add_json(REPLAY_FILE, normal_windows_doc(data.train, data.validation))
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
                **(manifest_extra or {}),
            }
        )
    except BaseException:
        writer.abort()
        raise
    return open_bundle(out), result
