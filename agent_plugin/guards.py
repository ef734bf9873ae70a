"""What bounds one Forward peer's hold on the server: deadlines and the shared byte budget.

:func:`next_deadline` is the rule; :class:`PeerClock` runs it on one timer per
connection (re-armed only when it fires or when an earlier deadline appears, not on
every read); :class:`BufferBudget` is the server-wide count of bytes held in
unfinished requests, the one bound that does not grow with the number of
connections. The asyncio protocol (:mod:`.connection`) drives them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from .server_config import ServerConfig

__all__ = ["BufferBudget", "Deadline", "PeerClock", "next_deadline"]


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


def _never_expire(_: Deadline) -> None:
    pass


def _false() -> bool:
    return False


class PeerClock:
    """One connection's deadlines on one timer.

    Args:
        config: The timeouts.
        expire: Called once with the reason when a deadline passes.
        paused: True while the server is not reading this connection (waiting on
            the sink, on a slow reader of acks, or shutting down): time spent so is
            charged to no deadline.
        awaiting_ping: True while the shared-key handshake is pending.
    """

    def __init__(
        self,
        config: ServerConfig,
        expire: Callable[[Deadline], None],
        paused: Callable[[], bool],
        awaiting_ping: Callable[[], bool],
    ) -> None:
        self._config = config
        self._expire = expire
        self._paused = paused
        self._awaiting_ping = awaiting_ping
        self._loop = asyncio.get_running_loop()
        self.last_activity = self.connected_at = self._loop.time()
        self._frame_started: float | None = None  # first byte of the unfinished request
        self._frames_seen = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._stopped = False

    def start(self) -> None:
        """Arm the timer for the deadlines in force at accept."""
        self._arm()

    def stop(self) -> None:
        """No deadline any more (the connection is closing). Drops the callbacks:
        they refer to the connection, which refers to this clock, and a cycle would
        keep both (and the connection's buffers) until the rarely run cyclic GC."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._expire = _never_expire
        self._paused = self._awaiting_ping = _false

    def touch(self) -> None:
        """Bytes arrived, or we just wrote an ack: not idle."""
        self.last_activity = self._loop.time()

    def track(self, frames: int, buffered: int) -> None:
        """After processing: ``frames`` requests decoded so far, ``buffered`` bytes
        left. The unfinished request began now if one completed since the last look
        (or none was pending); there is none when nothing is buffered."""
        if buffered == 0:
            self._frame_started = None
        elif self._frame_started is None or frames != self._frames_seen:
            self._frame_started = self._loop.time()
            if self._config.frame_timeout is not None:
                self._arm(self._frame_started + self._config.frame_timeout)
        self._frames_seen = frames

    def deadline(self) -> Deadline | None:
        """The earliest deadline in force now."""
        return next_deadline(
            self._config,
            last_activity=self.last_activity,
            connected_at=self.connected_at,
            awaiting_ping=self._awaiting_ping(),
            frame_started=self._frame_started,
        )

    def _arm(self, at: float | None = None) -> None:
        """Make the timer fire by ``at`` (default: the earliest deadline)."""
        if self._stopped:
            return
        if at is None:
            deadline = self.deadline()
            if deadline is None:
                return
            at = deadline.at
        if self._timer is not None:
            if self._timer_at <= at:
                return  # it fires earlier and re-arms for what is left
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._stopped:
            return
        now = self._loop.time()
        if self._paused():
            # We are the ones waiting: the peer cannot be idle or late meanwhile.
            self.last_activity = now
            if self._frame_started is not None:
                self._frame_started = now
        deadline = self.deadline()
        if deadline is None:
            return
        if deadline.at > now:
            self._arm(deadline.at)
            return
        expire = self._expire
        self.stop()
        expire(deadline)


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
