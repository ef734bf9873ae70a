"""FastLogAD's detection quality on real data: the shared HDFS sessions split.

A small budget (d 64, 2 layers, 1 RTD + 2 HST epochs, lr 5e-4) trains in a few seconds
on the 2-core CPU; at full budget bench/RESULTS.md reports ROC-AUC 0.997-0.999. The
floors below come from this budget, measured over seeds 0-7 with 1 and 2 torch threads
(train_bundle + evaluate as here): ROC-AUC 0.9981-0.9991, recall on dev_abnormal 1.000,
FPR on dev_normal 0.40-1.00% at the label-free threshold (99% of normal validation).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from logsieve.export.data.prepare import Prepared, prepare
from logsieve.export.evaluation.bundle_eval import evaluate
from logsieve.export.fastlogad.bundle import train_bundle
from logsieve.export.fastlogad.model import ModelConfig
from logsieve.export.fastlogad.train import TrainConfig

pytestmark = [pytest.mark.data, pytest.mark.slow]

SMALL = {"d_model": 64, "n_layers": 2, "n_heads": 2, "d_ff": 64}


@pytest.fixture(scope="module")
def sessions(shared_data: Path) -> Prepared:
    path = shared_data / "hdfs" / "sessions"
    if not path.is_dir():
        pytest.skip(f"{path} absent: the HDFS sessions split is part of the shared data")
    return prepare("hdfs-sessions", path)


@pytest.mark.parametrize("seed", [0, 1])
def test_small_fastlogad_separates_real_hdfs_anomalies(
    sessions: Prepared, seed: int, tmp_path: Path
) -> None:
    model = ModelConfig(
        vocab_size=sessions.vocab.size, max_len=sessions.log_config.max_len, **SMALL
    )
    cfg = TrainConfig(rtd_epochs=1, hst_epochs=2, batch_size=32, lr=5e-4, seed=seed)
    bundle, _ = train_bundle(
        sessions, tmp_path / "b", train_cfg=cfg, model_cfg=model, progress=False
    )
    report = evaluate(bundle, sessions)
    m = report["metrics"]
    assert report["n_test_anomalous"] > 1000  # dev_abnormal, not a handful of windows
    assert m["roc_auc"] >= 0.99, m
    assert m["recall"] >= 0.95, m
    assert m["fpr"] <= 0.02, m
