"""Settings of the scale-out mode (``[cluster]``): where NATS is, how the stream is cut.

Loaded once at the CLI edge with the other ``serve`` tables; validated here. Without
``nats_url`` (the default) ``logsieve serve`` runs single-process, as before.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from logsieve.config import not_finite_number, not_int, reject_unknown
from logsieve.errors import ConfigError

__all__ = ["ClusterConfig"]

_SECTION = "cluster"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # JetStream stream / KV bucket names


@dataclass(frozen=True)
class ClusterConfig:
    """Attributes:
    nats_url: ``nats://host:port`` of a JetStream-enabled ``nats-server``; None: the
        single-process mode (no NATS at all).
    stream: The JetStream stream holding the records (its KV buckets are named after
        it: ``<stream>_leases``, ``<stream>_members``, ``<stream>_state``).
    partitions: How many partition subjects the stream has (``<stream>.p.<n>``).
        Fixed when the stream is created: a different value against an existing
        stream is a ConfigError. At least as many as the most workers you will run.
    ack_wait: Seconds JetStream waits for a worker's ack before redelivering; a
        worker keeps the messages it holds alive (``in_progress``) well before that.
    lease_ttl: Seconds a partition lease (and a worker's membership) lives without
        renewal: a killed worker's partitions move after at most this long.
    publish_timeout: Seconds the ingress waits for JetStream's publish acks before it
        refuses the frame (no Forward ack; the client resends).
    worker_name: This worker's name (unique per worker); None: ``<hostname>-<pid>``.
    fetch_batch: Messages fetched per pull request.
    commit_interval: Seconds between a worker's progress commits (state, acks).
    duplicate_window: Seconds JetStream remembers message ids to drop re-publishes.
    """

    nats_url: str | None = None
    stream: str = "LOGSIEVE"
    partitions: int = 16
    ack_wait: float = 30.0
    lease_ttl: float = 3.0
    publish_timeout: float = 5.0
    worker_name: str | None = None
    fetch_batch: int = 256
    commit_interval: float = 0.2
    duplicate_window: float = 120.0

    def __post_init__(self) -> None:
        url = self.nats_url
        if url is not None and (not isinstance(url, str) or not url.startswith("nats://")):
            raise ConfigError(f"{_SECTION}.nats_url", url, "nats://host:port or unset")
        if not isinstance(self.stream, str) or not _NAME.match(self.stream):
            raise ConfigError(f"{_SECTION}.stream", self.stream, "letters, digits, - or _")
        if not_int(self.partitions) or not 1 <= self.partitions <= 4096:
            raise ConfigError(f"{_SECTION}.partitions", self.partitions, "an integer 1..4096")
        if not_int(self.fetch_batch) or self.fetch_batch < 1:
            raise ConfigError(f"{_SECTION}.fetch_batch", self.fetch_batch, "an integer >= 1")
        for name in ("ack_wait", "publish_timeout", "commit_interval", "duplicate_window"):
            value = getattr(self, name)
            if not_finite_number(value) or value <= 0:
                raise ConfigError(f"{_SECTION}.{name}", value, "seconds > 0")
        if not_finite_number(self.lease_ttl) or self.lease_ttl < 1.0:
            # KV entries age out on the server's own timer, about once a second.
            raise ConfigError(f"{_SECTION}.lease_ttl", self.lease_ttl, "seconds >= 1")
        if self.ack_wait <= 2 * self.commit_interval:
            raise ConfigError(
                f"{_SECTION}.ack_wait", self.ack_wait, "more than twice commit_interval"
            )
        given = self.worker_name
        if given is not None and (not isinstance(given, str) or not _NAME.match(given)):
            raise ConfigError(f"{_SECTION}.worker_name", given, "letters, digits, - or _")

    @property
    def enabled(self) -> bool:
        return self.nats_url is not None

    @property
    def name(self) -> str:
        """This worker's name: ``worker_name`` or ``<hostname>-<pid>``."""
        import os

        if self.worker_name is not None:
            return self.worker_name
        host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "worker"
        return f"{host}-{os.getpid()}"

    def subject(self, partition: int) -> str:
        """The subject of ``partition``'s messages."""
        return f"{self.stream}.p.{partition}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterConfig:
        """Build from a TOML table; unknown keys are a :class:`ConfigError`."""
        reject_unknown(_SECTION, data, cls)
        return cls(**dict(data))
