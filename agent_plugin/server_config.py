"""Settings of the Forward server's network layer, one frozen dataclass.

Loading them from TOML, environment or flags happens at the CLI edge; this
module only defines and validates them. :meth:`ServerConfig.from_dict` takes
the plain-table form (unknown keys are errors, nested ``limits`` and ``users``
tables allowed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from logsieve.config import reject_unknown
from logsieve.errors import ConfigError

from .forward import ForwardLimits, SecurityConfig

__all__ = ["ServerConfig"]

_SECTION = "server"


def _check_port(name: str, value: object) -> None:
    # 0 asks the OS for a free port (tests); bool is an int subclass, reject it.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{_SECTION}.{name}", value, "an integer port in 0..65535")


def _check_seconds(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        allowed = "a positive number of seconds" + (" or None" if optional else "")
        raise ConfigError(f"{_SECTION}.{name}", value, allowed)


@dataclass(frozen=True)
class ServerConfig:
    """How the Forward server listens, authenticates and bounds its peers.

    Attributes:
        host: Listen address for TCP and the UDP heartbeat. ``0.0.0.0`` because
            the server exists to receive from agents on *other* hosts (a Fluent
            Bit DaemonSet, Fluentd forwarders); Fluent Bit's and Fluentd's
            in_forward bind all interfaces by default too, and a loopback
            default would silently receive nothing in a container. Restrict
            access with ``shared_key``/TLS and the network, or set
            ``127.0.0.1`` for a same-host sidecar.
        port: TCP and UDP port (24224, the Forward default; 0 = any free port).
        tls_cert, tls_key: PEM server certificate and key; both or neither.
        tls_ca: PEM CA bundle; when set, clients must present a certificate
            signed by it (mutual TLS).
        shared_key: Enables the HELO/PING/PONG handshake (an empty string is a
            valid key, like Fluent Bit's ``empty_shared_key``); None disables it.
        users: username -> password for user auth (needs ``shared_key``).
        self_hostname: Sent in the PONG; must differ from every client's own
            name (Fluentd's client rejects its own). Fluent Bit's client
            default is ``localhost``, hence not that.
        max_connections: Open TCP connections allowed; extra ones are closed
            at once (the client retries). Fluent Bit keeps 2 workers' worth
            of keepalive connections per node, so this is a generous cap.
        max_connections_per_peer: Open TCP connections allowed from one
            remote IP address, so one host (a hostile or runaway client)
            cannot take every slot; extra ones are closed at once. An agent
            opens a handful; raise it when many clients reach logsieve
            through one NAT or proxy address. A value >= max_connections
            turns it off.
        idle_timeout: Seconds without data before a connection is closed
            quietly (None: never). Time spent waiting on the sink or on a slow
            reader of our acks does not count as idle.
        handshake_timeout: Seconds from accept within which a client must
            complete the shared-key handshake (its PING must arrive and
            pass), and the TLS handshake when TLS is on; None: no deadline.
            A real client answers the HELO at once.
        frame_timeout: Seconds within which a request, once its first byte
            arrived, must arrive whole (None: no deadline). The idle timer
            restarts on every byte, so without it a peer sending one byte
            every few seconds would hold its connection (and its buffer)
            forever. Time the server spends not reading (waiting on the
            sink) does not count. The default leaves a 16 MiB request a
            60 s transfer, i.e. about 2 Mbit/s.
        limits: Per-request decoding bounds (frame, decompressed size, ...).
        max_buffered_bytes: Bytes of unfinished requests held across all
            connections (each connection holds at most ``limits.max_frame_bytes``,
            about twice that in memory). Past it the connection holding the most
            is closed (reason ``overload``; a real client resends), so
            ``max_connections`` peers each sending most of a maximal request
            cannot add up to gigabytes. At least ``limits.max_frame_bytes``.
        write_high_water: Bytes of unsent replies (acks, HELO/PONG) at which
            the connection stops reading, so a client that never reads its
            acks cannot make us buffer without bound.
        metrics_host, metrics_port: The /metrics and /health endpoint; loopback
            by default because it is unauthenticated.
        udp_heartbeat: Answer Fluentd's ``heartbeat_type udp`` on the same port.
    """

    host: str = "0.0.0.0"
    port: int = 24224
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    shared_key: str | None = None
    users: Mapping[str, str] = field(default_factory=dict)
    self_hostname: str = "logsieve"
    max_connections: int = 1024
    max_connections_per_peer: int = 64
    idle_timeout: float | None = 300.0
    handshake_timeout: float | None = 10.0
    frame_timeout: float | None = 60.0
    limits: ForwardLimits = field(default_factory=ForwardLimits)
    max_buffered_bytes: int = 256 * 1024 * 1024
    write_high_water: int = 64 * 1024
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 2021
    udp_heartbeat: bool = True

    def __post_init__(self) -> None:
        for name in ("host", "metrics_host"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{_SECTION}.{name}", value, "a non-empty host or IP address")
        _check_port("port", self.port)
        _check_port("metrics_port", self.metrics_port)
        for name in ("tls_cert", "tls_key", "tls_ca"):
            value = getattr(self, name)
            if isinstance(value, str) and value:
                object.__setattr__(self, name, Path(value))
            elif value is not None and not isinstance(value, Path):
                raise ConfigError(f"{_SECTION}.{name}", value, "a file path or None")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(
                f"{_SECTION}.tls_key" if self.tls_key is None else f"{_SECTION}.tls_cert",
                None,
                "tls_cert and tls_key must be set together",
            )
        if self.tls_ca is not None and self.tls_cert is None:
            raise ConfigError(f"{_SECTION}.tls_ca", self.tls_ca, "needs tls_cert and tls_key")
        if self.shared_key is not None and not isinstance(self.shared_key, str):
            raise ConfigError(f"{_SECTION}.shared_key", "<hidden>", "a string or None")
        if not isinstance(self.users, Mapping):
            raise ConfigError(f"{_SECTION}.users", "<hidden>", "a table of user = password")
        if self.users and self.shared_key is None:
            raise ConfigError(
                f"{_SECTION}.users", sorted(self.users), "needs shared_key (it may be empty)"
            )
        object.__setattr__(self, "users", MappingProxyType(dict(self.users)))
        for name in ("max_connections", "max_connections_per_peer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{_SECTION}.{name}", value, "a positive integer")
        for name in ("idle_timeout", "handshake_timeout", "frame_timeout"):
            _check_seconds(name, getattr(self, name), optional=True)
        if not isinstance(self.limits, ForwardLimits):
            raise ConfigError(f"{_SECTION}.limits", self.limits, "a ForwardLimits")
        if (
            isinstance(self.max_buffered_bytes, bool)
            or not isinstance(self.max_buffered_bytes, int)
            or self.max_buffered_bytes < self.limits.max_frame_bytes
        ):
            raise ConfigError(
                f"{_SECTION}.max_buffered_bytes",
                self.max_buffered_bytes,
                f"an integer >= limits.max_frame_bytes ({self.limits.max_frame_bytes})",
            )
        if (
            isinstance(self.write_high_water, bool)
            or not isinstance(self.write_high_water, int)
            or self.write_high_water < 1024
        ):
            raise ConfigError(
                f"{_SECTION}.write_high_water", self.write_high_water, "an integer >= 1024"
            )
        if not isinstance(self.udp_heartbeat, bool):
            raise ConfigError(f"{_SECTION}.udp_heartbeat", self.udp_heartbeat, "true or false")
        # Builds (and so validates) the handshake settings now, not on first accept.
        _ = self.security

    @property
    def tls(self) -> bool:
        """True when the listener speaks TLS."""
        return self.tls_cert is not None

    @property
    def security(self) -> SecurityConfig | None:
        """Handshake settings for the sans-IO connection, or None when off."""
        if self.shared_key is None:
            return None
        return SecurityConfig(self.self_hostname, self.shared_key, dict(self.users))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerConfig:
        """Build from a plain table; unknown keys (here or in ``limits``) are errors."""
        reject_unknown(_SECTION, data, cls)
        kwargs = dict(data)
        limits = kwargs.get("limits")
        if isinstance(limits, Mapping):
            reject_unknown(f"{_SECTION}.limits", limits, ForwardLimits)
            kwargs["limits"] = ForwardLimits(**limits)
        return cls(**kwargs)
