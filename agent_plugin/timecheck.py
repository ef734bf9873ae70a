"""Which event times the windows may trust: not before 1970, not beyond the wall clock.

Event time drives windowing: the windower's watermark is the largest event time seen,
and every session window whose deadline it passes closes. One record stamped
2100-01-01 once moved it for good: every open HDFS session closed at once and every
block was split in two (normal blocks flagged 0/100 → 100/100). The Forward decoder
already skips times no EventTime can carry (past 2106, negative, not finite); this is
the serving side's own rule, applied to every record's time (the record's, or a whole
raw line's own):

* ``future``: later than the wall clock plus ``pipeline.max_future_skew``;
* ``before_epoch``: 0 or earlier (Forward's 0 already means "now" on the wire);
* ``not_finite``: NaN or infinite.

Such a record is **kept**, not rejected: it is windowed at the current event time, the
windower's defined rule for a record without a time (it joins its key's window and
moves no watermark; before any trusted time was seen, at the receive time), and
counted by reason
(``logsieve_pipeline_retimed_records_total{reason}``). Rejecting it would lose a record
its client was told was received; the receive time instead would itself move the
watermark of a replay of older logs (HDFS 2008 logs replayed today) by years, the very
failure above. Pass-through keeps the record's own time untouched.

Why a bound on the future and none on the past: logs replayed or delayed (a buffered
agent, an outage) are legitimately old, and an old time moves no watermark; only a
time ahead of every clock can close windows early. The watermark the clock tick
advances to (the largest trusted time plus the wall-clock time since) is also capped
at the wall clock plus the skew, so no record moves it further than that.
"""

from __future__ import annotations

import math

__all__ = ["REASONS", "untrusted_time"]

REASONS = ("future", "before_epoch", "not_finite")


def untrusted_time(t: float, future_limit: float) -> str | None:
    """Why ``t`` (Unix seconds) cannot be trusted as an event time, or None if it can.

    ``future_limit`` is the wall clock plus the allowed skew, read once per batch.
    """
    if not math.isfinite(t):
        return "not_finite"
    if t <= 0:
        return "before_epoch"
    if t > future_limit:
        return "future"
    return None
