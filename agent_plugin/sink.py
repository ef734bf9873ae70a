"""Where the network layer hands decoded records: the :class:`RecordSink` seam.

The Forward server calls ``await sink.put(batch)`` once per data request, in
wire order per connection, and writes the request's ``{"ack": chunk}`` only
after ``put`` has returned. ``put`` may take as long as it needs: while it is
pending, that connection stops reading its socket, so a full downstream queue
turns into TCP backpressure and the client's own buffer holds the data (STYLE.md
§3). Nothing is dropped and nothing is acknowledged early.

A sink that raises from ``put`` refuses the batch: the connection closes
without an ack, and a client that asked for one resends it later.

:class:`QueueSink` is the plain bounded implementation: the seam the streaming
pipeline consumes from, and what the tests use.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from logsieve.errors import ConfigError

from .forward import RecordBatch

__all__ = ["QueueSink", "RecordSink"]


@runtime_checkable
class RecordSink(Protocol):
    """Accepts the records of one Forward request.

    Contract, as the network layer relies on it:

    * ``put`` returning means the records are safely accepted (queued, written
      to a WAL, or processed); the request is acknowledged right after.
    * ``put`` may block for backpressure; the connection pauses reading meanwhile.
    * ``put`` raising means the batch was *not* accepted (no ack is sent).
    * Batches of one connection arrive strictly in order, one at a time;
      different connections call ``put`` concurrently.
    * Batches without records (non-log ``fluent_signal``, every entry skipped)
      are acknowledged without calling ``put``.
    """

    async def put(self, batch: RecordBatch) -> None:
        """Accept ``batch`` (awaiting room if needed); raise to refuse it."""
        ...


class QueueSink:
    """A :class:`RecordSink` backed by a bounded :class:`asyncio.Queue`.

    ``maxsize`` counts batches (requests), not records: a connection holds at
    most one pending ``put``, so the records buffered in memory are bounded by
    ``(maxsize + open connections) x max_frame_bytes`` worth of requests.
    The consumer calls :meth:`get` and then :meth:`task_done` once the batch
    is fully handled.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        # An unbounded queue (asyncio's maxsize=0) would defeat backpressure.
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigError(
                "sink.maxsize", maxsize, "a positive integer (the queue must be bounded)"
            )
        self.queue: asyncio.Queue[RecordBatch] = asyncio.Queue(maxsize)

    async def put(self, batch: RecordBatch) -> None:
        """Wait until there is room, then enqueue ``batch``."""
        await self.queue.put(batch)

    async def get(self) -> RecordBatch:
        """Wait for the next batch (consumer side)."""
        return await self.queue.get()

    def get_nowait(self) -> RecordBatch:
        """The next batch, or :class:`asyncio.QueueEmpty`."""
        return self.queue.get_nowait()

    def task_done(self) -> None:
        """Mark a batch returned by :meth:`get` as handled."""
        self.queue.task_done()

    def qsize(self) -> int:
        """Batches waiting (for a queue-depth gauge)."""
        return self.queue.qsize()
