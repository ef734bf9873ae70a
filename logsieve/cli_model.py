"""CLI commands of the detector: ``train``, ``eval`` and ``score``.

Registered on the ``logsieve`` group by :mod:`logsieve.cli`; each command builds its
configs once and calls one library function in ``logsieve.export``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from logsieve.cli import FORMATS, main

DATASETS = ("hdfs", "hdfs-sessions", "bgl", "bgl-windows", "thunderbird", "lines")

_SPLIT_HELP = (
    "Split (chronological, the FastLogAD protocol): the first --train-n normal windows "
    "train, the last --val-fraction of them calibrate the threshold, everything else is "
    "test. hdfs-sessions: DATA is a folder like ../shared/data/hdfs/sessions; train_normal "
    "trains (its last 10%% calibrates), dev_normal + dev_abnormal test. bgl-windows: DATA "
    "is train.jsonl or its folder; default --train-n 2000. Raw logs: default --train-n "
    "5000; hdfs labels come from <log>.block_labels.csv or anomaly_label.csv beside it."
)


def _data_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--dataset", type=click.Choice(DATASETS), required=True),
            click.option(
                "--data", "data_path", type=click.Path(exists=True, path_type=Path), required=True
            ),
            click.option("--train-n", type=int, default=None, help="Normal windows to train on."),
            click.option("--val-fraction", type=float, default=0.1, show_default=True),
            click.option("--labels", type=click.Path(exists=True, path_type=Path), default=None),
            click.option("--pattern", default=None, help="For --dataset lines: line regex."),
        ]
    ):
        func = option(func)
    return func


@main.command()
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
@click.option(
    "--no-export",
    "no_export",
    is_flag=True,
    help="Skip writing program.pt2/model.onnx (logsieve export does it later).",
)
def train(**opts: Any) -> None:
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
    """
    if opts["detector"] == "adalog":
        _train_adalog(opts)
        return
    from logsieve.export.fastlogad.bundle import train_bundle
    from logsieve.export.fastlogad.model import ModelConfig
    from logsieve.export.fastlogad.train import TrainConfig

    data = _prepare(opts)
    overrides = {
        k: opts[k] for k in ("rtd_epochs", "hst_epochs", "lr", "batch_size") if opts[k] is not None
    }
    cfg = TrainConfig(
        generator=opts["generator"], seed=opts["seed"], num_threads=opts["threads"], **overrides
    )
    model_cfg = ModelConfig(
        vocab_size=data.vocab.size,
        d_model=opts["d_model"] or 256,
        n_layers=opts["layers"] or 4,
        max_len=data.log_config.max_len,
    )
    click.echo(
        f"{data.dataset}: {len(data.train)} training, {len(data.validation)} validation "
        f"sequences, {data.vocab.size} tokens",
        err=True,
    )
    quantile = opts["quantile"] if opts["quantile"] is not None else 0.99
    bundle, result = train_bundle(
        data, opts["out"], train_cfg=cfg, model_cfg=model_cfg, quantile=quantile
    )
    click.echo(
        f"bundle {bundle.path}: threshold {bundle.threshold:.6g} "
        f"(q{quantile} of {bundle.manifest['threshold']['n_validation']} validation "
        f"scores), trained in {result.timings.get('total', 0.0):.1f}s"
    )
    if not opts["no_export"]:
        from logsieve.cli_engine import with_progress
        from logsieve.export.program import export_bundle

        with_progress("exporting program.pt2 and model.onnx", lambda: export_bundle(bundle.path))


