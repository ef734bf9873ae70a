"""``logsieve eval --bundle B --test FILE``: labelled files scored whole, with the bundle's
own vocabulary, templates and event-id table, and the verdicts ``score`` gives.

Tiny models (d_model 32, 1 layer, 1+1 epochs) on generated data: what is checked is the
plumbing (counts per class, labels from the right place, ids mapped by the bundle's
table, verdicts equal to ``score``'s), not accuracy.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from logsieve.bundle import Bundle, open_bundle
from logsieve.cli import model as cli_model
from logsieve.cli.main import main
from logsieve.errors import BundleError, ConfigError, DataError
from logsieve.export.data.prepare import Prepared, prepare
from logsieve.export.data.readers import parse_hdfs_line
from logsieve.export.data.synth import generate_hdfs, write_synth
from logsieve.export.data.synth_bgl import generate_bgl
from logsieve.export.evaluation.bundle_eval import evaluate, evaluate_bundle
from logsieve.export.evaluation.labelled import (
    TEST_LABELS,
    evaluate_labelled,
    format_labelled_report,
)
from logsieve.export.fastlogad.bundle import train_bundle
from logsieve.export.fastlogad.model import ModelConfig
from logsieve.export.fastlogad.scoring import score_file
from logsieve.export.fastlogad.train import TrainConfig

FAST = TrainConfig(rtd_epochs=1, hst_epochs=1, batch_size=64, seed=0)


def tiny_bundle(data: Prepared, out: Path) -> Bundle:
    model = ModelConfig(
        vocab_size=data.vocab.size, d_model=32, n_layers=1, n_heads=2, d_ff=32,
        max_len=data.log_config.max_len,
    )  # fmt: skip
    bundle, _ = train_bundle(data, out, train_cfg=FAST, model_cfg=model, progress=False)
    return bundle


def test_cli_test_label_choices_match_the_library() -> None:
    assert tuple(TEST_LABELS) == cli_model.TEST_LABELS


# --- hdfs-sessions: event-id files, labels by file, ids through the bundle's table ---

NORMAL_IDS = (5, 9, 11, 21, 22, 23, 26)


def _session(rng: random.Random, anomalous: bool) -> list[int]:
    ids = [5, 22, 5, 5] + [11, 9] * rng.randint(1, 3) + [26] * rng.randint(1, 3) + [23, 21]
    if anomalous:  # an id training never had, or a lifecycle cut short
        ids = ids[:3] if rng.random() < 0.5 else [*ids[:4], rng.choice((2, 7, 28)), *ids[4:]]
    return ids


def _write_sessions(path: Path, sessions: list[list[int]]) -> None:
    path.write_text("".join(" ".join(map(str, s)) + "\n" for s in sessions))


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Bundle]:
    root = tmp_path_factory.mktemp("sessions")
    rng = random.Random(3)
    _write_sessions(root / "train_normal", [_session(rng, False) for _ in range(300)])
    _write_sessions(root / "dev_normal", [_session(rng, False) for _ in range(80)])
    _write_sessions(root / "dev_abnormal", [_session(rng, True) for _ in range(20)])
    return root, tiny_bundle(prepare("hdfs-sessions", root), root / "bundle")


def test_session_files_score_as_the_split_does(sessions: tuple[Path, Bundle]) -> None:
    root, bundle = sessions
    report = evaluate_labelled(
        bundle.path, "hdfs-sessions", [root / "dev_normal", root / "dev_abnormal"],
        test_labels=["normal", "anomalous"], backend=None,
    )  # fmt: skip
    assert (report["n_test_normal"], report["n_test_anomalous"]) == (80, 20)
    assert report["n_unlabelled"] == 0
    # The same windows through the --data path (its test part is dev_normal + dev_abnormal).
    split = evaluate(bundle, prepare("hdfs-sessions", root, vocab_event_ids=_ids(bundle)))
    for k in ("tp", "fp", "fn", "tn"):
        assert report["metrics"][k] == split["metrics"][k], k
    assert report["flagged"]["normal"] == split["metrics"]["fp"]
    assert report["metrics"]["roc_auc"] == pytest.approx(split["metrics"]["roc_auc"])
    # Only injected ids are unseen; every session holding one is counted.
    unseen = sum(
        any(e not in NORMAL_IDS for e in map(int, line.split()))
        for line in (root / "dev_abnormal").read_text().splitlines()
    )
    assert unseen > 0
    assert report["windows_with_unseen"] == {"normal": 0, "anomalous": unseen, "unlabelled": 0}
    assert "projected" in report
    text = format_labelled_report(report)
    assert "80 normal, 20 anomalous" in text and f"{unseen} anomalous" in text


def _ids(bundle: Bundle) -> list[int]:
    return list(bundle.manifest["data"]["vocab_event_ids"])


def test_a_folder_whose_ids_mean_something_else_maps_by_the_bundles_table(
    sessions: tuple[Path, Bundle], tmp_path: Path
) -> None:
    """Another train_normal with as many distinct ids, but other ones: the vocabulary
    re-derived from it has the bundle's size and maps every id one slot off. eval uses
    the bundle's table, so the figures are those of the bundle's own folder."""
    root, bundle = sessions
    other = tmp_path / "other"
    other.mkdir()
    train = (root / "train_normal").read_text().splitlines()
    # Event 5 renamed 30: same number of distinct ids, every sorted index shifted.
    _write_sessions(
        other / "train_normal",
        [[30 if e == 5 else e for e in map(int, line.split())] for line in train],
    )
    for name in ("dev_normal", "dev_abnormal"):
        (other / name).write_text((root / name).read_text())
    rederived = prepare("hdfs-sessions", other)
    assert rederived.vocab.size == bundle.vocab.size  # the old size check passed this
    mapped = prepare("hdfs-sessions", other, vocab_event_ids=_ids(bundle))
    assert any(
        not np.array_equal(a, b)
        for w1, w2 in zip(rederived.test, mapped.test, strict=True)
        for a, b in zip(w1, w2, strict=True)
    )
    ours = evaluate_bundle(bundle.path, "hdfs-sessions", root)
    theirs = evaluate_bundle(bundle.path, "hdfs-sessions", other)
    assert theirs["metrics"] == ours["metrics"]


def test_a_bundle_without_its_event_id_table_is_refused(
    sessions: tuple[Path, Bundle], tmp_path: Path
) -> None:
    root, bundle = sessions
    copy = tmp_path / "old-bundle"
    copy.mkdir()
    for name in bundle.manifest["files"]:
        (copy / name).write_bytes((bundle.path / name).read_bytes())
    manifest = dict(bundle.manifest)
    manifest["data"] = {k: v for k, v in manifest["data"].items() if k != "vocab_event_ids"}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    open_bundle(copy)  # still a valid bundle; it just cannot map event ids
    with pytest.raises(BundleError, match="vocab_event_ids"):
        evaluate_labelled(copy, "hdfs-sessions", [root / "dev_normal"], test_labels=["normal"])
    with pytest.raises(BundleError, match="vocab_event_ids"):
        evaluate_bundle(copy, "hdfs-sessions", root)


def test_session_files_need_one_label_each(sessions: tuple[Path, Bundle]) -> None:
    root, bundle = sessions
    files = [root / "dev_normal", root / "dev_abnormal"]
    with pytest.raises(ConfigError, match="per --test file"):
        evaluate_labelled(bundle.path, "hdfs-sessions", files, test_labels=["normal"])
    with pytest.raises(ConfigError, match="test_label='bad'"):
        evaluate_labelled(bundle.path, "hdfs-sessions", files[:1], test_labels=["bad"])
    with pytest.raises(BundleError, match="pre-parsed"):  # a sessions bundle reads no lines
        evaluate_labelled(bundle.path, "hdfs", files[:1])


def test_cli_eval_test_sessions(sessions: tuple[Path, Bundle]) -> None:
    root, bundle = sessions
    runner = CliRunner()
    args = ["eval", "--bundle", str(bundle.path), "--dataset", "hdfs-sessions",
            "--test", str(root / "dev_normal"), "--test-label", "normal",
            "--test", str(root / "dev_abnormal"), "--test-label", "anomalous"]  # fmt: skip
    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tp"] + report["fn"] == 20 and report["fp"] + report["tn"] == 80
    assert {"flagged", "windows_with_unseen", "metrics", "threshold"} <= set(report)
    result = runner.invoke(main, [*args, "--data", str(root)])
    assert result.exit_code == 2 and "--data" in result.output
    result = runner.invoke(main, args[:-2])
    assert result.exit_code == 1 and "per --test file" in result.output


# --- bgl-windows: JSONL windows with their own labels ---


def test_bgl_window_file_scores_as_the_split_does(tmp_path: Path) -> None:
    rng = random.Random(5)
    rows = []
    for i in range(260):
        bad = i >= 200 and rng.random() < 0.3
        ids = [rng.choice((1, 2, 3, 4, 5)) for _ in range(rng.randint(3, 12))]
        if bad:
            ids[rng.randrange(len(ids))] = rng.choice((40, 41))
        rows.append({"window_start": i * 20, "event_ids": ids, "label": int(bad)})
    lines = [json.dumps(r) + "\n" for r in rows]
    (tmp_path / "all.jsonl").write_text("".join(lines))
    (tmp_path / "test.jsonl").write_text("".join(lines[200:]))
    data = prepare("bgl-windows", tmp_path / "all.jsonl", train_n=200)
    bundle = tiny_bundle(data, tmp_path / "bundle")
    report = evaluate_labelled(bundle.path, "bgl-windows", [tmp_path / "test.jsonl"], backend=None)
    n_bad = sum(r["label"] for r in rows[200:])
    assert (report["n_test_anomalous"], report["n_test_normal"]) == (n_bad, 60 - n_bad) and n_bad
    split = evaluate(bundle, prepare("bgl-windows", tmp_path / "all.jsonl", train_n=200,
                                     vocab_event_ids=_ids(bundle)))  # fmt: skip
    for k in ("tp", "fp", "fn", "tn"):
        assert report["metrics"][k] == split["metrics"][k], k
    assert report["windows_with_unseen"]["anomalous"] == n_bad
    with pytest.raises(ConfigError, match="only for hdfs-sessions"):
        evaluate_labelled(bundle.path, "bgl-windows", [tmp_path / "test.jsonl"],
                          test_labels=["normal"])  # fmt: skip


# --- raw logs: windows cut and matched by the bundle, verdicts equal score's ---


def _end(lines: list[str]) -> float:
    last = parse_hdfs_line(lines[-1])
    assert last is not None and last.time is not None
    return last.time


def test_raw_hdfs_log_with_block_labels(tmp_path: Path) -> None:
    train = generate_hdfs(200, seed=1)
    test = generate_hdfs(60, anomaly_rate=0.2, seed=2, start=_end(train.lines) + 3600)
    write_synth(train, tmp_path / "train.log")
    write_synth(test, tmp_path / "test.log", labels_path=tmp_path / "test.block_labels.csv")
    bundle = tiny_bundle(prepare("hdfs", tmp_path / "train.log", train_n=200), tmp_path / "b")
    report = evaluate_labelled(bundle.path, "hdfs", [tmp_path / "test.log"])
    n_bad = sum(test.labels.values())
    assert (report["n_test_anomalous"], report["n_test_normal"]) == (n_bad, 60 - n_bad)
    scored = {sw.key: sw for sw in score_file(bundle, tmp_path / "test.log", "hdfs")}
    flagged = {"normal": 0, "anomalous": 0, "unlabelled": 0}
    unseen = dict(flagged)
    for key, sw in scored.items():
        cls = "anomalous" if test.labels[key] else "normal"
        flagged[cls] += sw.anomaly
        unseen[cls] += sw.unknown_lines > 0
    assert report["flagged"] == flagged and report["windows_with_unseen"] == unseen
    assert unseen["anomalous"] > 0
    # An explicit --labels file wins over the one beside the log: all normal here.
    relabel = tmp_path / "normal.csv"
    relabel.write_text("BlockId,Label\n" + "".join(f"{b},Normal\n" for b in test.labels))
    again = evaluate_labelled(bundle.path, "hdfs", [tmp_path / "test.log"], labels_path=relabel)
    assert again["n_test_anomalous"] == 0 and again["metrics"]["roc_auc"] is None
    assert again["flagged"]["normal"] == sum(flagged.values())
    args = ["--dataset", "hdfs", "--test", str(tmp_path / "test.log"), "--json"]
    result = CliRunner().invoke(main, ["eval", "--bundle", str(bundle.path), *args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["flagged"] == flagged
    (tmp_path / "test.block_labels.csv").unlink()
    with pytest.raises(DataError, match="no block labels"):
        evaluate_labelled(bundle.path, "hdfs", [tmp_path / "test.log"])


def test_raw_bgl_lines_carry_their_labels(tmp_path: Path) -> None:
    train = generate_bgl(6, 7200, seed=1)
    test = generate_bgl(6, 3600, anomaly_rate=0.3, seed=2, start=train_start(train) + 7200)
    write_synth(train, tmp_path / "train.log")
    write_synth(test, tmp_path / "test.log")
    bundle = tiny_bundle(prepare("bgl", tmp_path / "train.log"), tmp_path / "b")
    report = evaluate_labelled(bundle.path, "bgl", [tmp_path / "test.log"])
    n_windows = sum(1 for _ in score_file(bundle, tmp_path / "test.log", "bgl"))
    assert report["n_windows"] == n_windows == report["n_test"]
    assert 0 < report["n_test_anomalous"] < n_windows
    # The same lines with every label field '-': no anomalous window, the same verdicts.
    unlabelled = tmp_path / "normal.log"
    unlabelled.write_text("".join("- " + line.split(" ", 1)[1] + "\n" for line in test.lines))
    normal = evaluate_labelled(bundle.path, "bgl", [unlabelled])
    assert normal["n_test_anomalous"] == 0 and normal["n_test"] == n_windows
    assert normal["flagged"]["normal"] == sum(report["flagged"].values())
    with pytest.raises(ConfigError, match="only for hdfs or lines"):
        evaluate_labelled(bundle.path, "bgl", [tmp_path / "test.log"], labels_path=unlabelled)


def train_start(log: object) -> float:
    return float(log.lines[0].split()[1])  # type: ignore[attr-defined]


BGL_AS_LINES = r"^\S+ (?P<time>\d+) \S+ (?P<host>\S+) \S+ \S+ (?P<text>.*)$"


def test_raw_lines_with_key_labels(tmp_path: Path) -> None:
    train = generate_bgl(5, 7200, seed=3)
    test = generate_bgl(5, 3600, anomaly_rate=0.3, seed=4, start=train_start(train) + 7200)
    write_synth(train, tmp_path / "train.log")
    write_synth(test, tmp_path / "test.log", labels_path=tmp_path / "hosts.csv")
    data = prepare("lines", tmp_path / "train.log", pattern=BGL_AS_LINES)
    bundle = tiny_bundle(data, tmp_path / "b")
    hosts = tmp_path / "hosts.csv"
    report = evaluate_labelled(
        bundle.path, "lines", [tmp_path / "test.log"], labels_path=hosts, pattern=BGL_AS_LINES
    )
    windows = list(score_file(bundle, tmp_path / "test.log", "lines", pattern=BGL_AS_LINES))
    assert report["n_test"] == len(windows)
    assert report["n_test_anomalous"] == sum(test.labels[sw.key] for sw in windows) > 0
    with pytest.raises(ConfigError, match="Key,Label"):
        evaluate_labelled(bundle.path, "lines", [tmp_path / "test.log"], pattern=BGL_AS_LINES)


# --- the real logs: HDFS_5k with its block labels through a bundle from HDFS_20000 ---


@pytest.mark.data
@pytest.mark.slow
def test_real_hdfs_5k_with_block_labels(shared_data: Path, tmp_path: Path) -> None:
    raw = shared_data / "hdfs" / "raw"
    data = prepare("hdfs", raw / "HDFS_20000.log", train_n=400)
    bundle = tiny_bundle(data, tmp_path / "b")
    report = evaluate_labelled(bundle.path, "hdfs", [raw / "HDFS_5k.log"])
    rows = (raw / "HDFS_5k.block_labels.csv").read_text().splitlines()[1:]
    labels = {r.split(",")[0]: r.split(",")[1] for r in rows}
    windows = list(score_file(bundle, raw / "HDFS_5k.log", "hdfs"))
    assert report["n_windows"] == len(windows) and report["n_unlabelled"] == sum(
        sw.key not in labels for sw in windows
    )
    n_bad = sum(labels[sw.key] == "Anomaly" for sw in windows if sw.key in labels)
    assert report["n_test_anomalous"] == n_bad == 10
    flagged = sum(sw.anomaly for sw in windows)
    assert sum(report["flagged"].values()) == flagged
    assert (
        report["metrics"]["tp"] + report["metrics"]["fp"] + report["flagged"]["unlabelled"]
        == flagged
    )
