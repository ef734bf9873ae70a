"""Crash points for the durability tests (the idea of TiKV's ``fail`` crate, minimal).

``LOGSIEVE_FAILPOINT=name[@n]`` in the environment of ``logsieve serve`` makes the
process SIGKILL itself the ``n``-th time (default: the first) it reaches :func:`hit`
with that ``name``: a crash at an exact step, which a test then restarts from. Unset
(always, in production) :func:`hit` is one global read. The points:

``forward.partial``
    a connection holds the first part of a frame (the rest not received yet);
``wal.appended``
    a frame's records are in the write-ahead log, not yet windowed nor acked;
``forward.acked``
    a frame's ack was written to the socket;
``pipeline.scoring``
    the engine scored a batch of windows, no verdict of it sent yet;
``upstream.sent``
    a chunk of verdicts was written upstream, its ack not read yet.
"""

from __future__ import annotations

import os
import signal

__all__ = ["hit"]


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get("LOGSIEVE_FAILPOINT")
    if not spec:
        return None
    name, _, count = spec.partition("@")
    return name, int(count) if count else 1


_ARMED = _armed()
_hits = 0


def hit(name: str) -> None:
    """SIGKILL this process if ``name`` is the armed point and its count is reached."""
    global _hits
    if _ARMED is None or _ARMED[0] != name:
        return
    _hits += 1
    if _hits >= _ARMED[1]:
        os.kill(os.getpid(), signal.SIGKILL)
