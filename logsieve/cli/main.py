"""The ``logsieve`` click group; the command modules' commands are added to it here."""

from __future__ import annotations

import logging
from typing import Any

import click

from logsieve import __version__
from logsieve.cli import cluster, engine, logs, model, serve
from logsieve.errors import LogsieveError

__all__ = ["Group", "main"]


class Group(click.Group):
    """Turns our domain errors into clean CLI errors, for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LogsieveError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="logsieve")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Log anomaly detection inside the log pipeline.

    \b
    Example:
      logsieve demo
      logsieve templates --format hdfs HDFS_2k.log
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


for _module in (logs, model, engine, serve, cluster):
    for _command in _module.COMMANDS:
        main.add_command(_command)
