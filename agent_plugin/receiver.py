"""A minimal upstream ``in_forward`` that receives flag records: for the demo and tests.

It is our own :class:`~.server.ForwardServer` with a sink that keeps what arrives, so
it speaks everything a Fluentd/Fluent Bit ``in_forward`` does (acks, handshake, every
mode) and acknowledges a chunk only after the records are stored. Flags are counted
once by ``flag_id`` (the upstream client is at-least-once: a lost ack means a resend)::

    receiver = FlagReceiver(port=0, on_record=print)
    await receiver.start()           # receiver.port: where to point [upstream]
    ...
    receiver.flags()                 # unique flag records, in order of first arrival
    await receiver.stop()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .forward import RecordBatch
from .metrics import Metrics
from .server import ForwardServer
from .server_config import ServerConfig

__all__ = ["FlagReceiver", "Received"]


@dataclass(frozen=True, slots=True)
class Received:
    """One record as it arrived upstream."""

    tag: str
    time: float
    record: dict[Any, Any]


class _Keep:
    """RecordSink that appends every record and wakes waiters."""

    def __init__(self, owner: FlagReceiver) -> None:
        self._owner = owner

    async def put(self, batch: RecordBatch) -> None:
        self._owner._accept(batch)


class FlagReceiver:
    """Receives Forward records on 127.0.0.1 (or ``host``); see the module docstring.

    Attributes:
        received: Every record in arrival order, duplicates included.
        duplicates: Records whose ``flag_id`` had been seen before.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        shared_key: str | None = None,
        on_record: Callable[[Received], object] | None = None,
    ) -> None:
        config = ServerConfig(
            host=host, port=port, shared_key=shared_key, udp_heartbeat=False, idle_timeout=None
        )
        self.server = ForwardServer(config, _Keep(self), Metrics())
        self.received: list[Received] = []
        self.duplicates = 0
        self._flag_ids: dict[str, Received] = {}
        self._on_record = on_record
        self._changed = asyncio.Event()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self.server.port

    async def start(self) -> None:
        """Bind and start accepting."""
        await self.server.start()

    async def stop(self) -> None:
        """Close the listener and the connections (pending acks are written first)."""
        await self.server.stop(drain_timeout=2.0)

    def _accept(self, batch: RecordBatch) -> None:
        for rec in batch.records:
            item = Received(rec.tag, rec.time, rec.record)
            self.received.append(item)
            flag_id = rec.record.get("flag_id")
            if isinstance(flag_id, str):
                if flag_id in self._flag_ids:
                    self.duplicates += 1
                    continue
                self._flag_ids[flag_id] = item
            if self._on_record is not None:
                self._on_record(item)
        self._changed.set()

    def flags(self, tag: str | None = None) -> list[dict[Any, Any]]:
        """Unique records carrying a ``flag_id`` (flags and verdicts), first arrival order."""
        return [r.record for r in self._flag_ids.values() if tag is None or r.tag == tag]

    def records(self, tag: str) -> list[dict[Any, Any]]:
        """Every record received on ``tag`` (duplicates included)."""
        return [r.record for r in self.received if r.tag == tag]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked on each arrival); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except (asyncio.TimeoutError, TimeoutError):
                return predicate()
        return True
