"""Shared fixtures: where the real data lives, and skipping when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logsieve.bundle import Bundle
from logsieve.engine import Engine, load_engine

_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_dir() -> Path | None:
    """``$LOGSIEVE_DATA`` or ``../shared/data`` beside the checkout, if present."""
    env = os.environ.get("LOGSIEVE_DATA")
    path = Path(env) if env else _DEFAULT_DATA
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder; skips the test with a reason when it is absent."""
    path = data_dir()
    if path is None:
        pytest.skip(
            "real log data not found: set LOGSIEVE_DATA or place ../shared/data beside the repo"
        )
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """FastLogAD d_model 32, 1 layer, 1+1 epochs on generated HDFS-like logs (~20 s)."""
    from tests.agent_plugin.served import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_bundle: Bundle) -> Engine:
    """The bundle's ``auto`` engine (ONNX Runtime on CPU), shared by the tests."""
    return load_engine(tiny_bundle, "auto")


@pytest.fixture(scope="session")
def tiny_home(tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny bundle as a versioned home, updated in place (fine-tune, 1+1
    epochs) on logs with a template it never saw: ``current`` is the new version, the
    root the parent. Tests that change it work on a copy."""
    from tests.agent_plugin.served import updated_home

    return updated_home(tiny_bundle, tmp_path_factory.mktemp("home"))
