"""FastLogAD end to end on generated logs: prepare → train → bundle → eval → score.

Tiny models and one epoch per phase keep this fast; the real accuracy run is
bench/fastlogad_accuracy.py. What is checked here is the plumbing and the rules:
labels never reach training or calibration, bundles round-trip, flags carry evidence.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from logsieve.bundle import open_bundle
from logsieve.cli.main import main
from logsieve.export.data.prepare import prepare
from logsieve.export.data.synth import SynthLog, generate_hdfs, write_synth
from logsieve.export.evaluation.bundle_eval import evaluate
from logsieve.export.fastlogad.bundle import train_bundle
from logsieve.export.fastlogad.model import ModelConfig
from logsieve.export.fastlogad.scoring import load_model, score_file, score_windows
from logsieve.export.fastlogad.train import TrainConfig

TINY = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 32}
FAST = TrainConfig(rtd_epochs=1, hst_epochs=2, batch_size=64, seed=0)


@pytest.fixture(scope="module")
def synth() -> tuple[SynthLog, SynthLog]:
    """Normal blocks (they train), then blocks with injected anomalies of every kind."""
    train = generate_hdfs(160, seed=1)
    test = generate_hdfs(60, anomaly_rate=0.2, seed=2, start=train_end(train.lines) + 3600)
    return train, test


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory, synth: tuple[SynthLog, SynthLog]) -> Path:
    root = tmp_path_factory.mktemp("logs")
    # One file: normal blocks first (they train), then blocks with injected anomalies.
    train, test = synth
    write_synth(train, root / "train.log")
    write_synth(test, root / "test.log", labels_path=root / "test.block_labels.csv")
    both = root / "all.log"
    both.write_text((root / "train.log").read_text() + (root / "test.log").read_text())
    (root / "all.block_labels.csv").write_text(
        "BlockId,Label\n"
        + "".join(f"{b},Normal\n" for b in train.labels)
        + "".join(f"{b},{'Anomaly' if y else 'Normal'}\n" for b, y in test.labels.items())
    )
    return root


def train_end(lines: list[str]) -> float:
    from logsieve.export.data.readers import parse_hdfs_line

    last = parse_hdfs_line(lines[-1])
    assert last is not None and last.time is not None
    return last.time


def test_training_and_calibration_never_see_an_anomaly(logs: Path) -> None:
    data = prepare("hdfs", logs / "all.log", train_n=150)
    assert data.summary["train_windows"] + data.summary["validation_windows"] == 150
    assert data.test_labels.sum() > 0  # anomalies exist, and all of them are in test
    labels = {
        line.split(",")[0]: line.split(",")[1]
        for line in (logs / "all.block_labels.csv").read_text().splitlines()[1:]
    }
    n_anomalous = sum(v == "Anomaly" for v in labels.values())
    assert int(data.test_labels.sum()) == n_anomalous


def test_threshold_does_not_depend_on_test_labels(logs: Path) -> None:
    """Flip every test label: the trained model and its threshold stay the same."""
    data = prepare("hdfs", logs / "all.log", train_n=150)
    flipped = prepare("hdfs", logs / "all.log", train_n=150)
    flipped.test_labels = 1 - flipped.test_labels
    model = ModelConfig(vocab_size=data.vocab.size, **TINY)
    a, _ = train_bundle(data, logs / "ba", train_cfg=FAST, model_cfg=model, progress=False)
    b, _ = train_bundle(flipped, logs / "bb", train_cfg=FAST, model_cfg=model, progress=False)
    assert a.threshold == b.threshold
    assert a.manifest["files"]["model.pt"]["sha256"] == b.manifest["files"]["model.pt"]["sha256"]


def test_bundle_eval_and_score(logs: Path, synth: tuple[SynthLog, SynthLog]) -> None:
    data = prepare("hdfs", logs / "all.log", train_n=150)
    model = ModelConfig(vocab_size=data.vocab.size, **TINY)
    bundle, _ = train_bundle(
        data, logs / "b", train_cfg=FAST, model_cfg=model, quantile=0.95, progress=False
    )
    again = open_bundle(logs / "b")
    assert again.threshold == bundle.threshold and again.vocab == data.vocab
    assert bundle.manifest["threshold"]["quantile"] == 0.95
    assert bundle.manifest["format"] == "hdfs"
    assert bundle.manifest["train"]["n_train_windows"] == len(data.train)

    report = evaluate(bundle, data)
    m = report["metrics"]
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == len(data.test)
    assert report["dedup"]["n_test"] <= len(data.test)
    # The reported ROC-AUC is the pairwise ranking of these very scores.
    scores = score_windows(
        load_model(bundle),
        data.test,
        unseen=bundle.log_config.unseen_templates,
        rare=data.test_rare(),
    )
    labels = data.test_labels.astype(bool)
    pairs = scores[labels][:, None] - scores[~labels][None, :]  # (anomalous, normal)
    assert m["roc_auc"] == pytest.approx(np.mean((pairs > 0) + 0.5 * (pairs == 0)))
    # Better than chance. Measured 0.643 with these seeds, 0.575-0.852 over training seeds
    # 0-4 x test-log seeds 2-4. Most of it is the unseen-template rule below: at this
    # budget the tiny model alone barely ranks missing steps, swapped order or bursts
    # (model-only ROC-AUC 0.41-0.76).
    assert m["roc_auc"] > 0.5
    # Blocks given lines never seen in training are flagged, above every normal window.
    kinds = synth[1].kinds
    injected = ("unseen_line", "unexpected_template")
    unseen = [i for i, k in enumerate(data.test_keys) if kinds.get(k) in injected]
    assert len(unseen) >= 2
    assert (scores[unseen] > bundle.threshold).all()
    assert scores[unseen].min() > scores[~labels].max()

    results = list(score_file(bundle, logs / "test.log", "hdfs"))
    assert len(results) == 60
    for sw in results:
        assert sw.anomaly == (sw.score > bundle.threshold or any(sw.rare_new))
        top = sw.evidence(2)
        assert len(top) == min(2, len(sw.lines))
        probs = [sw.token_probs[i] for i in top if sw.template_ids[i] >= 0]
        assert probs == sorted(probs, reverse=True)


def test_unknown_lines_are_scored_as_unk(logs: Path) -> None:
    data = prepare("hdfs", logs / "all.log", train_n=150)
    assert 0.0 <= data.summary["test_unknown_rate"] < 0.5
    flat = np.concatenate([c for w in data.test for c in w])
    assert (flat == 3).any()  # the injected unseen lines became [UNK]


def test_cli_train_eval_score(logs: Path) -> None:
    runner = CliRunner()
    out = logs / "cli-bundle"
    args = ["--dataset", "hdfs", "--data", str(logs / "all.log"), "--train-n", "150"]
    result = runner.invoke(
        main,
        ["train", *args, "--out", str(out), "--generator", "random", "--rtd-epochs", "1",
         "--hst-epochs", "1", "--d-model", "32", "--layers", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["eval", "--bundle", str(out), *args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"tp", "fp", "fn", "tn", "threshold", "metrics", "dedup"} <= set(report)
    result = runner.invoke(main, ["score", "--bundle", str(out), str(logs / "test.log")])
    assert result.exit_code == 0, result.output
    assert "windows flagged" in result.output


def test_corrupt_bundle_is_a_clean_cli_error(logs: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    data = prepare("hdfs", logs / "all.log", train_n=150)
    model = ModelConfig(vocab_size=data.vocab.size, **TINY)
    out = tmp_path / "bundle"
    train_bundle(data, out, train_cfg=FAST, model_cfg=model, progress=False)
    (out / "model.pt").write_bytes(b"junk")
    result = runner.invoke(main, ["score", "--bundle", str(out), str(logs / "test.log")])
    assert result.exit_code == 1
    assert "model.pt" in result.output and "Traceback" not in result.output
