"""The one record type that flows from readers (offline) and the Forward
server (online) into templating and windowing."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LogRecord"]


@dataclass(slots=True, frozen=True)
class LogRecord:
    """One log line with what windowing needs to know about it.

    ``time`` is event time in seconds since the epoch, or ``None`` when the line
    carried no timestamp (windowing then uses the current watermark).
    ``host`` is the node/host field for per-host windows, ``None`` if absent.
    ``text`` is the message content that templates are mined from.
    ``label`` is 0 (normal) / 1 (anomalous) where a dataset provides one; training
    code must never read it (see ``export.data.datasets``).
    """

    time: float | None
    host: str | None
    text: str
    label: int | None = None