def _train_adalog(opts: dict[str, Any]) -> None:
    from logsieve.export.adalog.bundle import AdaLogConfig, export_adalog_bundle
    from logsieve.export.evaluation.methods import EvalOptions, train_adalog_split

    names = {"d_model": "d_model", "n_layers": "layers", "epochs": "epochs", "lr": "lr",
             "batch_size": "batch_size", "quantile": "quantile"}  # fmt: skip
    given = {k: opts[v] for k, v in names.items()}
    cfg = AdaLogConfig(seed=opts["seed"], **{k: v for k, v in given.items() if v is not None})
    if opts["threads"]:
        import torch

        torch.set_num_threads(opts["threads"])
    data = _prepare(opts)
    split = EvalOptions(labels_path=opts["labels"], pattern=opts["pattern"])
    bundle = train_adalog_split(data, opts["data_path"], opts["out"], cfg, options=split)
    click.echo(
        f"bundle {bundle.path}: adalog, threshold {bundle.threshold:.6g} "
        f"(q{cfg.quantile} of {bundle.manifest['threshold']['n_validation']} validation lines)"
    )
    if not opts["no_export"]:
        from logsieve.cli_engine import with_progress

        with_progress(
            "exporting program.pt2 and model.onnx", lambda: export_adalog_bundle(bundle.path)
        )


def _prepare(opts: dict[str, Any], bundle: Any = None) -> Any:
    from logsieve.config import load_log_config
    from logsieve.export.data.prepare import prepare

    config = None
    if bundle is not None:
        config = bundle.log_config
    elif opts.get("config_path"):
        config = load_log_config(opts["config_path"])
    return prepare(
        opts["dataset"],
        opts["data_path"],
        log_config=config,
        train_n=opts["train_n"],
        val_fraction=opts["val_fraction"],
        labels_path=opts["labels"],
        pattern=opts["pattern"],
        templates_state=bundle.templates_state if bundle is not None else None,
    )


METHODS = ("fastlogad-mlm", "fastlogad-random", "adalog", "deeplog", "logbert", "iforest")


@main.command(name="eval")
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
    **opts: Any,
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
        _eval_methods(methods, as_json, batch_size, opts)
        return
    if opts["plots"] is not None:
        raise click.UsageError("--plots needs --method (bundle mode prints figures only)")
    assert bundle_path is not None
    _eval_bundle(bundle_path, as_json, batch_size, opts)


def _eval_methods(
    methods: tuple[str, ...], as_json: bool, batch_size: int, opts: dict[str, Any]
) -> None:
    from logsieve.export.evaluation.harness import EvalOptions, run

    options = EvalOptions(
        train_n=opts["train_n"], val_fraction=opts["val_fraction"], labels_path=opts["labels"],
        pattern=opts["pattern"], tiny=opts["tiny"], epochs=opts["epochs"],
        batch_size=batch_size, threads=opts["threads"],
    )  # fmt: skip
    report = run(methods, opts["dataset"], opts["data_path"], opts["seeds"], options,
                 plots=opts["plots"])  # fmt: skip
    if opts["out"] is not None:
        opts["out"].write_text(report.table + "\n", encoding="utf-8")
    click.echo(json.dumps(report.rows, indent=1) if as_json else report.table)
    for path in report.plots:
        click.echo(f"wrote {path}", err=True)


def _eval_bundle(bundle_path: Path, as_json: bool, batch_size: int, opts: dict[str, Any]) -> None:
    from logsieve.bundle import open_bundle
    from logsieve.errors import BundleError
    from logsieve.export.fastlogad.bundle import evaluate

    bundle = open_bundle(bundle_path)
    if bundle.detector != "fastlogad":
        raise BundleError(
            f"{bundle.path}: this is an {bundle.detector!r} bundle; evaluate it with "
            f"--method {bundle.detector} (fits on the same split) or score lines with it"
        )
    if opts["threads"]:
        import torch

        torch.set_num_threads(opts["threads"])
    data = _prepare(opts, bundle)
    if bundle.vocab is not None and data.vocab.size != bundle.vocab.size:
        raise BundleError(
            f"{bundle.path}: vocabulary of {bundle.vocab.size} tokens, "
            f"the data has {data.vocab.size} (another dataset?)"
        )
    report = evaluate(bundle, data, batch_size=batch_size)
    if as_json:
        m = report["metrics"]
        flat = {k: m[k] for k in ("tp", "fp", "fn", "tn", "threshold")}
        click.echo(json.dumps({**flat, **report}, indent=1))
        return
    click.echo(
        f"{report['dataset']}: {report['n_test']} test windows "
        f"({report['n_test_anomalous']} anomalous), threshold {report['threshold']:.6g}"
    )
    rows = [("as is", report["metrics"]), ("deduplicated", report["dedup"]["metrics"])]
    if "projected" in report:
        rows.append(("projected", report["projected"]))
    click.echo(f"{'':14s} {'P':>7s} {'R':>7s} {'F1':>7s} {'ROC-AUC':>8s} {'PR-AUC':>7s}"
               f" {'tp':>7s} {'fp':>9s} {'fn':>6s} {'tn':>7s}")  # fmt: skip
    for name, m in rows:
        click.echo(
            f"{name:14s} {m['precision']:7.4f} {m['recall']:7.4f} {m['f1']:7.4f} "
            f"{m.get('roc_auc', float('nan')):8.4f} {m.get('pr_auc', float('nan')):7.4f} "
            f"{m['tp']:7.0f} {m['fp']:9.0f} {m.get('fn', float('nan')):6.0f} "
            f"{m.get('tn', float('nan')):7.0f}"
        )
    click.echo(f"scoring: {report['ms_per_window']:.3f} ms/window (batch {batch_size}, CPU)")


