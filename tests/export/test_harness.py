"""The accuracy harness on generated HDFS logs: one split for every method, label-free
defaults, oracle rows labelled, mean ± std tables, the CLI and its plots.

Tiny settings (``EvalOptions(tiny=True)``: d 32, one layer, one or two epochs) and one
torch thread keep the file well under a minute; the numbers are not results.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from logsieve.cli.main import main
from logsieve.cli.model import METHODS as CLI_METHODS
from logsieve.export.adalog.split import window_lines
from logsieve.export.data.prepare import Prepared, prepare
from logsieve.export.data.synth import generate_hdfs, write_synth
from logsieve.export.evaluation.harness import EvalOptions, run, run_eval, split_digest, summarise
from logsieve.export.evaluation.methods import METHODS, Fitted, Method

TINY = EvalOptions(train_n=120, tiny=True, threads=1)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Normal blocks first (they train), then blocks with injected anomalies."""
    root = tmp_path_factory.mktemp("harness")
    train = generate_hdfs(130, seed=1)
    test = generate_hdfs(50, anomaly_rate=0.25, seed=2, start=1226262918.0 + 4 * 3600)
    write_synth(train, root / "train.log")
    write_synth(test, root / "test.log")
    path = root / "all.log"
    path.write_text((root / "train.log").read_text() + (root / "test.log").read_text())
    (root / "all.block_labels.csv").write_text(
        "BlockId,Label\n"
        + "".join(f"{b},Normal\n" for b in train.labels)
        + "".join(f"{b},{'Anomaly' if y else 'Normal'}\n" for b, y in test.labels.items())
    )
    return path


def test_registry_matches_the_cli_choices() -> None:
    assert set(METHODS) == set(CLI_METHODS) == {
        "fastlogad-mlm", "fastlogad-random", "adalog", "deeplog", "deeplog-ours", "logbert",
        "logbert-ours", "iforest",
    }  # fmt: skip


