"""Dataset preparation on the real data: the splits the README prescribes, and the label
firewall (no anomalous window in training or validation). Skipped without the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from logsieve.errors import ConfigError
from logsieve.export.data.datasets import read_bgl_windows
from logsieve.export.data.prepare import prepare
from logsieve.logs.vocab import CLS, UNK


@pytest.mark.data
def test_hdfs_sessions_split(shared_data: Path) -> None:
    data = prepare("hdfs-sessions", shared_data / "hdfs/sessions")
    assert (len(data.train), len(data.validation), len(data.test)) == (4370, 485, 9835)
    assert int(data.test_labels.sum()) == 5051
    # The vocabulary is what train_normal holds (14 of HDFS_templates.csv's 30 event
    # ids): an event only test data has is [UNK], as an unseen template when serving.
    events = data.summary["vocab_event_ids"]
    assert data.vocab.size == len(events) + 4 == 14 + 4
    assert data.templates_state is None
    assert all(s[0] == CLS and s[1:].min() >= 4 for s in data.train + data.validation)
    # 2,358 anomalous and 2 normal test sessions hold an event training never had.
    assert data.summary["test_windows_with_unknown"] == 2360
    assert sum(bool((w[0] == UNK).any()) for w in data.test) == 2360


@pytest.mark.data
def test_bgl_windows_split_keeps_anomalies_out_of_training(shared_data: Path) -> None:
    path = shared_data / "bgl/windows/train.jsonl"
    data = prepare("bgl-windows", path, train_n=2000)
    assert len(data.train) + len(data.validation) == 2000
    assert len(data.test) == 5019 - 2000
    assert int(data.test_labels.sum()) == 908  # every anomalous window is in test
    anomalous = {tuple(s.event_ids) for s in read_bgl_windows(path) if s.label}
    events = data.summary["vocab_event_ids"]
    trained = {tuple(events[int(x) - 4] for x in s[1:]) for s in data.train + data.validation}
    assert not trained & anomalous


@pytest.mark.data
def test_raw_hdfs_mines_templates_on_training_windows_only(shared_data: Path) -> None:
    data = prepare("hdfs", shared_data / "hdfs/raw/HDFS_20000.log")
    assert data.summary["train_windows"] + data.summary["validation_windows"] > 1000
    assert int(data.test_labels.sum()) == 43  # the anomalous blocks of the file
    assert data.templates_state is not None
    assert data.vocab.size == len(data.templates_state["templates"]) + 4
    flat = np.concatenate([c for w in data.test for c in w])
    assert flat.max() < data.vocab.size


def test_unknown_dataset_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset='hdfs2'"):
        prepare("hdfs2", tmp_path)
