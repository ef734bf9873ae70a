"""``logsieve serve`` settings: one TOML file, the environment and flags, merged once.

Precedence, per key: flags > environment > file > defaults. The file has five tables,
each validated by its own frozen dataclass (unknown keys are errors)::

    [server]      # ServerConfig: where logsieve listens (Forward in), metrics endpoint
    port = 24224
    shared_key = "secret"
    metrics_port = 2021

    [upstream]    # UpstreamConfig: where flags go (a Fluentd / Fluent Bit in_forward)
    host = "fluentd.logging"
    port = 24224
    spool_dir = "/var/lib/logsieve/spool"

    [pipeline]    # PipelineConfig: batching, backend, what is sent
    batch_size = 256
    every_verdict = false

    [durability]  # DurabilityConfig: the write-ahead log (acked = on disk)
    dir = "/var/lib/logsieve/wal"

    [cluster]     # ClusterConfig: scale-out over NATS JetStream (unset: one process)
    nats_url = "nats://nats:4222"

Environment: ``LOGSIEVE_<TABLE>_<KEY>`` for any scalar key, e.g.
``LOGSIEVE_UPSTREAM_HOST=fluentd``, ``LOGSIEVE_SERVER_SHARED_KEY=…``,
``LOGSIEVE_PIPELINE_BATCH_SIZE=128``. Values are read as the field's type (numbers,
``true``/``false``, comma-separated lists; strings as they are); an unknown key under
one of the five prefixes is an error (other ``LOGSIEVE_*`` variables are not ours).
Nested tables (``server.limits``, ``server.users``) come from the file only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logsieve.config_file import read_tables
from logsieve.errors import ConfigError

from .cluster.cluster_config import ClusterConfig
from .pipeline_config import PipelineConfig
from .server_config import ServerConfig
from .upstream_config import UpstreamConfig
from .wal_config import DurabilityConfig

__all__ = ["ENV_PREFIX", "ServeSettings", "load_serve_settings", "parse_hostport"]

ENV_PREFIX = "LOGSIEVE_"
_TABLES: dict[str, type] = {
    "server": ServerConfig,
    "upstream": UpstreamConfig,
    "pipeline": PipelineConfig,
    "durability": DurabilityConfig,
    "cluster": ClusterConfig,
}
_NOT_FROM_ENV = {"limits", "users"}


@dataclass(frozen=True)
class ServeSettings:
    """Everything ``serve`` needs besides the bundle."""

    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    upstream: UpstreamConfig = dataclasses.field(default_factory=UpstreamConfig)
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    durability: DurabilityConfig = dataclasses.field(default_factory=DurabilityConfig)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        # Flags sent to our own listener would come back as input and loop forever.
        # (Not in the scale-out mode: an ingress sends nothing upstream, a worker does
        # not listen.)
        loopback = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"}
        up, srv = self.upstream, self.server
        if self.cluster.enabled:
            return
        if up.port == srv.port and up.host in loopback and srv.host in loopback | {up.host}:
            raise ConfigError(
                "upstream.port",
                up.port,
                f"not logsieve's own listen port {srv.host}:{srv.port} (flags would loop back)",
            )


def parse_hostport(name: str, value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) → ``(host, port)``; ConfigError naming ``name``."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(name, value, "host:port, e.g. 127.0.0.1:24224")
    return host, int(port)


def load_serve_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> ServeSettings:
    """Merge file, environment and flag overrides (``{"server": {"port": 1}}``) and validate.

    A ``path`` that does not exist is an error, never a silent default.
    """
    tables: dict[str, dict[str, Any]] = {name: {} for name in _TABLES}
    if path is not None:
        for name, table in _read_file(path).items():
            tables[name].update(table)
    for name, table in _from_env(env or {}).items():
        tables[name].update(table)
    for name, given in (overrides or {}).items():
        if name not in tables:
            raise ConfigError(name, given, f"one of {', '.join(_TABLES)}")
        tables[name].update({k: v for k, v in given.items() if v is not None})
    try:
        return ServeSettings(
            server=ServerConfig.from_dict(tables["server"]),
            upstream=UpstreamConfig.from_dict(tables["upstream"]),
            pipeline=PipelineConfig.from_dict(tables["pipeline"]),
            durability=DurabilityConfig.from_dict(tables["durability"]),
            cluster=ClusterConfig.from_dict(tables["cluster"]),
        )
    except TypeError as exc:  # e.g. a limits table with a wrong shape
        raise ConfigError("config", str(path), f"valid settings ({exc})") from None


def _read_file(path: Path) -> dict[str, dict[str, Any]]:
    # The same reader as every --config: a [log] table here is refused, naming the
    # command it belongs to (serving takes its log settings from the bundle).
    return read_tables(path, tuple(_TABLES))


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for var, raw in env.items():
        for name, cls in _TABLES.items():
            prefix = f"{ENV_PREFIX}{name.upper()}_"
            if not var.startswith(prefix):
                continue
            key = var[len(prefix) :].lower()
            fields = {f.name: f for f in dataclasses.fields(cls)}
            if key not in fields or key in _NOT_FROM_ENV:
                settable = sorted(set(fields) - _NOT_FROM_ENV)
                raise ConfigError(var, raw, f"{prefix}<KEY> with KEY one of {settable}")
            out.setdefault(name, {})[key] = _env_value(var, raw, str(fields[key].type))
    return out


def _env_value(var: str, raw: str, annotation: str) -> Any:
    """Read ``raw`` as the field's annotated type (annotations are strings here)."""
    optional = "None" in annotation
    if optional and raw.strip().lower() in ("", "none", "null"):
        return None
    kind = annotation.replace("| None", "").strip()
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(var, raw, "true or false")
    if kind in ("int", "float"):
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError:
            raise ConfigError(var, raw, f"a number ({kind})") from None
    return raw  # str, Path, and the Literal-typed enums: validated by the dataclass
