"""One exported bundle for the whole engine suite, and the windows it is checked on.

Real HDFS sessions from ``../shared/data`` when present (what the issue asks parity on),
our generated HDFS-like logs otherwise. The model has the paper's size (d 256, 4 layers,
4 heads, FFN 256) so precision errors are those a served model would show; it trains
one epoch per phase, enough for a calibrated threshold and non-trivial weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from logsieve.bundle import Bundle
from logsieve.export.data.prepare import Prepared, prepare
from logsieve.export.data.synth import generate_hdfs, write_synth
from logsieve.export.fastlogad.bundle import train_bundle
from logsieve.export.fastlogad.model import ModelConfig, load_discriminator
from logsieve.export.fastlogad.train import TrainConfig
from logsieve.export.program import export_bundle
from logsieve.logs.vocab import pad_batch
from tests.conftest import data_dir

IdArray = npt.NDArray[np.int64]
N_PARITY = 2000  # windows: 99.9% verdict agreement allows 2 disagreements


@dataclass
class Exported:
    bundle: Bundle
    windows: list[IdArray]  # parity windows (chunks), [CLS] first
    reference: npt.NDArray[np.float32]  # eager torch scores of ``windows``
    reference_probs: list[npt.NDArray[np.float32]]
    source: str


def _data(tmp: Path) -> tuple[Prepared, str]:
    root = data_dir()
    if root is not None and (root / "hdfs" / "sessions").is_dir():
        return prepare("hdfs-sessions", root / "hdfs" / "sessions"), "real HDFS sessions"
    log = tmp / "synth.log"
    write_synth(generate_hdfs(1200, anomaly_rate=0.1, seed=5), log, labels_path=tmp / "l.csv")
    return prepare("hdfs", log, train_n=800, labels_path=tmp / "l.csv"), "generated HDFS logs"


def parity_windows(data: Prepared) -> list[IdArray]:
    """The :data:`N_PARITY` windows parity is checked on: test chunks spread evenly over
    the whole test split (the suite, ``bench/engine_parity.py`` and
    ``bench/cpu_ceiling.py`` use the same ones)."""
    flat = [c for w in data.test for c in w]
    pick = np.linspace(0, len(flat) - 1, min(N_PARITY, len(flat))).astype(int)
    return [flat[i] for i in pick]


def eager_reference(
    bundle: Bundle, windows: list[IdArray]
) -> tuple[npt.NDArray[np.float32], list[npt.NDArray[np.float32]]]:
    """Scores and token probabilities from the eager ``nn.Module`` in ``model.pt``."""
    model = load_discriminator(bundle.file("model.pt"))
    scores = np.empty(len(windows), dtype=np.float32)
    probs: list[npt.NDArray[np.float32]] = []
    with torch.inference_mode():
        for start in range(0, len(windows), 128):
            part = windows[start : start + 128]
            ids, lengths = pad_batch(part)
            s, p = model.score(torch.from_numpy(ids), torch.from_numpy(lengths))
            scores[start : start + len(part)] = s.numpy()
            probs += [p[i, : len(w)].numpy() for i, w in enumerate(part)]
    return scores, probs


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    tmp = tmp_path_factory.mktemp("engine")
    data, source = _data(tmp)
    cfg = TrainConfig(rtd_epochs=1, hst_epochs=1, batch_size=64, seed=0)
    model = ModelConfig(vocab_size=data.vocab.size, max_len=data.log_config.max_len)
    bundle, _ = train_bundle(data, tmp / "bundle", train_cfg=cfg, model_cfg=model, progress=False)
    bundle = export_bundle(bundle.path, max_batch=512)
    windows = parity_windows(data)
    scores, probs = eager_reference(bundle, windows)
    return Exported(bundle, windows, scores, probs, source)
