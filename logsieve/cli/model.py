"""Commands of the detector: ``train``, ``eval`` and ``score``.

train → **bundle** → export → build-engine → serve; ``eval`` and ``score`` read a
bundle. Each command calls one library function of ``logsieve.export`` and prints.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from logsieve.cli.options import BACKEND_CHOICES, FORMATS
from logsieve.export.data.prepare import DATASETS

__all__ = ["COMMANDS"]

# The harness's method names (logsieve.export.evaluation.methods.METHODS, which imports
# torch: written here so --help stays fast; tests/export/test_harness.py keeps them equal).
METHODS = ("fastlogad-mlm", "fastlogad-random", "adalog", "deeplog", "logbert", "iforest")

_SPLIT_HELP = (
    "Split (chronological, the FastLogAD protocol): the first --train-n normal windows "
    "train, the last --val-fraction of them calibrate the threshold, everything else is "
    "test. hdfs-sessions: DATA is a folder like ../shared/data/hdfs/sessions; train_normal "
    "trains (its last 10%% calibrates), dev_normal + dev_abnormal test. bgl-windows: DATA "
    "is train.jsonl or its folder; default --train-n 2000. Raw logs: default --train-n "
    "5000; hdfs labels come from <log>.block_labels.csv or anomaly_label.csv beside it."
)


_TIME_FORMAT_HELP = (
    "For lines: how the pattern's time group reads: auto (default: detected from the "
    "first lines), epoch, epoch_ms, iso8601, syslog, hdfs, bgl, or a strptime format. "
    "Stored in the bundle."
)


def _data_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--dataset", type=click.Choice(DATASETS), required=True, help=_SPLIT_HELP),
            click.option(
                "--data", "data_path", type=click.Path(exists=True, path_type=Path), required=True
            ),
            click.option("--train-n", type=int, default=None, help="Normal windows to train on."),
            click.option("--val-fraction", type=float, default=0.1, show_default=True),
            click.option("--labels", type=click.Path(exists=True, path_type=Path), default=None),
            click.option(
                "--pattern",
                default=None,
                help="For --dataset lines: regex with named groups time/host/text "
                "(or [log.line_format] in --config). Stored in the bundle.",
            ),
        ]
    ):
        func = option(func)
    return func


@click.command()
@_data_options
@click.option(
    "--detector",
    type=click.Choice(["fastlogad", "adalog"]),
    default="fastlogad",
    show_default=True,
    help="adalog: per-line MLM detector on the raw lines of the same split (raw-line data).",
)
@click.option("--generator", type=click.Choice(["random", "mlm"]), default="mlm", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--rtd-epochs", type=int, default=None, help="Phase 1 epochs (MLM+RTD).")
@click.option("--hst-epochs", type=int, default=None, help="Phase 2 epochs (HST, max).")
@click.option("--lr", type=float, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=None, help="adalog: MLM epochs (default 10).")
@click.option(
    "--quantile", type=float, default=None, help="Threshold quantile (fastlogad 0.99, adalog 0.9)."
)
@click.option("--d-model", type=int, default=None, help="Default: fastlogad 256, adalog 128.")
@click.option("--layers", type=int, default=None, help="Default: fastlogad 4, adalog 2.")
@click.option("--threads", type=int, default=None, help="torch threads (default: all cores).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--time-format", default=None, help=_TIME_FORMAT_HELP)
@click.option(
    "--no-export",
    "no_export",
    is_flag=True,
    help="Skip writing program.pt2/model.onnx (logsieve export does it later).",
)
def train(
    detector: str, data_path: Path, out: Path, config_path: Path | None, no_export: bool,
    labels: Path | None, layers: int | None, **opts: Any,
) -> None:  # fmt: skip
    """Train FastLogAD (or ADALog) on normal windows, calibrate the threshold, write a bundle.

    No anomaly label is read: training and calibration see only the normal
    training windows (labels stripped). --detector adalog trains on the lines of
    those windows (raw-line datasets: hdfs, bgl, thunderbird, lines).

    \b
    Example:
      logsieve train --dataset hdfs-sessions --data ../shared/data/hdfs/sessions \\
          --generator mlm --out bundles/hdfs-mlm
      logsieve train --detector adalog --dataset bgl \\
          --data ../shared/data/bgl/raw/BGL_2k.log --out bundles/bgl-adalog
      logsieve train --dataset lines --data app.log --out bundles/app \\
          --pattern '(?P<time>\\S+ \\S+) (?P<host>\\S+) (?P<text>.*)'
    """
    from logsieve.config import load_log_config
    from logsieve.export.training import TrainRequest, train_detector

    request = TrainRequest(
        detector=detector,  # type: ignore[arg-type]  # click.Choice checked it
        data_path=data_path,
        out=out,
        log_config=load_log_config(config_path) if config_path else None,
        labels_path=labels,
        layers=layers,
        export=not no_export,
        **opts,
    )
    train_detector(request, progress=lambda line: click.echo(line, err=True), report=click.echo)


@click.command(name="eval")
@click.option("--bundle", "bundle_path", type=click.Path(exists=True, path_type=Path),
              help="Evaluate this trained bundle (or use --method).")  # fmt: skip
@click.option("--method", "methods", type=click.Choice(METHODS), multiple=True,
              help="Fit and evaluate this method on the split (repeatable).")  # fmt: skip
@_data_options
@click.option("--seeds", type=int, default=1, show_default=True, help="--method: seeds 0..N-1.")
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="--method: write score, ROC/PR and evidence PNGs here.")  # fmt: skip
@click.option("--tiny", is_flag=True, help="--method: tiny models, 1-2 epochs (a smoke run).")
@click.option("--epochs", type=int, default=None, help="--method: cap every method's epochs.")
@click.option("--threads", type=int, default=None, help="torch threads (default: all cores).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="--method: also write the Markdown table to this file.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--method: the per-seed rows).")
@click.option("--batch-size", type=int, default=256, show_default=True)
def eval_(
    bundle_path: Path | None, methods: tuple[str, ...], as_json: bool, batch_size: int,
    dataset: str, data_path: Path, seeds: int, plots: Path | None, out: Path | None,
    labels: Path | None, tiny: bool, epochs: int | None, threads: int | None, **split: Any,
) -> None:  # fmt: skip
    """Evaluate a bundle, or fit and evaluate methods, on a dataset's test split.

    --bundle: the bundle's threshold on the test windows as they are and with identical
    windows counted once (use the split options it was trained with: its manifest's
    data.split). --method (repeatable): fits each method per seed on the same split,
    thresholds label-free (normal validation); baselines add oracle rows, labelled.
    Prints P, R, F1, ROC-AUC, PR-AUC, FPR (for hdfs-sessions also projected to HDFS's
    real class ratio); --method prints mean ± std over seeds as a Markdown table.

    \b
    Example:
      logsieve eval --bundle bundles/hdfs-mlm --dataset hdfs-sessions \\
          --data ../shared/data/hdfs/sessions --json
      logsieve eval --method iforest --method deeplog --seeds 3 --dataset hdfs-sessions \\
          --data ../shared/data/hdfs/sessions --plots plots/
    """
    if (bundle_path is None) == (not methods):
        raise click.UsageError("give either --bundle or --method")
    if methods:
        from logsieve.export.evaluation.harness import EvalOptions, run

        options = EvalOptions(labels_path=labels, tiny=tiny, epochs=epochs, threads=threads,
                              batch_size=batch_size, **split)  # fmt: skip
        report = run(methods, dataset, data_path, seeds, options, plots=plots)
        if out is not None:
            out.write_text(report.table + "\n", encoding="utf-8")
        click.echo(json.dumps(report.rows, indent=1) if as_json else report.table)
        for path in report.plots:
            click.echo(f"wrote {path}", err=True)
        return
    if plots is not None:
        raise click.UsageError("--plots needs --method (bundle mode prints figures only)")
    from logsieve.export.evaluation.bundle_eval import evaluate_bundle, flat_report, format_report

    assert bundle_path is not None
    result = evaluate_bundle(bundle_path, dataset, data_path, labels_path=labels,
                             batch_size=batch_size, threads=threads, **split)  # fmt: skip
    click.echo(json.dumps(flat_report(result), indent=1) if as_json else format_report(result))


@click.command()
@click.option(
    "--bundle", "bundle_path", type=click.Path(exists=True, path_type=Path), required=True
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Line format (default: the bundle's training format).")  # fmt: skip
@click.option("--pattern", default=None, help="For lines: default the bundle's pattern.")
@click.option("--time-format", default=None, help="For lines: default the bundle's.")
@click.option("--top", type=int, default=3, show_default=True, help="Evidence lines per flag.")
@click.option("--all", "show_all", is_flag=True, help="Print every window's verdict.")
@click.option(
    "--backend",
    type=click.Choice(BACKEND_CHOICES),
    default="auto",
    show_default=True,
    help="Engine for an exported bundle (unexported bundles run model.pt eagerly).",
)
def score(
    bundle_path: Path,
    file: Path,
    fmt: str | None,
    pattern: str | None,
    time_format: str | None,
    top: int,
    show_all: bool,
    backend: str,
) -> None:
    """Score a log file offline and print flagged windows (or lines) with evidence.

    FastLogAD evidence: the lines whose tokens the discriminator finds most likely
    replaced. ADALog bundles score every line (eager model; --backend is ignored) and
    print the flagged lines with their --top least expected tokens (NLL in nats).

    \b
    Example:
      logsieve score --bundle bundles/hdfs-raw ../shared/data/hdfs/raw/HDFS_5k.log
      logsieve score --bundle bundles/bgl-adalog ../shared/data/bgl/raw/BGL_2k.log
    """
    from logsieve.bundle import open_bundle

    bundle = open_bundle(bundle_path)
    if bundle.detector == "adalog":
        _score_lines(bundle, file, fmt or str(bundle.manifest.get("format") or "lines"), top,
                     show_all)  # fmt: skip
        return
    from logsieve.export.fastlogad.scoring import score_file

    n = flagged = 0
    stored = bundle.line_format
    if fmt is None and stored is None:
        fmt = str(bundle.manifest.get("format") or "hdfs")
    from logsieve.cli.options import read_note
    from logsieve.export.data.lines import ReadStats

    stats = ReadStats()
    for sw in score_file(bundle, file, fmt, pattern=pattern, time_format=time_format,
                         backend=backend, stats=stats):  # fmt: skip
        n += 1
        if not sw.anomaly:
            if show_all:
                click.echo(f"ok   {sw.key} score {sw.score:.4f}")
            continue
        flagged += 1
        unknown = sw.unknown_lines
        click.echo(
            f"FLAG {sw.key}  {_ts(sw.start)} .. {_ts(sw.end)}  {len(sw.lines)} lines  "
            f"score {sw.score:.4f} > {sw.threshold:.4f}"
            + (f"  ({unknown} unknown lines)" if unknown else "")
        )
        for i in sw.evidence(top):
            line, template = sw.lines[i], sw.templates[i]
            click.echo(
                f"    {sw.token_probs[i]:5.2f}  {line}"
                + ("" if template == line else f"   [{template}]")
            )
    click.echo(f"{flagged} of {n} windows flagged ({read_note(stats)})", err=True)
    if stats.first_bad is not None:
        click.echo(f"first line that did not parse: {stats.first_bad}", err=True)


def _score_lines(bundle: Any, file: Path, fmt: str, top: int, show_all: bool) -> None:
    from logsieve.export.adalog.bundle import score_line_file
    from logsieve.verdict import is_anomaly

    texts, scores, evidence = score_line_file(bundle, file, fmt)
    flagged = 0
    for lineno, (text, value, ev) in enumerate(zip(texts, scores, evidence, strict=True), 1):
        if not is_anomaly(value, bundle.threshold):
            if show_all:
                click.echo(f"ok   line {lineno} score {value:.4f}")
            continue
        flagged += 1
        click.echo(f"FLAG line {lineno}  score {value:.4f} > {bundle.threshold:.4f}  {text}")
        click.echo("    " + "  ".join(f"{tok!r} {nll:.2f}" for tok, nll in ev.top(top)))
    click.echo(f"{flagged} of {len(texts)} lines flagged", err=True)


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


COMMANDS = [train, eval_, score]
