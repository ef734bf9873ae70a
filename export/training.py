"""Production training: a dataset → a calibrated, exported bundle, for either detector.

What ``logsieve train`` runs. The defaults a user gets live here and in the model and
training configs (:class:`~logsieve.export.fastlogad.model.ModelConfig`,
:class:`~logsieve.export.fastlogad.train.TrainConfig`,
:class:`~logsieve.export.adalog.model.AdaLogConfig`): a field of :class:`TrainRequest`
left ``None`` takes the config's own default. Nothing here imports evaluation code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from logsieve.bundle import Bundle
from logsieve.config import LogConfig
from logsieve.errors import ConfigError
from logsieve.export.calibrate import DEFAULT_QUANTILE

__all__ = ["DEFAULT_QUANTILE", "TrainRequest", "train_detector"]

Detector = Literal["fastlogad", "adalog"]


@dataclass(frozen=True)
class TrainRequest:
    """Everything ``logsieve train`` was asked for; ``None`` means the config's default.

    ``generator``: FastLogAD's pseudo-anomaly generator; ``mlm`` is the production
    default (the paper's better variant). ``d_model``/``layers``/``epochs``/``lr``/
    ``batch_size``/``quantile`` apply to whichever detector is trained;
    ``rtd_epochs``/``hst_epochs`` to FastLogAD alone, ``epochs`` to ADALog alone.
    """

    dataset: str
    data_path: Path
    out: Path
    detector: Detector = "fastlogad"
    log_config: LogConfig | None = None
    train_n: int | None = None
    val_fraction: float = 0.1
    labels_path: Path | None = None
    pattern: str | None = None
    time_format: str | None = None
    generator: Literal["random", "mlm"] = "mlm"
    seed: int = 0
    rtd_epochs: int | None = None
    hst_epochs: int | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    quantile: float | None = None
    d_model: int | None = None
    layers: int | None = None
    threads: int | None = None
    export: bool = True

    def __post_init__(self) -> None:
        if self.detector not in ("fastlogad", "adalog"):
            raise ConfigError("detector", self.detector, "'fastlogad' or 'adalog'")
        if self.detector == "fastlogad" and self.epochs is not None:
            raise ConfigError("epochs", self.epochs, "ADALog only (FastLogAD: rtd/hst epochs)")
        if self.detector == "adalog" and (self.rtd_epochs or self.hst_epochs):
            raise ConfigError("rtd_epochs/hst_epochs", None, "FastLogAD only (ADALog: epochs)")

    def given(self, *names: str) -> dict[str, Any]:
        """The named fields that were set, as config overrides."""
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


Echo = Callable[[str], object]


def train_detector(req: TrainRequest, progress: Echo = print, report: Echo = print) -> Bundle:
    """Prepare the split, train, calibrate, write (and export) the bundle; returns it.

    ``progress`` gets the steps as they happen, ``report`` the one-line result (the CLI
    sends the first to stderr, the second to stdout).
    """
    from logsieve.export.data.prepare import prepare

    if req.threads:
        import torch

        torch.set_num_threads(req.threads)
    data = prepare(
        req.dataset,
        req.data_path,
        log_config=req.log_config,
        train_n=req.train_n,
        val_fraction=req.val_fraction,
        labels_path=req.labels_path,
        pattern=req.pattern,
        time_format=req.time_format,
    )
    if req.detector == "adalog":
        return _adalog(req, data, progress, report)
    return _fastlogad(req, data, progress, report)


def _fastlogad(req: TrainRequest, data: Any, progress: Echo, report: Echo) -> Bundle:
    from logsieve.export.fastlogad.bundle import train_bundle
    from logsieve.export.fastlogad.model import ModelConfig
    from logsieve.export.fastlogad.train import TrainConfig
    from logsieve.export.program import export_bundle

    cfg = TrainConfig(
        generator=req.generator,
        seed=req.seed,
        num_threads=req.threads,
        **req.given("rtd_epochs", "hst_epochs", "lr", "batch_size"),
    )
    sizes = {"d_model": req.d_model, "n_layers": req.layers}
    model_cfg = ModelConfig(
        vocab_size=data.vocab.size,
        max_len=data.log_config.max_len,
        **{k: v for k, v in sizes.items() if v is not None},
    )
    progress(
        f"{data.dataset}: {len(data.train)} training, {len(data.validation)} validation "
        f"sequences, {data.vocab.size} tokens"
    )
    quantile = req.quantile if req.quantile is not None else DEFAULT_QUANTILE
    bundle, result = train_bundle(
        data, req.out, train_cfg=cfg, model_cfg=model_cfg, quantile=quantile
    )
    report(
        f"bundle {bundle.path}: threshold {bundle.threshold:.6g} "
        f"(q{quantile} of {bundle.manifest['threshold']['n_validation']} validation "
        f"scores), trained in {result.timings.get('total', 0.0):.1f}s"
    )
    if req.export:
        progress("exporting program.pt2 and model.onnx ...")
        bundle = export_bundle(bundle.path)
    return bundle


def _adalog(req: TrainRequest, data: Any, progress: Echo, report: Echo) -> Bundle:
    from logsieve.export.adalog.bundle import AdaLogConfig, export_adalog_bundle
    from logsieve.export.adalog.split import train_adalog_split

    overrides = req.given("d_model", "epochs", "lr", "batch_size", "quantile")
    if req.layers is not None:
        overrides["n_layers"] = req.layers
    cfg = AdaLogConfig(seed=req.seed, **overrides)
    bundle = train_adalog_split(
        data, req.data_path, req.out, cfg, labels_path=req.labels_path, pattern=req.pattern
    )
    report(
        f"bundle {bundle.path}: adalog, threshold {bundle.threshold:.6g} "
        f"(q{cfg.quantile} of {bundle.manifest['threshold']['n_validation']} validation lines)"
    )
    if req.export:
        progress("exporting program.pt2 and model.onnx ...")
        bundle = export_adalog_bundle(bundle.path)
    return bundle
