"""A restart's replay: the write-ahead log's records windowed again (see :mod:`.ledger`).

Records come back in log order. Session windows: each record goes into the windows
that still need it (:meth:`~.ledger.ReplayPlan.keys_for`: a window closed and done
before the crash is not formed again), and a window that had closed and whose verdict
was not delivered is closed again as soon as its last record is back, so it holds
exactly the lines it held (same ``flag_id``). Sliding windows are fixed spans of event
time: every record goes in again, the windows form as they did, and one whose span
was done before the crash is dropped when it closes. The rest is windowed as when it
first came.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, get_args

from logsieve.logs.windows import CloseReason, SessionWindower

from .forward import LogRecord as ForwardRecord
from .ledger import Ledger, ReplayPlan
from .wal import WalRecord

if TYPE_CHECKING:
    from .pipeline import StreamingPipeline

__all__ = ["replay_records"]

log = logging.getLogger(__name__)


async def replay_records(
    pipeline: StreamingPipeline, ledger: Ledger, records: list[WalRecord], plan: ReplayPlan
) -> None:
    """Window ``records`` again into ``pipeline`` as ``plan`` says."""
    ledger.done_spans = plan.done_spans
    reader, lines = pipeline.reader, pipeline.lines
    pass_through = pipeline.config.pass_through
    trusted_until = reader.trusted_until()
    sessions = isinstance(lines.windower, SessionWindower)
    for wr in records:
        text = reader.text(wr.record)
        if text is None:
            continue  # never windowed: it went on (pass-through) when it came
        rec_time = wr.time_ns / 1e9
        record, _ = reader.line(text, wr.record, rec_time, trusted_until)
        keys = lines.keys.keys(record, wr.record)
        if sessions:
            keys = plan.keys_for(wr.lsn, keys)
            if not keys:
                continue  # every window it was in has its verdict delivered
        # Sliding windows: a record sits in several windows of one key, done or not,
        # so it goes in whole; windows formed again whose span was done are dropped
        # when they close (Ledger.already_done).
        event, keys, closed = lines.feed_event(record, wr.record, seq=wr.lsn, keys=keys)
        ledger.replayed_records += 1
        pipeline.note_time(record.time)
        if pass_through:
            pipeline.hold(
                event, ForwardRecord(wr.tag, rec_time, wr.time_ns, wr.record, wr.metadata)
            )
        windower = lines.windower
        if isinstance(windower, SessionWindower):
            for closure in plan.completes(wr.lsn, keys):
                window = windower.close_key(closure.key, _reason(closure.reason))
                if window is not None:
                    closed.append(window)
        for window in closed:
            ledger.replayed_windows += 1
            await pipeline.enqueue(window)
    log.warning(
        "write-ahead log: %d record(s) windowed again, %d window(s) closed by the replay",
        ledger.replayed_records,
        ledger.replayed_windows,
    )


def _reason(name: str) -> CloseReason:
    return name if name in get_args(CloseReason) else "flush"  # type: ignore[return-value]
