"""The ``logsieve`` command line: a thin click group.

Each command parses its options, builds the frozen configs once, and calls one
library function, imported lazily inside the command so ``logsieve --help``
stays fast. Domain errors (:class:`~logsieve.errors.LogsieveError`) become a
one-line ``Error: ...`` and exit status 1 here, in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from logsieve import __version__
from logsieve.errors import LogsieveError

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("hdfs", "bgl", "thunderbird", "lines")


class _Group(click.Group):
    """Turns our domain errors into clean CLI errors, for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LogsieveError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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


def log_options(func: F) -> F:
    """Shared options: the input format, its line regex and a TOML log config."""
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="TOML file with a [log] table (masking, templates, windows). Default: built-in.",
    )(func)
    func = click.option(
        "--pattern",
        default=None,
        help="For --format lines: regex with named groups time/host/text.",
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


def _log_config(fmt: str, config_path: Path | None) -> Any:
    from logsieve.config import load_log_config
    from logsieve.export.data.formats import default_log_config

    return load_log_config(config_path) if config_path else default_log_config(fmt)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@log_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the template state JSON here.",
)
def templates(
    file: Path, fmt: str, pattern: str | None, config_path: Path | None, out: Path | None
) -> None:
    """Mine the templates of a log file and list them, most frequent first.

    \b
    Example:
      logsieve templates --format hdfs ../shared/data/hdfs/raw/HDFS_2k.log
      logsieve templates --format lines \\
          --pattern '(?P<time>\\S+) (?P<host>\\S+) (?P<text>.*)' app.log
    """
    import json

    from logsieve.export.data.offline import mine_file

    found = mine_file(file, fmt, _log_config(fmt, config_path), pattern=pattern)
    rows = sorted(found.miner.templates, key=lambda t: (-t.count, t.id))
    click.echo(f"{len(rows)} templates from {found.miner.lines} lines ({_read_note(found.stats)})")
    for t in rows:
        click.echo(f"T{t.id:<4d} {t.count:>8d}  {t.template}")
    if out is not None:
        out.write_text(json.dumps(found.state(), indent=1))
        click.echo(f"state written to {out}")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@log_options
@click.option("--limit", type=int, default=20, show_default=True, help="Windows to print (0: all).")
def windows(
    file: Path, fmt: str, pattern: str | None, config_path: Path | None, limit: int
) -> None:
    """Cut a log file into windows (templates mined from the file) and print them.

    One line per window: key, first and last event time, lines, why it closed and the
    template ids in order (? = no template).

    \b
    Example:
      logsieve windows --format hdfs ../shared/data/hdfs/raw/HDFS_5k.log --limit 5
      logsieve windows --format bgl ../shared/data/bgl/raw/BGL_5000.log
    """
    from logsieve.export.data.offline import window_file

    n = 0
    for w in window_file(file, fmt, _log_config(fmt, config_path), pattern=pattern):
        n += 1
        if limit and n > limit:
            continue
        ids = " ".join("?" if e.unknown else str(e.template_id) for e in w.items[:40])
        more = " …" if len(w.items) > 40 else ""
        click.echo(
            f"{w.key}\t{w.start:.0f}\t{w.end:.0f}\t{len(w.items)}\t{w.closed_by}\t{ids}{more}"
        )
    click.echo(f"{n} windows" + (f" ({limit} shown)" if limit and n > limit else ""), err=True)


@main.command()
@click.argument("kind", type=click.Choice(["hdfs", "bgl"]))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--size", type=int, default=1000, show_default=True, help="Blocks (hdfs) or hosts (bgl)."
)
@click.option(
    "--duration", type=float, default=3600.0, show_default=True, help="Seconds of log (bgl)."
)
@click.option("--anomaly-rate", type=float, default=0.05, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--labels", type=click.Path(dir_okay=False, path_type=Path), help="Also write ground truth CSV."
)
def synth(
    kind: str,
    out: Path,
    size: int,
    duration: float,
    anomaly_rate: float,
    seed: int,
    labels: Path | None,
) -> None:
    """Write synthetic logs (our own generator) with labelled injected anomalies.

    \b
    Example:
      logsieve synth hdfs /tmp/hdfs.log --size 500 --labels /tmp/hdfs_labels.csv
      logsieve synth bgl /tmp/bgl.log --size 20 --duration 7200
    """
    from logsieve.export.data.synth import generate_bgl, generate_hdfs, write_synth

    if kind == "hdfs":
        log = generate_hdfs(size, anomaly_rate=anomaly_rate, seed=seed)
    else:
        log = generate_bgl(size, duration, anomaly_rate=anomaly_rate, seed=seed)
    write_synth(log, out, labels_path=labels)
    click.echo(f"{len(log.lines)} lines, {sum(log.labels.values())} anomalous keys -> {out}")


@main.command()
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

    run_demo(click.echo, cache=cache, seed=seed)


def _read_note(stats: Any) -> str:
    counts = {k: v for k, v in stats.as_dict().items() if v and k not in ("lines", "records")}
    return ", ".join(f"{k}={v}" for k, v in counts.items()) or "all lines parsed"


# Detector commands live in their own module; importing it registers them on `main`.
from logsieve import cli_engine as _cli_engine  # noqa: E402,F401
from logsieve import cli_model as _cli_model  # noqa: E402,F401
from logsieve import cli_serve as _cli_serve  # noqa: E402,F401
