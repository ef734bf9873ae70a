"""The JetStream objects the scale-out mode uses, created on first use, checked after.

* stream ``<stream>``: subjects ``<stream>.p.*``, file storage, *work-queue* retention
  (an acked message is deleted: what is in the stream is exactly what still needs a
  verdict), message-id de-duplication over ``duplicate_window``. Its description
  records the partition count; a different ``partitions`` is a ConfigError.
* KV ``<stream>_leases`` (TTL ``lease_ttl``): ``p<n>`` → the owning worker's name.
* KV ``<stream>_members`` (TTL ``lease_ttl``): ``<worker name>`` → ``b"1"``.
* KV ``<stream>_state``: ``p<n>`` → which window keys of unacked messages already
  have their verdict delivered (:mod:`.tracker`), read by the next owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from logsieve.errors import ConfigError

from .cluster_config import ClusterConfig

__all__ = [
    "Buckets",
    "connect",
    "consumer_created",
    "ensure_buckets",
    "ensure_stream",
    "fresh_consumer",
    "read_state",
]

_DESCRIPTION = "logsieve records; partitions={n}"

log = logging.getLogger(__name__)


async def connect(url: str, who: str, state: Callable[[bool], None]) -> NATS:
    """Connect to ``url``, reconnecting for ever; ``state(False)`` when the connection
    drops (``/health`` turns 503), ``state(True)`` when it is back."""

    async def lost() -> None:
        state(False)
        log.warning("%s: NATS connection lost", who)

    async def back() -> None:
        state(True)
        log.warning("%s: NATS connection back", who)

    nc = await nats.connect(
        url,
        name=f"logsieve {who}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        disconnected_cb=lost,
        reconnected_cb=back,
    )
    state(True)
    return nc


async def ensure_stream(js: JetStreamContext, cfg: ClusterConfig) -> None:
    """Create the record stream, or check that an existing one has our partitions."""
    try:
        info = await js.stream_info(cfg.stream)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=cfg.stream,
                description=_DESCRIPTION.format(n=cfg.partitions),
                subjects=[f"{cfg.stream}.p.*"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=cfg.duplicate_window,
            )
        )
        return
    found = re.search(r"partitions=(\d+)", info.config.description or "")
    if found is None or int(found.group(1)) != cfg.partitions:
        have = found.group(1) if found else "unknown (not made by logsieve)"
        raise ConfigError(
            "cluster.partitions",
            cfg.partitions,
            f"the existing stream {cfg.stream!r} has partitions={have}; partitions are "
            "fixed when the stream is created (use another stream name to change them)",
        )


@dataclass
class Buckets:
    """The three key-value buckets (module docstring)."""

    js: JetStreamContext
    prefix: str  # bucket names are ``<prefix>_leases`` and so on
    leases: KeyValue
    members: KeyValue
    state: KeyValue

    async def live_keys(self, suffix: str) -> list[str]:
        """The keys of bucket ``<prefix>_<suffix>`` that hold a value now.

        One stream-info request lists the bucket's subjects (a server-side snapshot),
        then each key's last entry is read and deleted ones are dropped. nats-py's
        ``KeyValue.keys()`` is not used: it replays the bucket through a watcher that
        can miss a key rewritten meanwhile (a member renewing) and, waiting for its
        end marker without a timeout, can hang a lease round.
        """
        bucket = f"{self.prefix}_{suffix}"
        info = await self.js.stream_info(f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.>")
        head = len(f"$KV.{bucket}.")
        names = [subject[head:] for subject in info.state.subjects or {}]
        kv: KeyValue = getattr(self, suffix)

        async def live(key: str) -> bool:
            try:
                await kv.get(key)  # raises for a deleted or purged key as for a missing one
            except KeyNotFoundError:
                return False
            return True

        alive = await asyncio.gather(*map(live, names))
        return [key for key, ok in zip(names, alive, strict=True) if ok]


async def ensure_buckets(js: JetStreamContext, cfg: ClusterConfig) -> Buckets:
    """Open (creating if absent) the lease, member and state buckets."""

    async def bucket(suffix: str, ttl: float | None) -> KeyValue:
        name = f"{cfg.stream}_{suffix}"
        try:
            return await js.key_value(name)
        except NotFoundError:
            return await js.create_key_value(
                KeyValueConfig(bucket=name, ttl=ttl, history=1, storage=StorageType.FILE)
            )

    return Buckets(
        js=js,
        prefix=cfg.stream,
        leases=await bucket("leases", cfg.lease_ttl),
        members=await bucket("members", cfg.lease_ttl),
        state=await bucket("state", None),
    )


async def read_state(state: KeyValue, partition: int) -> dict[int, Any]:
    """What the previous owner of ``partition`` finished of its unacked messages:
    stream sequence -> done keys, or True when all of it (:mod:`.tracker`)."""
    with contextlib.suppress(KeyNotFoundError):
        entry = await state.get(f"p{partition}")
        if entry.value:
            done: dict[int, Any] = msgpack.unpackb(entry.value, strict_map_key=False)
            return done
    return {}


async def fresh_consumer(
    js: JetStreamContext, cfg: ClusterConfig, partition: int
) -> tuple[JetStreamContext.PullSubscription, ConsumerInfo, int]:
    """Replace ``partition``'s durable consumer with a new one that delivers, in
    stream order, every message still in the work-queue stream: the unacked ones.
    Also returns the last stream sequence the old consumer had delivered (0 if none):
    messages up to it come again (a replay)."""
    delivered = 0
    with contextlib.suppress(NotFoundError):
        old = await js.consumer_info(cfg.stream, f"p{partition}")
        delivered = old.delivered.stream_seq if old.delivered is not None else 0
        await js.delete_consumer(cfg.stream, f"p{partition}")
    sub = await js.pull_subscribe(
        cfg.subject(partition),
        durable=f"p{partition}",
        stream=cfg.stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=cfg.ack_wait,
            max_ack_pending=1_000_000,
            max_deliver=-1,
        ),
    )
    return sub, await js.consumer_info(cfg.stream, f"p{partition}"), delivered or 0


async def consumer_created(js: JetStreamContext, cfg: ClusterConfig, partition: int) -> object:
    """When ``partition``'s consumer was made (None if there is none)."""
    try:
        info = await js.consumer_info(cfg.stream, f"p{partition}")
    except NotFoundError:
        return None
    return info.created
