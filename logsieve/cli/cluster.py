"""Commands of the scale-out mode: ``worker`` (``serve --nats`` is the ingress).

Settings are the ``serve`` tables plus ``[cluster]`` (:mod:`logsieve.agent_plugin.
cluster.cluster_config`), merged and validated once by ``load_serve_settings``.
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

__all__ = ["COMMANDS", "run_ingress_command"]


def run_ingress_command(settings: Any, bundle: Any) -> None:
    """``serve --nats``: run the ingress until a signal (called by ``serve``)."""
    from logsieve.agent_plugin.cluster.run import run_ingress

    def ready(ingress: Any) -> None:
        click.echo(
            f"logsieve ingress on {settings.server.host}:{ingress.port} → JetStream "
            f"{settings.cluster.nats_url} stream {settings.cluster.stream} "
            f"({settings.cluster.partitions} partitions); metrics on "
            f"http://{settings.server.metrics_host}:{ingress.metrics_port}/metrics",
            err=True,
        )

    run_to_exit(run_ingress(settings, settings.cluster, bundle, ready=ready))


@click.command()
@bundle_option
@click.option("--nats", "nats_url", default=None, help="nats:// URL of JetStream.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML file with [upstream], [pipeline], [cluster] tables.",
)
@upstream_option
@metrics_option
@click.option("--name", default=None, help="This worker's name (unique) [<hostname>-<pid>].")
@backend_option
def worker(
    bundle_path: Path,
    nats_url: str | None,
    config_path: Path | None,
    upstream: str | None,
    metrics: str | None,
    name: str | None,
    backend: str | None,
) -> None:
    """Score records from JetStream partitions (scale-out mode), send flags upstream.

    Workers share the stream's partitions (a lease each, renewed every lease_ttl/3;
    at most ceil(partitions / workers) per worker), window and score their records as
    `serve` does, and ack a message once every window holding it has its verdict
    delivered or spooled. A killed worker's partitions move to the others after
    lease_ttl and their unacked messages are windowed again. SIGTERM gives the
    partitions back: closed windows are delivered and acked, open ones stay in the
    stream, whole, for the next owner.

    \b
    Example:
      logsieve worker --nats nats://127.0.0.1:4222 --bundle b --upstream fluentd:24224
      logsieve worker --nats nats://nats:4222 --bundle b --name w1 --metrics 0.0.0.0:2022
    """
    from logsieve.agent_plugin.cluster.run import run_worker
    from logsieve.agent_plugin.serve_config import load_serve_settings
    from logsieve.bundle import open_bundle

    server, up = serving_overrides(metrics, upstream)
    settings = load_serve_settings(
        config_path,
        os.environ,
        {
            "server": server,
            "upstream": up,
            "pipeline": {"backend": backend},
            "cluster": {"nats_url": nats_url, "worker_name": name},
        },
    )
    if not settings.cluster.enabled:
        raise click.UsageError("a worker needs --nats URL (or [cluster] nats_url)")
    bundle = open_bundle(bundle_path)

    def ready(w: Any) -> None:
        click.echo(
            f"logsieve worker {w.name} on {settings.cluster.nats_url} stream "
            f"{settings.cluster.stream}; flags to {settings.upstream.host}:"
            f"{settings.upstream.port}; metrics on http://{settings.server.metrics_host}:"
            f"{w.metrics_port}/metrics",
            err=True,
        )

    run_to_exit(run_worker(settings, settings.cluster, bundle, ready=ready))


COMMANDS = [worker]
