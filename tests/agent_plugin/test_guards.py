"""The deadline rule and the server-wide buffer budget, as plain functions."""

from __future__ import annotations

from logsieve.agent_plugin.guards import BufferBudget, Deadline, next_deadline
from logsieve.agent_plugin.server_config import ServerConfig


def deadline(
    config: ServerConfig,
    *,
    last_activity: float = 100.0,
    awaiting_ping: bool = False,
    frame_started: float | None = None,
) -> Deadline | None:
    return next_deadline(
        config,
        last_activity=last_activity,
        connected_at=90.0,
        awaiting_ping=awaiting_ping,
        frame_started=frame_started,
    )


def test_the_earliest_deadline_in_force_wins() -> None:
    cfg = ServerConfig(idle_timeout=300.0, handshake_timeout=10.0, frame_timeout=60.0)
    assert deadline(cfg) == Deadline(400.0, "idle")
    assert deadline(cfg, awaiting_ping=True) == Deadline(100.0, "handshake_timeout")
    assert deadline(cfg, frame_started=95.0) == Deadline(155.0, "frame_timeout")
    # A dribbling peer: the last byte just now, its request begun long ago.
    assert deadline(cfg, last_activity=200.0, frame_started=95.0) == Deadline(
        155.0, "frame_timeout"
    )


def test_no_deadline_when_every_timeout_is_off() -> None:
    cfg = ServerConfig(idle_timeout=None, handshake_timeout=None, frame_timeout=None)
    assert deadline(cfg, awaiting_ping=True, frame_started=1.0) is None


def test_budget_counts_moves_and_reports_when_over() -> None:
    budget = BufferBudget(100)
    assert budget.update(0, 60) is False
    assert budget.update(0, 50) is True and budget.total == 110
    assert budget.update(60, 0) is False and budget.total == 50
