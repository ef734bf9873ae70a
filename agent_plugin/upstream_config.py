"""Settings of the upstream Forward client that sends flag records (frozen, validated).

Loaded once at the CLI edge (``UpstreamConfig.from_dict(table)``) and handed to
:class:`~logsieve.agent_plugin.upstream.UpstreamClient`. ``__post_init__``
raises :class:`~logsieve.errors.ConfigError` naming the field, the value and
what is allowed; ``from_dict`` also rejects unknown keys (typos).
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from logsieve.config import not_finite_number, not_int, reject_unknown
from logsieve.errors import ConfigError

__all__ = ["OverflowPolicy", "UpstreamConfig", "UpstreamMode"]

OverflowPolicy = Literal["block", "drop"]
UpstreamMode = Literal["forward", "packed"]

_MIB = 1024 * 1024
# Fluent Bit in_forward closes the connection on a request over buffer_max_size
# (6,144,000 B by default, FORWARD.md §3.3); stay well under it.
_RECEIVER_FRAME_LIMIT = 6_144_000


@dataclass(frozen=True)
class UpstreamConfig:
    """Where and how flag records go upstream (a Fluentd or Fluent Bit ``in_forward``).

    Attributes:
        host, port: The receiver.
        tls: Wrap the connection in TLS ("secure forward"); TLS alone does not
            imply the shared-key handshake.
        tls_ca_file: CA bundle to verify the server with (system store if None).
        tls_cert_file, tls_key_file: Client certificate and key (mutual TLS).
        tls_verify: Verify the server certificate and host name. Turn off only for tests.
        tls_server_hostname: Name to verify and send as SNI (``host`` if None).
        shared_key: Enables the HELO/PING/PONG handshake; None means no handshake.
        self_hostname: Our name in the PING; must differ from the server's.
        username, password: Sent when the server's HELO asks for user auth.
        require_ack: Put a ``chunk`` id in every frame and drop the chunk only
            after ``{"ack": chunk}`` (at-least-once). False: a completed write
            counts as delivery (at-most-once across a connection loss).
        ack_timeout: Seconds to wait for an ack before reconnecting and resending.
        connect_timeout: Seconds for TCP connect + TLS + handshake.
        flush_interval: Longest a record waits for its batch to fill before it is sent.
            0.1 s: a flag is what an operator waits for, and flags are few, so
            batching them for Fluentd's usual 1 s only delays them.
        max_batch_records, max_batch_bytes: Bounds of one chunk (one Forward frame).
        mode: ``forward`` (``[tag, [[time, record], ...], option]``) or ``packed``
            (PackedForward: entries as one bin string).
        memory_buffer_records: Most records held in memory (queued, batching
            or in flight); past it the oldest chunks spill to ``spool_dir``.
        spool_dir: Directory for spilled and unsent-at-stop chunks; None keeps
            everything in memory (then ``send`` blocks when memory is full, and
            data unsent at stop is lost and counted).
        spool_max_bytes: Bound on the bytes of spool files.
        overflow_policy: What ``send`` does when memory and spool are both
            full: ``block`` (default: the caller waits, backpressure) or
            ``drop`` (the new record is dropped, counted and logged).
        backoff_initial, backoff_max: Reconnect delay bounds in seconds; the
            delay doubles per failure and is jittered down to half.
    """

    host: str = "127.0.0.1"
    port: int = 24224
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_verify: bool = True
    tls_server_hostname: str | None = None
    shared_key: str | None = None
    self_hostname: str = field(default_factory=socket.gethostname)
    username: str = ""
    password: str = ""
    require_ack: bool = True
    ack_timeout: float = 30.0
    connect_timeout: float = 10.0
    flush_interval: float = 0.1
    max_batch_records: int = 1000
    max_batch_bytes: int = 1 * _MIB
    mode: UpstreamMode = "forward"
    memory_buffer_records: int = 10_000
    spool_dir: Path | None = None
    spool_max_bytes: int = 256 * _MIB
    overflow_policy: OverflowPolicy = "block"
    backoff_initial: float = 0.5
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("upstream.host", self.host, "a non-empty host name or address")
        if not_int(self.port) or not 1 <= self.port <= 65535:
            raise ConfigError("upstream.port", self.port, "an integer in 1..65535")
        for name in ("tls", "tls_verify", "require_ack"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"upstream.{name}", getattr(self, name), "true or false")
        for name in ("tls_ca_file", "tls_cert_file", "tls_key_file", "spool_dir"):
            value = getattr(self, name)
            if isinstance(value, str):  # accept str paths from code, store Path
                object.__setattr__(self, name, Path(value))
            elif value is not None and not isinstance(value, Path):
                raise ConfigError(f"upstream.{name}", value, "a path or null")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError(
                "upstream.tls_key_file", self.tls_key_file, "set together with tls_cert_file"
            )
        if not self.tls:
            for name in ("tls_ca_file", "tls_cert_file", "tls_server_hostname"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"upstream.{name}", getattr(self, name), "only with tls=true")
        for name in ("self_hostname", "username", "password"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"upstream.{name}", getattr(self, name), "a string")
        if self.shared_key is not None and not isinstance(self.shared_key, str):
            raise ConfigError("upstream.shared_key", "<hidden>", "a string or null")
        if self.shared_key is not None and not self.self_hostname:
            raise ConfigError("upstream.self_hostname", self.self_hostname, "non-empty")
        if (self.username or self.password) and self.shared_key is None:
            # As in Fluent Bit: user auth only exists inside the shared-key handshake.
            raise ConfigError("upstream.username", self.username, "only with a shared_key")
        for name in ("ack_timeout", "connect_timeout", "flush_interval", "backoff_initial"):
            value = getattr(self, name)
            if not_finite_number(value) or value <= 0:
                raise ConfigError(f"upstream.{name}", value, "a positive number of seconds")
        if not_finite_number(self.backoff_max) or self.backoff_max < self.backoff_initial:
            raise ConfigError("upstream.backoff_max", self.backoff_max, ">= backoff_initial")
        if not_int(self.max_batch_records) or self.max_batch_records < 1:
            raise ConfigError("upstream.max_batch_records", self.max_batch_records, ">= 1")
        if not_int(self.max_batch_bytes) or not 1024 <= self.max_batch_bytes <= (
            _RECEIVER_FRAME_LIMIT // 2
        ):
            raise ConfigError(
                "upstream.max_batch_bytes",
                self.max_batch_bytes,
                f"an integer in 1024..{_RECEIVER_FRAME_LIMIT // 2} (receivers cap frames)",
            )
        if self.mode not in ("forward", "packed"):
            raise ConfigError("upstream.mode", self.mode, "'forward' or 'packed'")
        if not_int(self.memory_buffer_records) or (
            self.memory_buffer_records < self.max_batch_records
        ):
            raise ConfigError(
                "upstream.memory_buffer_records",
                self.memory_buffer_records,
                f">= max_batch_records ({self.max_batch_records})",
            )
        if not_int(self.spool_max_bytes) or self.spool_max_bytes < self.max_batch_bytes:
            raise ConfigError(
                "upstream.spool_max_bytes",
                self.spool_max_bytes,
                f">= max_batch_bytes ({self.max_batch_bytes})",
            )
        if self.overflow_policy not in ("block", "drop"):
            raise ConfigError("upstream.overflow_policy", self.overflow_policy, "'block' or 'drop'")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings); the shared key and password are included."""
        out = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpstreamConfig:
        """Build from a TOML/JSON table; unknown keys are a :class:`ConfigError`."""
        reject_unknown("upstream", data, cls)
        return cls(**dict(data))
