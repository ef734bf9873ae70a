"""Fixtures of the serving tests: one tiny trained and exported bundle per session."""

from __future__ import annotations

import pytest

from logsieve.bundle import Bundle
from logsieve.engine import Engine, load_engine

from .served import make_tiny_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """FastLogAD d_model 32, 1 layer, 1+1 epochs on generated HDFS-like logs (~20 s)."""
    return make_tiny_bundle(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_bundle: Bundle) -> Engine:
    """The bundle's ``auto`` engine (ONNX Runtime on CPU), shared by the tests."""
    return load_engine(tiny_bundle, "auto")
