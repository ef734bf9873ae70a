"""Commands on log files: ``templates``, ``windows`` and ``synth``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from logsieve.cli.options import log_options, read_note

if TYPE_CHECKING:
    from logsieve.config import LogConfig

__all__ = ["COMMANDS"]


def _log_config(fmt: str, config_path: Path | None) -> LogConfig:
    from logsieve.config import load_log_config
    from logsieve.export.data.formats import default_log_config

    preset = default_log_config(fmt)
    return load_log_config(config_path, preset) if config_path else preset


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@log_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the template state JSON here.",
)
def templates(
    file: Path,
    fmt: str,
    pattern: str | None,
    time_format: str | None,
    config_path: Path | None,
    out: Path | None,
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

    config = _log_config(fmt, config_path)
    found = mine_file(file, fmt, config, pattern=pattern, time_format=time_format)
    rows = sorted(found.miner.templates, key=lambda t: (-t.count, t.id))
    click.echo(f"{len(rows)} templates from {found.miner.lines} lines ({read_note(found.stats)})")
    for t in rows:
        click.echo(f"T{t.id:<4d} {t.count:>8d}  {t.template}")
    if out is not None:
        out.write_text(json.dumps(found.state(), indent=1))
        click.echo(f"state written to {out}")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@log_options
@click.option("--limit", type=int, default=20, show_default=True, help="Windows to print (0: all).")
def windows(
    file: Path,
    fmt: str,
    pattern: str | None,
    time_format: str | None,
    config_path: Path | None,
    limit: int,
) -> None:
    """Cut a log file into windows (templates mined from the file) and print them.

    One line per window: key, first and last event time, lines, why it closed and the
    template ids in order (? = no template).

    \b
    Example:
      logsieve windows --format hdfs ../shared/data/hdfs/raw/HDFS_5k.log --limit 5
      logsieve windows --format bgl ../shared/data/bgl/raw/BGL_5000.log
    """
    from logsieve.export.data.offline import mine_file, window_file
    from logsieve.logs.templates import TemplateMatcher

    n = 0
    config = _log_config(fmt, config_path)
    # Mined here rather than inside window_file, so the read's counters (lines whose
    # time did not read sit at 0, the epoch) are reported below, not silently windowed.
    found = mine_file(file, fmt, config, pattern=pattern, time_format=time_format)
    matcher = TemplateMatcher.from_state(found.state())
    for w in window_file(
        file, fmt, config, pattern=pattern, time_format=time_format, matcher=matcher
    ):
        n += 1
        if limit and n > limit:
            continue
        ids = " ".join("?" if e.unknown else str(e.template_id) for e in w.items[:40])
        more = " …" if len(w.items) > 40 else ""
        click.echo(
            f"{w.key}\t{w.start:.0f}\t{w.end:.0f}\t{len(w.items)}\t{w.closed_by}\t{ids}{more}"
        )
    shown = f", {limit} shown" if limit and n > limit else ""
    click.echo(f"{n} windows ({read_note(found.stats)}{shown})", err=True)


@click.command()
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


COMMANDS = [templates, windows, synth]
