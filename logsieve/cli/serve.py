"""Commands of the serving stage: ``serve``, and ``demo`` (what ``make run`` runs).

train → bundle → export → build-engine → **serve**. Settings are merged and validated
once, by :func:`logsieve.agent_plugin.serve_config.load_serve_settings`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from logsieve.cli.options import (
    backend_option,
    bundle_option,
    metrics_option,
    run_to_exit,
    serving_overrides,
    upstream_option,
)

__all__ = ["COMMANDS"]


@click.command()
@bundle_option
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML file with [server], [upstream] and [pipeline] tables.",
)
@click.option("--listen", default=None, help="host:port to receive Forward on [0.0.0.0:24224].")
@upstream_option
@click.option("--shared-key", default=None, help="Require this shared key from clients.")
@click.option("--tls-cert", type=click.Path(path_type=Path), default=None, help="PEM cert (TLS).")
@click.option("--tls-key", type=click.Path(path_type=Path), default=None, help="PEM key (TLS).")
@metrics_option
@backend_option
@click.option(
    "--nats",
    "nats_url",
    default=None,
    help="Scale-out ingress: publish to JetStream at this nats:// URL instead of scoring "
    "here (`logsieve worker` scores).",
)
def serve(
    bundle_path: Path,
    config_path: Path | None,
    listen: str | None,
    upstream: str | None,
    shared_key: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    metrics: str | None,
    backend: str | None,
    nats_url: str | None,
) -> None:
    """Serve a bundle: receive logs over Forward, send anomaly flags upstream.

    Point Fluent Bit's or Fluentd's `forward` output at --listen; flags (and, if
    configured, every verdict or the enriched records) go to the in_forward at
    --upstream on the tag `logsieve.flag`. Settings: flags > LOGSIEVE_<TABLE>_<KEY>
    environment variables > the --config file > defaults. SIGTERM or SIGINT drains
    connections, flushes open windows through the engine, waits for upstream acks
    and exits 0; a second signal exits at once. SIGHUP reloads the bundle from
    --bundle (after `logsieve update` or `rollback`) without losing a window; if it
    cannot be loaded, the old model keeps serving.

    With --nats (or [cluster] nats_url) it is a scale-out ingress instead: each frame
    is published to JetStream by window-key partition and acked once JetStream
    acked it; `logsieve worker` processes score (README: Scale-out with NATS).

    \b
    Example:
      logsieve serve --bundle bundles/hdfs-raw --upstream fluentd:24224
      logsieve serve --bundle bundles/hdfs-raw --nats nats://127.0.0.1:4222
      logsieve serve --bundle bundles/hdfs-raw --config serve.toml --listen 0.0.0.0:24224
      LOGSIEVE_UPSTREAM_SPOOL_DIR=/var/lib/logsieve logsieve serve --bundle b
    """
    from logsieve.agent_plugin.app import run_service
    from logsieve.agent_plugin.serve_config import load_serve_settings, parse_hostport
    from logsieve.bundle import open_bundle

    server, up = serving_overrides(metrics, upstream)
    server["shared_key"] = shared_key
    if listen is not None:
        server["host"], server["port"] = parse_hostport("--listen", listen)
    if tls_cert is not None or tls_key is not None:
        server["tls_cert"], server["tls_key"] = tls_cert, tls_key
    settings = load_serve_settings(
        config_path,
        os.environ,
        {
            "server": server,
            "upstream": up,
            "pipeline": {"backend": backend},
            "cluster": {"nats_url": nats_url},
        },
    )
    bundle = open_bundle(bundle_path)
    if settings.cluster.enabled:
        from logsieve.cli.cluster import run_ingress_command

        run_ingress_command(settings, bundle)
        return

    def ready(service: Any) -> None:
        click.echo(
            f"logsieve serving {bundle.path} ({service.engine.info.label}) on "
            f"{settings.server.host}:{service.port}; flags to "
            f"{settings.upstream.host}:{settings.upstream.port}; metrics on "
            f"http://{settings.server.metrics_host}:{service.metrics_port}/metrics",
            err=True,
        )

    run_to_exit(run_service(settings, bundle, ready=ready))


@click.command()
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".cache"),
    show_default=True,
    help="Where the demo bundle is trained once and kept.",
)
def demo(seed: int, cache: Path) -> None:
    """Serve the demo model and replay generated logs through it (what make run runs).

    Starts logsieve and an upstream in_forward on free 127.0.0.1 ports, replays
    HDFS-like logs with injected anomalies through the fluent-logger client, prints
    the flags that come back upstream with their evidence, then stops cleanly. The
    first run trains a small FastLogAD model (about a minute) and caches the bundle.

    \b
    Example:
      logsieve demo --seed 3
    """
    from logsieve.agent_plugin.demo import run_demo
    from logsieve.export.demo import demo_bundle, demo_traffic

    bundle = demo_bundle(cache, click.echo, seed=seed)
    traffic = demo_traffic(seed)
    run_demo(bundle, traffic.events, traffic.n_keys, traffic.kinds, traffic.kind_names,
             click.echo)  # fmt: skip


COMMANDS = [serve, demo]