@main.command()
@click.option(
    "--bundle", "bundle_path", type=click.Path(exists=True, path_type=Path), required=True
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Line format (default: the bundle's training format).")  # fmt: skip
@click.option("--pattern", default=None)
@click.option("--top", type=int, default=3, show_default=True, help="Evidence lines per flag.")
@click.option("--all", "show_all", is_flag=True, help="Print every window's verdict.")
@click.option(
    "--backend",
    type=click.Choice(["auto", "tensorrt", "aoti", "onnxruntime", "torch"]),
    default="auto",
    show_default=True,
    help="Engine for an exported bundle (unexported bundles run model.pt eagerly).",
)
def score(
    bundle_path: Path,
    file: Path,
    fmt: str | None,
    pattern: str | None,
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
    from logsieve.export.fastlogad.bundle import score_file

    bundle = open_bundle(bundle_path)
    if bundle.detector == "adalog":
        _score_lines(bundle, file, fmt or str(bundle.manifest.get("format") or "lines"), top,
                     show_all)  # fmt: skip
        return
    fmt = fmt or str(bundle.manifest.get("format", "hdfs"))
    n = flagged = 0
    for window, value, flag in score_file(
        bundle, file, fmt, pattern=pattern, top=top, backend=backend
    ):
        n += 1
        if flag is None:
            if show_all:
                click.echo(f"ok   {window.key} score {value:.4f}")
            continue
        flagged += 1
        click.echo(
            f"FLAG {flag.key}  {_ts(flag.start)} .. {_ts(flag.end)}  {flag.lines} lines  "
            f"score {flag.score:.4f} > {flag.threshold:.4f}"
            + (f"  ({flag.unknown_lines} unknown lines)" if flag.unknown_lines else "")
        )
        for prob, template, line in flag.evidence:
            click.echo(
                f"    {prob:5.2f}  {line}" + ("" if template == line else f"   [{template}]")
            )
    click.echo(f"{flagged} of {n} windows flagged", err=True)


def _score_lines(bundle: Any, file: Path, fmt: str, top: int, show_all: bool) -> None:
    from logsieve.export.adalog.bundle import read_line_texts, score_lines

    texts, _labels = read_line_texts(file, fmt if fmt in ("bgl", "thunderbird") else "lines")
    scores, evidence = score_lines(bundle, texts)
    flagged = 0
    for lineno, (text, value, ev) in enumerate(zip(texts, scores, evidence, strict=True), 1):
        if value <= bundle.threshold:
            if show_all:
                click.echo(f"ok   line {lineno} score {value:.4f}")
            continue
        flagged += 1
        click.echo(f"FLAG line {lineno}  score {value:.4f} > {bundle.threshold:.4f}  {text}")
        click.echo("    " + "  ".join(f"{tok!r} {nll:.2f}" for tok, nll in ev.top(top)))
    click.echo(f"{flagged} of {len(texts)} lines flagged", err=True)


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
