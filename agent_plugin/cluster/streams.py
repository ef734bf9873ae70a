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

import re
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from logsieve.errors import ConfigError

from .cluster_config import ClusterConfig

__all__ = ["Buckets", "ensure_buckets", "ensure_stream"]

_DESCRIPTION = "logsieve records; partitions={n}"


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

    leases: KeyValue
    members: KeyValue
    state: KeyValue


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
        leases=await bucket("leases", cfg.lease_ttl),
        members=await bucket("members", cfg.lease_ttl),
        state=await bucket("state", None),
    )
