"""What bounds one Forward peer's hold on the server: deadlines and the shared byte budget.

:func:`next_deadline` is the rule the connection's single timer follows;
:class:`BufferBudget` is the server-wide count of bytes held in unfinished requests,
the one bound that does not grow with the number of connections. Both are plain
state and arithmetic: the asyncio protocol (:mod:`.connection`) drives them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .server_config import ServerConfig

__all__ = ["BufferBudget", "Deadline", "next_deadline"]


@dataclass(frozen=True, slots=True)
class Deadline:
    """When (event-loop time) a connection is closed, and the close reason counted."""

    at: float
    reason: str  # "idle" | "handshake_timeout" | "frame_timeout"


def next_deadline(
    config: ServerConfig,
    *,
    last_activity: float,
    connected_at: float,
    awaiting_ping: bool,
    frame_started: float | None,
) -> Deadline | None:
    """The earliest deadline in force for one connection, or None.

    ``idle_timeout`` runs from the last byte; ``handshake_timeout`` from accept while
    the shared-key handshake is pending; ``frame_timeout`` from the first byte of the
    request not yet whole (``frame_started``), so a peer dribbling bytes, which
    keeps restarting the idle timer, still meets a deadline.
    """
    found: list[Deadline] = []
    if config.idle_timeout is not None:
        found.append(Deadline(last_activity + config.idle_timeout, "idle"))
    if config.handshake_timeout is not None and awaiting_ping:
        found.append(Deadline(connected_at + config.handshake_timeout, "handshake_timeout"))
    if config.frame_timeout is not None and frame_started is not None:
        found.append(Deadline(frame_started + config.frame_timeout, "frame_timeout"))
    return min(found, key=lambda d: d.at) if found else None


class BufferBudget:
    """Bytes of unfinished requests held across every connection of one server.

    Each connection reports the bytes of its request in progress after every read
    (:meth:`update`); when the total passes ``limit`` the server closes the
    connection holding the most (reason ``overload``), which under attack is the
    attacker's, and otherwise a client that will resend. Per-connection bounds
    alone (``max_frame_bytes``) would still let ``max_connections`` peers hold
    that much each.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0

    def update(self, before: int, now: int) -> bool:
        """Move one connection's share from ``before`` to ``now``; True when over."""
        self.total += now - before
        return self.total > self.limit