def test_every_method_sees_the_same_split(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each adapter is handed the very windows an independent ``prepare`` produces."""
    seen: dict[str, str] = {}

    def spy(name: str, inner: Method) -> Method:
        def fit_score(data: Prepared, path: Path, seed: int, opt: EvalOptions) -> Fitted:
            seen[name] = split_digest(data)
            return inner.fit_score(data, path, seed, opt)

        return Method(name, inner.summary, fit_score, inner.raw_lines)

    for name in ("iforest", "fastlogad-random", "adalog"):
        monkeypatch.setitem(METHODS, name, spy(name, METHODS[name]))
    report = run(["iforest", "fastlogad-random", "adalog"], "hdfs", log, 1, TINY)
    expected = split_digest(prepare("hdfs", log, train_n=120))
    assert seen == dict.fromkeys(("iforest", "fastlogad-random", "adalog"), expected)
    assert {r["split"] for r in report.rows} == {expected}
    assert {r["n_test"] for r in report.rows if r["granularity"] == "window"} == {
        len(prepare("hdfs", log, train_n=120).test)
    }


def test_adalog_rebuilds_exactly_the_prepared_windows(log: Path) -> None:
    data = prepare("hdfs", log, train_n=120)
    wl = window_lines(data, log, labels_path=TINY.labels_path, pattern=TINY.pattern)
    assert (len(wl.train), len(wl.validation), len(wl.test)) == (
        len(data.train), len(data.validation), len(data.test)
    )  # fmt: skip
    # Window i's lines are exactly its events: one token per line after [CLS].
    assert [len(w) for w in wl.test] == [sum(len(c) - 1 for c in w) for w in data.test]
    data.test_labels = 1 - data.test_labels  # a different split must be refused
    with pytest.raises(Exception, match="differ"):
        window_lines(data, log, labels_path=TINY.labels_path, pattern=TINY.pattern)


def test_oracle_rows_are_labelled_and_never_the_default(log: Path) -> None:
    rows = run_eval("deeplog", "hdfs", log, 2, TINY)
    defaults = [r for r in rows if r["default"]]
    assert [r["seed"] for r in defaults] == [0, 1]
    assert all(r["threshold_kind"] == "label-free" for r in defaults)
    assert {r["threshold_rule"] for r in defaults} == {"validation"}
    oracle = [r for r in rows if r["threshold_kind"] == "oracle"]
    assert len(oracle) == 2 and not any(r["default"] for r in oracle)
    assert all("oracle" in r["threshold_rule"] for r in oracle)
    # The oracle picks F1's best threshold on test: never worse than the label-free one.
    for d, o in zip(defaults, oracle, strict=True):
        assert o["f1"] >= d["f1"] - 1e-12
    assert {r["threshold_rule"] for r in rows} >= {"paper"}  # DeepLog's g = 9 row
    table = summarise(rows)
    assert "oracle (test labels)" in table and "label-free: validation" in table
    for key in ("precision", "recall", "f1", "roc_auc", "pr_auc", "fpr", "threshold",
                "fit_seconds", "ms_per_window"):  # fmt: skip
        assert all(np.isfinite(r[key]) for r in rows), key


def test_summary_is_mean_and_sample_std_over_seeds() -> None:
    base = {"dataset": "d", "method": "m", "status": "ok", "threshold_kind": "label-free",
            "threshold_rule": "validation", "granularity": "window", "roc_auc": 0.5,
            "pr_auc": 0.5, "fpr": 0.0, "fit_seconds": 1.0, "ms_per_window": 0.1}  # fmt: skip
    rows = [{**base, "seed": 0, "precision": 0.5, "recall": 1.0, "f1": 0.6},
            {**base, "seed": 1, "precision": 0.7, "recall": 1.0, "f1": 0.8}]  # fmt: skip
    table = summarise(rows).splitlines()
    assert table[0].startswith("| dataset | method | threshold | seeds | P | R | F1 |")
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[3] == "0,1"
    assert cells[4] == "0.6000 ± 0.1414"  # mean 0.6, sample std sqrt(0.02)
    assert cells[5] == "1.0000 ± 0.0000"
    assert cells[6] == "0.7000 ± 0.1414"


def test_adalog_on_session_files_says_it_does_not_apply(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    folder.mkdir()
    (folder / "train_normal").write_text("1 2 3 4\n" * 30 + "1 2 4 3\n" * 10)
    (folder / "dev_normal").write_text("1 2 3 4\n" * 10)
    (folder / "dev_abnormal").write_text("5 6 7\n" * 3)
    rows = run_eval("adalog", "hdfs-sessions", folder, 2, TINY)
    assert [r["status"] for r in rows] == ["n/a", "n/a"]
    assert "n/a: needs raw lines" in summarise(rows)
    iforest = run_eval("iforest", "hdfs-sessions", folder, 1, TINY)
    assert "projected_f1" in iforest[0]  # the HDFS class-ratio projection


def test_cli_eval_method_prints_a_table(log: Path) -> None:
    args = ["eval", "--method", "iforest", "--seeds", "2", "--dataset", "hdfs",
            "--data", str(log), "--train-n", "120", "--tiny", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = [x for x in result.stdout.splitlines() if x.startswith("| hdfs | iforest")]
    assert len(lines) == 2  # label-free and oracle
    assert "label-free: validation" in lines[0] and "oracle (test labels)" in lines[1]
    assert "±" in lines[0] and "0,1" in lines[0]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert {r["seed"] for r in json.loads(result.stdout)} == {0, 1}


def test_cli_eval_needs_bundle_or_method(log: Path) -> None:
    result = CliRunner().invoke(main, ["eval", "--dataset", "hdfs", "--data", str(log)])
    assert result.exit_code != 0 and "--bundle or --method" in result.output


def test_cli_plots_write_pngs(log: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install matplotlib)")
    out = tmp_path / "plots"
    args = ["eval", "--method", "iforest", "--method", "fastlogad-random", "--dataset", "hdfs",
            "--data", str(log), "--train-n", "120", "--tiny", "--plots", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"scores-hdfs.png", "curves-hdfs.png"} <= names
    assert "evidence-hdfs-fastlogad-random.png" in names  # a flagged window's strip
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


@pytest.mark.data
def test_hdfs_sessions_smallest(shared_data: Path) -> None:
    path = shared_data / "hdfs" / "sessions"
    if not path.is_dir():
        pytest.skip(f"{path} absent")
    opt = EvalOptions(train_n=None, tiny=True, threads=1)
    data = prepare("hdfs-sessions", path)
    rows = run_eval("iforest", "hdfs-sessions", path, 1, opt, data=data)
    default = next(r for r in rows if r["default"])
    assert default["n_test"] == len(data.test) and default["n_test_anomalous"] > 0
    # Projected to HDFS's real class ratio as the data README says: FP = FPR x 553,366
    # normal sessions, TP = recall x 16,838 anomalous ones.
    recall = default["recall"]
    tp, fp = 16_838 * recall, 553_366 * default["fpr"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert default["projected_precision"] == pytest.approx(precision)
    assert default["projected_f1"] == pytest.approx(f1)
    # The label-free threshold (99% quantile of normal validation scores) keeps its
    # promise on the held-out normal sessions: FPR measured 0.1-0.8% over seeds 0-2.
    assert default["fpr"] <= 0.02
    # Count vectors separate HDFS anomalies somewhat: ROC-AUC 0.630-0.677 over seeds 0-2.
    assert default["roc_auc"] > 0.58


def test_epochs_option_caps_and_never_raises_a_methods_epochs() -> None:
    from logsieve.export.evaluation.methods import _epochs

    assert _epochs(EvalOptions(), 300) == 300
    assert _epochs(EvalOptions(epochs=10), 300) == 10
    assert _epochs(EvalOptions(epochs=50), 20) == 20
