"""A worker feeds one JetStream message into its pipeline: the records' windows of the
keys its partition owns, numbered so :mod:`.tracker` knows when to ack the message.

Keys are found exactly as the single-process pipeline finds them (the pipeline's own
:class:`~..record_reader.RecordReader` and :class:`~logsieve.logs.keys.KeyExtractor`),
and the ingress used the same code to choose the partitions. A record whose keys fall
in several partitions came to each; here it joins only the windows of this one's keys.
A record with no key (no text, or no block id) was sent to the partition of its tag:
its pass-through copy (``pass_through``) goes upstream from there, once. A record in
several partitions passes through from the partition of its first key.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from logsieve.logs.windows import SessionWindower

from ..forward import LogRecord as ForwardRecord
from ..pipeline import StreamingPipeline
from ..supervision import RateLimitedLog
from .partition import partition_of
from .tracker import ClusterTracker, Held
from .wire import ClusterMessage

__all__ = ["drop_open", "feed_message", "owner_partition"]

log = logging.getLogger(__name__)
_drop_log = RateLimitedLog(log)


def owner_partition(keys: tuple[str, ...], tag: str, partitions: int) -> int:
    """The partition a record's pass-through copy leaves from (module docstring)."""
    return partition_of(keys[0] if keys else tag, partitions)


async def feed_message(
    pipeline: StreamingPipeline,
    tracker: ClusterTracker,
    partition: int,
    partitions: int,
    seq: int,
    msg: Any,
    body: ClusterMessage,
    done: Collection[str] | bool = (),
) -> Held:
    """Window ``body``'s records of ``partition`` (message ``seq``) into ``pipeline``.

    ``done``: keys a previous owner already judged for this message (their records
    are not windowed again), or True when all of it was judged.
    """
    held = tracker.begin(partition, seq, msg, len(body.records))
    if done is True:
        return held
    skip = set(done) if not isinstance(done, bool) else set()
    tracker.skipped_keys(held, skip)
    reader, lines, metrics = pipeline.reader, pipeline.lines, pipeline.metrics
    config = pipeline.config
    trusted_until = reader.trusted_until()
    windowed = 0
    for i, rec in enumerate(body.records):
        try:
            # As the pipeline's put reads a record: (time, host, text, raw), no LogRecord.
            read = reader.read(rec.record, rec.time, trusted_until)
            if read is None:  # no text
                if config.pass_through and partition_of(rec.tag, partitions) == partition:
                    await _pass(pipeline, tracker, held, rec)
                continue
            when, host, text, _ = read
            keys = lines.keys.keys_of(text, host, rec.record)
            owner = owner_partition(keys, rec.tag, partitions) == partition
            mine = tuple(
                k for k in keys if k not in skip and partition_of(k, partitions) == partition
            )
            if not mine:
                if not keys and config.pass_through and owner:
                    await _pass(pipeline, tracker, held, rec)
                continue
            event, mine, closed = lines.feed_line(
                when, host, text, rec.record, held.first + i, keys=mine
            )
            tracker.placed(held, mine)
            windowed += 1
            pipeline.note_time(when)
            if config.pass_through and owner and keys[0] not in skip:
                pipeline.hold(event, rec)
            for window in closed:
                await pipeline.enqueue(window)
        except Exception as exc:  # one bad record never stops the partition
            reason = type(exc).__name__
            metrics.dropped.labels(item="record", reason=reason).inc()
            _drop_log.warn(
                f"record:{reason}", "dropped a record (partition %d): %s", partition, exc
            )
    metrics.records.labels(outcome="windowed").inc(windowed)
    return held


async def _pass(
    pipeline: StreamingPipeline, tracker: ClusterTracker, held: Held, rec: ForwardRecord
) -> None:
    """Send a record with no window upstream as it came (as the pipeline's put does)."""
    tag = pipeline.config.pass_through_tag or rec.tag
    await pipeline.upstream.send(tag, dict(rec.record), time=rec.time)
    pipeline.metrics.sent.labels(kind="pass_through").inc()
    tracker.passed(held)


def drop_open(
    pipeline: StreamingPipeline, tracker: ClusterTracker, partition: int, partitions: int
) -> int:
    """Drop ``partition``'s open session windows unjudged: their messages stay unacked,
    so the partition's next owner forms them whole. Returns how many were dropped."""
    windower = pipeline.lines.windower
    if not isinstance(windower, SessionWindower):
        return 0  # sliding windows cannot be taken out of the windower key by key
    dropped = 0
    for key in sorted(tracker.open_keys.get(partition, ())):
        if partition_of(key, partitions) == partition:
            dropped += windower.close_key(key, "flush") is not None
    return dropped
