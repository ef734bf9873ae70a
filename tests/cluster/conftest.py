"""Fixtures for the scale-out tests: a real JetStream server per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.nats import NatsServer, run_nats_server


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh ``nats-server -js`` on a free loopback port (skips if not installed)."""
    with run_nats_server(tmp_path / "nats") as server:
        yield server
