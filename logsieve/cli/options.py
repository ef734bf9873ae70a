"""Options shared by several commands, as composed decorators."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from logsieve.engine.base import BACKEND_CHOICES
from logsieve.export.data.formats import FORMATS

__all__ = [
    "BACKEND_CHOICES",
    "FORMATS",
    "backend_option",
    "bundle_option",
    "log_options",
    "metrics_option",
    "read_note",
    "run_to_exit",
    "serving_overrides",
    "upstream_option",
]

F = TypeVar("F", bound=Callable[..., Any])

bundle_option = click.option(
    "--bundle", "bundle_path", type=click.Path(exists=True, path_type=Path), required=True
)

# The serving commands' (serve, worker) shared flags.
upstream_option = click.option(
    "--upstream", default=None, help="host:port of the in_forward that gets flags."
)
metrics_option = click.option(
    "--metrics", default=None, help="host:port of /metrics and /health [127.0.0.1:2021]."
)
backend_option = click.option(
    "--backend", type=click.Choice(BACKEND_CHOICES), default=None, help="Engine backend [auto]."
)


def serving_overrides(
    metrics: str | None, upstream: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``[server]`` and ``[upstream]`` overrides that ``--metrics`` and ``--upstream``
    (``host:port`` each) make."""
    from logsieve.agent_plugin.serve_config import parse_hostport

    server: dict[str, Any] = {}
    if metrics is not None:
        server["metrics_host"], server["metrics_port"] = parse_hostport("--metrics", metrics)
    upstream_table: dict[str, Any] = {}
    if upstream is not None:
        upstream_table["host"], upstream_table["port"] = parse_hostport("--upstream", upstream)
    return server, upstream_table


def run_to_exit(main: Coroutine[Any, Any, int]) -> None:
    """Run a serving command until it returns; exit with its code unless that is 0."""
    import asyncio

    code = asyncio.run(main)
    sys.stderr.flush()
    if code:
        sys.exit(code)


def log_options(func: F) -> F:
    """Shared options: the input format, its line regex and a TOML log config."""
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="TOML file with a [log] table (masking, templates, windows): the keys it "
        "names override the format's preset, the rest stay.",
    )(func)
    func = click.option(
        "--pattern",
        default=None,
        help="For --format lines: regex with named groups time/host/text.",
    )(func)
    func = click.option(
        "--time-format",
        default=None,
        help="For --format lines: auto (default), epoch, epoch_ms, iso8601, syslog, hdfs, "
        "bgl, or a strptime format.",
    )(func)
    func = click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="hdfs",
        show_default=True,
        help="Log line format of FILE.",
    )(func)
    return func


def read_note(stats: Any) -> str:
    """``k=v`` for every non-zero counter of a read, or "all lines parsed"."""
    counts = {k: v for k, v in stats.as_dict().items() if v and k not in ("lines", "records")}
    return ", ".join(f"{k}={v}" for k, v in counts.items()) or "all lines parsed"
