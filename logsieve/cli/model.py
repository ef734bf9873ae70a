"""Commands of the detector: ``train``, ``eval``, ``score``, ``update`` and ``rollback``.

train → **bundle** → export → build-engine → serve; ``eval`` and ``score`` read a
bundle; ``update`` adds a version adapted to newer logs, ``rollback`` switches back.
Each command calls one library function of ``logsieve.export`` (or the core) and prints.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from logsieve.cli.options import BACKEND_CHOICES, FORMATS
from logsieve.export.data.prepare import DATASETS, LINE_DATASETS

__all__ = ["COMMANDS"]

# --test-label choices (logsieve.export.evaluation.labelled.TEST_LABELS, which imports
# torch: written here so --help stays fast; tests/export/test_labelled.py keeps them equal).
TEST_LABELS = ("normal", "anomalous")

# The harness's method names (logsieve.export.evaluation.methods.METHODS, which imports
# torch: written here so --help stays fast; tests/export/test_harness.py keeps them equal).
METHODS = (
    "fastlogad-mlm", "fastlogad-random", "adalog", "deeplog", "deeplog-ours", "logbert",
    "logbert-ours", "iforest",
)  # fmt: skip

_SPLIT_HELP = (
    "Split (chronological, the FastLogAD protocol): the first --train-n normal windows "
    "train, the last --val-fraction of them calibrate the threshold, everything else is "
    "test. hdfs-sessions: DATA is a folder like ../shared/data/hdfs/sessions; train_normal "
    "trains (its last 10% calibrates), dev_normal + dev_abnormal test. bgl-windows: DATA "
    "is train.jsonl or its folder; default --train-n 2000. Raw logs: default --train-n "
    "5000; hdfs labels come from <log>.block_labels.csv or anomaly_label.csv beside it."
)


_TIME_FORMAT_HELP = (
    "For lines: how the pattern's time group reads: auto (default: detected from the "
    "first lines), epoch, epoch_ms, iso8601, syslog, hdfs, bgl, or a strptime format. "
    "Stored in the bundle."
)


def _data_options(func: Any, *, data_required: bool = True) -> Any:
    for option in reversed(
        [
            click.option("--dataset", type=click.Choice(DATASETS), required=True, help=_SPLIT_HELP),
            click.option(
                "--data",
                "data_path",
                type=click.Path(exists=True, path_type=Path),
                required=data_required,
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
    "--quantile",
    type=float,
    default=None,
    help="Threshold: this quantile of normal validation scores; about 1 - q of normal "
    "windows get flagged (fastlogad 0.995, adalog 0.9).",
)
@click.option("--d-model", type=int, default=None, help="Default: fastlogad 256, adalog 128.")
@click.option("--layers", type=int, default=None, help="Default: fastlogad 4, adalog 2.")
@click.option("--threads", type=int, default=None, help="torch threads (default: all cores).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with a [log] table: the keys it names override the "
                   "dataset's preset, the rest stay.")  # fmt: skip
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
    from logsieve.export.data.prepare import dataset_log_config
    from logsieve.export.training import TrainRequest, train_detector

    preset = dataset_log_config(opts["dataset"])
    request = TrainRequest(
        detector=detector,  # type: ignore[arg-type]  # click.Choice checked it
        data_path=data_path,
        out=out,
        log_config=load_log_config(config_path, preset) if config_path else None,
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
@functools.partial(_data_options, data_required=False)
@click.option("--test", "tests", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, help="--bundle: score this labelled file, all of it as test "
              "data, with the bundle's own vocabulary and templates (repeatable; instead "
              "of --data).")  # fmt: skip
@click.option("--test-label", "test_labels", type=click.Choice(TEST_LABELS), multiple=True,
              help="hdfs-sessions: the class of the --test file at the same position "
              "(session files carry no labels).")  # fmt: skip
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto",
              show_default=True, help="--test: the engine, as for score.")  # fmt: skip
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
    dataset: str, data_path: Path | None, seeds: int, plots: Path | None, out: Path | None,
    labels: Path | None, tiny: bool, epochs: int | None, threads: int | None,
    tests: tuple[Path, ...], test_labels: tuple[str, ...], backend: str, **split: Any,
) -> None:  # fmt: skip
    """Evaluate a bundle, or fit and evaluate methods, on a dataset's test split.

    --bundle: the bundle's threshold on the test windows as they are and with identical
    windows counted once (use the split options it was trained with: its manifest's
    data.split). --method (repeatable): fits each method per seed on the same split,
    thresholds label-free (normal validation); baselines add oracle rows, labelled.
    Prints P, R, F1, ROC-AUC, PR-AUC, FPR (for hdfs-sessions also projected to HDFS's
    real class ratio); --method prints mean ± std over seeds as a Markdown table.

    --bundle with --test FILE (repeatable, instead of --data): every window of the files
    is test data, read with the bundle's own settings, templates and event-id table and
    judged exactly as score judges it. Labels: hdfs-sessions files by --test-label;
    bgl-windows JSONL and bgl/thunderbird lines carry their own; hdfs logs by block
    (--labels, default <log>.block_labels.csv beside it); lines logs by window key
    (--labels Key,Label CSV). Prints windows per class, flagged counts, P, R, F1, FPR,
    ROC-AUC and how many windows held templates the training never saw.

    \b
    Example:
      logsieve eval --bundle bundles/hdfs-mlm --dataset hdfs-sessions \\
          --data ../shared/data/hdfs/sessions --json
      logsieve eval --bundle bundles/hdfs-mlm --dataset hdfs-sessions \\
          --test ../shared/data/hdfs/sessions/dev_normal --test-label normal \\
          --test ../shared/data/hdfs/sessions/dev_abnormal --test-label anomalous
      logsieve eval --bundle bundles/hdfs-raw --dataset hdfs \\
          --test ../shared/data/hdfs/raw/HDFS_5k.log
      logsieve eval --method iforest --method deeplog --seeds 3 --dataset hdfs-sessions \\
          --data ../shared/data/hdfs/sessions --plots plots/
    """
    if (bundle_path is None) == (not methods):
        raise click.UsageError("give either --bundle or --method")
    if bundle_path is not None and tests:
        _eval_test_files(bundle_path, dataset, tests, test_labels, labels, backend,
                         batch_size, threads, as_json, split, plots)  # fmt: skip
        return
    if tests or test_labels:
        raise click.UsageError("--test/--test-label need --bundle")
    if data_path is None:
        raise click.UsageError("give --data (or, with --bundle, --test FILE)")
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

    FastLogAD: one FLAG per incident, as serve sends them (overlapping anomalous
    sliding windows of a host are one incident, each line listed once); evidence: the
    lines whose tokens the discriminator finds most likely replaced. ADALog bundles
    score every line (eager model; --backend is ignored) and print the flagged lines
    with their --top least expected tokens (NLL in nats).

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
    from logsieve.export.fastlogad.scoring import score_incidents
    from logsieve.verdict import ScoredWindow

    counts = {"windows": 0, "flagged": 0}

    def on_window(sw: ScoredWindow) -> None:
        counts["windows"] += 1
        counts["flagged"] += sw.anomaly
        if show_all and not sw.anomaly:
            click.echo(f"ok   {sw.key} score {sw.score:.4f}")

    incidents = 0
    stored = bundle.line_format
    if fmt is None and stored is None:
        fmt = str(bundle.manifest.get("format") or "hdfs")
    from logsieve.cli.options import read_note
    from logsieve.export.data.lines import ReadStats

    stats = ReadStats()
    patterns: list[dict[str, Any]] = []
    for incident in score_incidents(
        bundle, file, fmt, pattern=pattern, time_format=time_format, backend=backend,
        stats=stats, on_window=on_window, on_pattern=patterns.append,
    ):  # fmt: skip
        incidents += 1
        sw = incident.window
        why = " and ".join(
            f"score {sw.score:.4f} > {sw.threshold:.4f}" if r == "score"
            else f"{sum(sw.rare_new)} line(s) of a rare new template"
            for r in sw.reasons
        )  # fmt: skip
        click.echo(
            f"FLAG {sw.key}  {_ts(sw.start)} .. {_ts(sw.end)}  {len(sw.lines)} lines  {why}"
            + (f"  ({incident.windows} windows)" if incident.windows > 1 else "")
        )
        for i in sw.evidence(top):
            line, template = sw.lines[i], sw.templates[i]
            click.echo(
                f"    {sw.token_probs[i]:5.2f}  {line}"
                + ("" if template == line else f"   [{template}]")
            )
    _echo_patterns(patterns)
    click.echo(
        f"{counts['flagged']} of {counts['windows']} windows flagged, {incidents} incidents "
        f"({read_note(stats)})",
        err=True,
    )
    if stats.first_bad is not None:
        click.echo(f"first line that did not parse: {stats.first_bad}", err=True)


def _echo_patterns(reports: list[dict[str, Any]]) -> None:
    """One line per new template (its latest status), on stderr."""
    latest: dict[int, dict[str, Any]] = {}
    for r in reports:
        latest[r["pattern_id"]] = r
    for r in latest.values():
        kind = "drift (admitted)" if r["status"] == "admitted" else "rare"
        click.echo(
            f"new template, {kind}: {r['pattern']!r}  {r['lines']} lines in {r['keys']} keys",
            err=True,
        )


def _eval_test_files(
    bundle_path: Path, dataset: str, tests: tuple[Path, ...], test_labels: tuple[str, ...],
    labels: Path | None, backend: str, batch_size: int, threads: int | None, as_json: bool,
    split: dict[str, Any], plots: Path | None,
) -> None:  # fmt: skip
    ctx = click.get_current_context()
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("data_path", "train_n", "val_fraction")
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    ]
    if given or plots is not None:
        given += ["--plots"] if plots is not None else []
        raise click.UsageError(f"--test scores whole files: {', '.join(given)} do not apply")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from logsieve.export.evaluation.bundle_eval import flat_report
    from logsieve.export.evaluation.labelled import evaluate_labelled, format_labelled_report

    report = evaluate_labelled(bundle_path, dataset, tests, test_labels=test_labels,
                               labels_path=labels, pattern=split.get("pattern"),
                               backend=backend, batch_size=batch_size)  # fmt: skip
    click.echo(json.dumps(flat_report(report), indent=1) if as_json
               else format_labelled_report(report))  # fmt: skip


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


@click.command()
@click.option("--bundle", "bundle_path", type=click.Path(exists=True, file_okay=False,
              path_type=Path), required=True, help="Bundle to adapt.")  # fmt: skip
@click.option("--data", "data_path", type=click.Path(exists=True, path_type=Path), required=True,
              help="Recent normal logs, in the bundle's line format.")  # fmt: skip
@click.option("--dataset", type=click.Choice(LINE_DATASETS), default=None,
              help="Line format (default: the bundle's).")  # fmt: skip
@click.option("--pattern", default=None, help="For --dataset lines: line regex.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a new bundle here, not a version.")  # fmt: skip
@click.option("--mode", type=click.Choice(["finetune", "retrain"]), default="finetune",
              show_default=True, help="Fine-tune the parent, or train afresh.")  # fmt: skip
@click.option("--train-n", type=int, default=None, help="Normal windows to train on [all].")
@click.option("--val-fraction", type=float, default=0.1, show_default=True)
@click.option("--labels", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--rtd-epochs", type=int, default=None, help="Default: finetune 2, retrain parent's.")
@click.option(
    "--hst-epochs", type=int, default=None, help="Default: finetune 10, retrain parent's."
)
@click.option("--lr", type=float, default=None)
@click.option("--quantile", type=float, default=None, help="Threshold quantile [the parent's].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads (default: all cores).")
@click.option("--no-export", "no_export", is_flag=True, help="Skip program.pt2/model.onnx.")
def update(
    bundle_path: Path, data_path: Path, labels: Path | None, no_export: bool, **opts: Any
) -> None:
    """Fold recent normal logs into a new version of a bundle (rollback keeps the old one).

    Reads --data with the bundle's own log settings; known templates keep their ids,
    new ones get new ids; the model is fine-tuned (new embedding rows added) or
    retrained, the threshold recalibrated on the new data's normal validation windows
    (no label read), and the result exported. The new version goes to
    BUNDLE/versions/<model_id> and BUNDLE/current points to it; its manifest names its
    parent_model_id. A running `logsieve serve --bundle BUNDLE` switches to it on
    SIGHUP; `logsieve rollback --bundle BUNDLE` switches back.

    \b
    Example:
      logsieve update --bundle bundles/hdfs --data /var/log/hdfs/recent.log
      kill -HUP "$(pidof -x -s logsieve)"
    """
    from logsieve.export.update import UpdateRequest, update_bundle

    request = UpdateRequest(
        bundle=bundle_path, data_path=data_path, labels_path=labels, export=not no_export, **opts
    )
    update_bundle(request, progress=lambda line: click.echo(line, err=True), report=click.echo)


@click.command()
@click.option("--bundle", "bundle_path", type=click.Path(exists=True, file_okay=False,
              path_type=Path), required=True, help="A versioned bundle home.")  # fmt: skip
@click.option("--to", "to", default=None, help="Model id to make current [the parent].")
@click.option("--list", "list_only", is_flag=True, help="List the versions, change nothing.")
def rollback(bundle_path: Path, to: str | None, list_only: bool) -> None:
    """Make the previous version of a bundle current again (or the one --to names).

    One atomic switch of BUNDLE/current; a running `logsieve serve` picks it up on
    SIGHUP. --list prints every version (* marks the current one).

    \b
    Example:
      logsieve rollback --bundle bundles/hdfs && kill -HUP "$(pidof -x -s logsieve)"
      logsieve rollback --bundle bundles/hdfs --list
    """
    from logsieve.bundle_versions import list_versions
    from logsieve.bundle_versions import rollback as roll_back

    if not list_only:
        bundle = roll_back(bundle_path, to)
        click.echo(f"{bundle_path}: current is now {bundle.model_id} ({bundle.path})")
        return
    for v in list_versions(bundle_path):
        parent = f"parent {v.parent_model_id}" if v.parent_model_id else "trained"
        click.echo(f"{'*' if v.current else ' '} {v.model_id}  {parent}  {v.created or '-'}  "
                   f"{v.path}")  # fmt: skip


COMMANDS = [train, eval_, score, update, rollback]
