"""Adapting a bundle to recent normal logs: what ``logsieve update`` runs.

::

    bundle B (parent) + new normal logs ──► read with B's own log settings
        ──► templates grown (known ids kept, new ones appended; logs/template_growth.py)
        ──► vocabulary grown ──► fine-tune B's model (embedding rows added for the new
            ids) or retrain it from scratch ──► threshold recalibrated on the new
            data's normal validation windows (label-free, as ``train``) ──► exported
        ──► B/versions/<model_id>/ made current (or a separate bundle at --out)

The new version's manifest carries ``parent_model_id`` and an ``update`` table (data,
mode, template growth, time). ``logsieve rollback --bundle B`` makes the parent current
again; a serving process picks either up on SIGHUP (:mod:`logsieve.bundle_versions`).

Both modes train on the new logs *and* the normal windows the parent kept
(``normal_windows.json``, :mod:`~logsieve.export.fastlogad.replay`), and calibrate on
both validation sets: on the new logs alone, fine-tuning set a threshold that 98% of
the parent's own normal HDFS blocks exceeded. Fine-tuning is the default: from the
parent's weights, 2 + 10 epochs match a retrain's quality on HDFS in a fraction of
its time (``bench/adapt.py``, figures in bench/RESULTS.md, "Adapting a bundle").
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch

from logsieve.bundle import MANIFEST, VERSIONS, Bundle, open_bundle
from logsieve.bundle_versions import add_version, set_current
from logsieve.errors import BundleError, ConfigError
from logsieve.export.data.prepare import LINE_DATASETS, prepare
from logsieve.export.fastlogad.model import Discriminator, ModelConfig, load_discriminator
from logsieve.export.fastlogad.replay import read_normal_windows

__all__ = ["FINETUNE_EPOCHS", "UpdateRequest", "grow_model", "update_bundle"]

Mode = Literal["finetune", "retrain"]
Echo = Callable[[str], object]
# (rtd, hst) epochs of a fine-tune: the parent's weights already separate normal windows,
# so a few epochs teach the new ids (bench/RESULTS.md, "Adapting a bundle").
FINETUNE_EPOCHS = (2, 10)


@dataclass(frozen=True)
class UpdateRequest:
    """What ``logsieve update`` was asked for; ``None`` means the parent's setting.

    ``out``: write the new bundle there (a plain bundle, ``bundle`` untouched); None
    adds it to ``bundle``'s versions and makes it current. ``train_n``: normal windows
    of the new data to train on (None: all of them; the last ``val_fraction`` of them
    recalibrate the threshold either way).
    """

    bundle: Path
    data_path: Path
    dataset: str | None = None
    out: Path | None = None
    mode: Mode = "finetune"
    pattern: str | None = None
    labels_path: Path | None = None
    train_n: int | None = None
    val_fraction: float = 0.1
    rtd_epochs: int | None = None
    hst_epochs: int | None = None
    lr: float | None = None
    quantile: float | None = None
    seed: int = 0
    threads: int | None = None
    export: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("finetune", "retrain"):
            raise ConfigError("mode", self.mode, "'finetune' or 'retrain'")
        if self.dataset is not None and self.dataset not in LINE_DATASETS:
            raise ConfigError("dataset", self.dataset, f"one of {', '.join(LINE_DATASETS)}")


def update_bundle(req: UpdateRequest, progress: Echo = print, report: Echo = print) -> Bundle:
    """Fold ``req.data_path`` into a new version of ``req.bundle``; returns the new bundle."""
    from logsieve.export.fastlogad.bundle import train_bundle
    from logsieve.export.fastlogad.train import TrainConfig
    from logsieve.export.program import export_bundle

    t0 = time.perf_counter()
    versions = Path(req.bundle).resolve().parent
    if versions.name == VERSIONS and (versions.parent / MANIFEST).is_file():
        raise ConfigError("bundle", str(req.bundle), "the bundle's home, not one of its versions")
    parent = open_bundle(req.bundle)
    _check_parent(parent)
    fmt = req.dataset or parent.manifest.get("format")
    if fmt not in LINE_DATASETS:
        raise BundleError(
            f"{parent.path}: its line format is {fmt!r}; give --dataset "
            f"({', '.join(LINE_DATASETS)})"
        )
    if req.threads:
        torch.set_num_threads(req.threads)
    data = prepare(
        fmt,
        req.data_path,
        log_config=parent.log_config,
        train_n=req.train_n if req.train_n is not None else 10**12,
        val_fraction=req.val_fraction,
        labels_path=req.labels_path,
        pattern=req.pattern or parent.manifest.get("pattern"),
        grow_templates_of=parent.templates_state,
    )
    growth = data.summary["template_growth"]
    new_windows = (len(data.train), len(data.validation))
    kept = read_normal_windows(parent)
    if kept is not None:  # train and calibrate on the old normal windows too
        data.train = [*kept[0], *data.train]
        data.validation = [*kept[1], *data.validation]
    progress(
        f"{req.data_path}: {new_windows[0]} training, {new_windows[1]} validation "
        f"sequences, + {len(kept[0]) if kept else 0} and {len(kept[1]) if kept else 0} "
        f"the parent kept; templates {growth['known']} known + {growth['added']} new "
        f"({growth['lines_known']} of {growth['lines']} lines matched a known one)"
    )
    old = load_discriminator(parent.file("model.pt"))
    train_cfg = _train_config(parent, req, TrainConfig)
    init = grow_model(old, data.vocab.size, req.seed) if req.mode == "finetune" else None
    model_cfg = replace(old.cfg, vocab_size=data.vocab.size)
    quantile = req.quantile if req.quantile is not None else _parent_quantile(parent)
    lineage = {
        "parent_model_id": parent.model_id,
        "update": {
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mode": req.mode,
            "data": str(req.data_path),
            "dataset": fmt,
            "template_growth": growth,
            "parent_vocab_size": parent.manifest.get("vocab_size"),
            "new_windows": {"train": new_windows[0], "validation": new_windows[1]},
            "parent_windows": {"train": len(kept[0]), "validation": len(kept[1])} if kept else None,
        },
    }
    home = parent.home or parent.path
    staged = req.out or home / VERSIONS / f".staged-{os.getpid()}-{time.time_ns()}"
    try:
        bundle, result = train_bundle(
            data,
            staged,
            train_cfg=train_cfg,
            model_cfg=model_cfg,
            quantile=quantile,
            init=init,
            manifest_extra=lineage,
        )
        if req.export:
            progress("exporting program.pt2 and model.onnx ...")
            bundle = export_bundle(bundle.path)
        if req.out is None:
            bundle = add_version(home, staged)
            bundle = set_current(home, bundle.model_id)
    except BaseException:
        if req.out is None:
            shutil.rmtree(staged, ignore_errors=True)
        raise
    where = f"{bundle.home} (current: {bundle.path})" if req.out is None else str(bundle.path)
    report(
        f"bundle {where}: model {bundle.model_id} ({req.mode} of {parent.model_id}), "
        f"{growth['added']} new template(s), threshold {bundle.threshold:.6g}, "
        f"trained in {result.timings.get('total', 0.0):.1f}s, "
        f"{time.perf_counter() - t0:.1f}s in all"
    )
    return bundle


def grow_model(old: Discriminator, vocab_size: int, seed: int = 0) -> Discriminator:
    """A copy of ``old`` for a vocabulary of ``vocab_size`` tokens: every weight copied,
    the rows of the new token ids freshly initialised (as training initialises them).

    Any tensor whose first dimension is the old vocabulary size grows along it (the
    token embedding today); any other shape change is a :class:`BundleError`.
    """
    if vocab_size < old.cfg.vocab_size:
        raise BundleError(
            f"vocabulary shrank from {old.cfg.vocab_size} to {vocab_size}: ids would change"
        )
    cfg: ModelConfig = replace(old.cfg, vocab_size=vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new = Discriminator(cfg)
    target = new.state_dict()
    with torch.no_grad():
        for name, value in old.state_dict().items():
            dst = target[name]
            if dst.shape == value.shape:
                dst.copy_(value)
            elif dst.shape[1:] == value.shape[1:] and value.shape[0] == old.cfg.vocab_size:
                dst[: value.shape[0]].copy_(value)
            else:
                raise BundleError(f"cannot grow {name}: {tuple(value.shape)} -> {tuple(dst.shape)}")
    return new.eval()


def _check_parent(parent: Bundle) -> None:
    if parent.detector != "fastlogad":
        raise BundleError(
            f"{parent.path}: an {parent.detector!r} bundle; update grows FastLogAD bundles"
        )
    if parent.templates_state is None or parent.vocab is None:
        raise BundleError(
            f"{parent.path}: trained on pre-parsed template ids, it has no templates to "
            "grow (update takes bundles trained on raw lines)"
        )
    if parent.vocab.n_templates != len(parent.templates_state.get("templates", [])):
        raise BundleError(f"{parent.path}: vocab.json and templates.json disagree")


def _train_config(parent: Bundle, req: UpdateRequest, cls: Any) -> Any:
    """The parent's training settings, with the request's epochs, seed and threads."""
    known = {f.name for f in fields(cls)}
    base = {k: v for k, v in (parent.manifest.get("train") or {}).items() if k in known}
    rtd, hst = FINETUNE_EPOCHS if req.mode == "finetune" else (None, None)
    over: dict[str, Any] = {"seed": req.seed, "num_threads": req.threads}
    for name, value, default in (
        ("rtd_epochs", req.rtd_epochs, rtd),
        ("hst_epochs", req.hst_epochs, hst),
        ("lr", req.lr, None),
    ):
        if value is not None or default is not None:
            over[name] = value if value is not None else default
    return cls(**{**base, **over})


def _parent_quantile(parent: Bundle) -> float:
    q = parent.manifest["threshold"].get("quantile")
    return float(q) if isinstance(q, (int, float)) else 0.99
