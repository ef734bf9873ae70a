"""CLI commands of the compiled-inference stages: ``export`` and ``build-engine``.

train → bundle → **export** (program.pt2 + model.onnx) → **build-engine** (engines/) →
serve.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from logsieve.cli.options import bundle_option
from logsieve.engine.base import BUILDABLE, PRECISIONS

__all__ = ["COMMANDS"]

T = TypeVar("T")


def with_progress(what: str, work: Callable[[], T]) -> T:
    """Run ``work`` while a tqdm line on stderr shows the time spent (builds take minutes;
    their length is unknown, so it is a clock, not a bar)."""
    from tqdm import tqdm

    done = threading.Event()
    with tqdm(desc=what, bar_format="{desc}: {elapsed}", file=sys.stderr) as clock:
        ticker = threading.Thread(target=lambda: _tick(clock, done), daemon=True)
        ticker.start()
        try:
            return work()
        finally:
            done.set()
            ticker.join()


def _tick(clock: Any, done: threading.Event) -> None:
    while not done.wait(1.0):
        clock.refresh()


@click.command(name="export")
@bundle_option
@click.option("--max-batch", type=int, default=1024, show_default=True)
@click.option("--max-len", type=int, default=None, help="Longest window (default: the model's).")
def export_(bundle_path: Path, max_batch: int, max_len: int | None) -> None:
    """Export a trained bundle for serving: program.pt2 (torch.export) and model.onnx.

    Both come from one ExportedProgram, dynamic in batch (1..max-batch) and sequence
    length (2..max-len); their hashes go into the manifest. `logsieve train` runs this
    step itself unless given --no-export.

    \b
    Example:
      logsieve export --bundle bundles/hdfs
    """
    from logsieve.export.program import export_bundle

    bundle = with_progress(
        "exporting", lambda: export_bundle(bundle_path, max_batch=max_batch, max_len=max_len)
    )
    p = bundle.manifest["program"]
    click.echo(
        f"{bundle.path}: program.pt2 and model.onnx, batch 1..{p['max_batch']}, "
        f"length 2..{p['max_len']} ({p['export_seconds']}s)"
    )


@click.command(name="build-engine")
@bundle_option
@click.option("--backend", type=click.Choice(BUILDABLE), required=True)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=None,
    help="Default: fp16 for tensorrt, fp32 otherwise; int8 is onnxruntime's.",
)
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: cuda for tensorrt).")
@click.option(
    "--max-batch",
    type=int,
    default=None,
    help="Re-export with this batch bound first (default: the bundle's export).",
)
@click.option("--max-len", type=int, default=None, help="Re-export with this length bound first.")
def build_engine_(
    bundle_path: Path,
    backend: str,
    precision: str | None,
    device: str | None,
    max_batch: int | None,
    max_len: int | None,
) -> None:
    """Compile the bundle's exported model for this machine into its engines/ folder.

    tensorrt: an FP16 plan with length-bucket profiles (needs `pip install
    'logsieve[gpu]'` and an NVIDIA GPU). aoti: an AOTInductor package for this CPU or
    GPU (needs a C++ compiler). onnxruntime: int8 dynamic quantization (fp32 needs no
    build). Artifacts are named by device and toolkit version and rebuilt when either
    differs.

    \b
    Example:
      logsieve build-engine --bundle bundles/hdfs --backend aoti
      logsieve build-engine --bundle bundles/hdfs --backend onnxruntime --precision int8
      logsieve build-engine --bundle bundles/hdfs --backend tensorrt --device cuda:0
    """
    from logsieve.bundle import open_bundle
    from logsieve.engine import build_engine

    if max_batch is not None or max_len is not None:
        from logsieve.export.program import export_bundle

        current = open_bundle(bundle_path).manifest.get("program", {})
        with_progress(
            "re-exporting",
            lambda: export_bundle(
                bundle_path,
                max_batch=max_batch or int(current.get("max_batch", 1024)),
                max_len=max_len or current.get("max_len"),
            ),
        )
    bundle, name = with_progress(
        f"building {backend}",
        lambda: build_engine(bundle_path, backend, precision=precision, device=device),
    )
    size = bundle.manifest["files"][name]["bytes"]
    click.echo(f"{bundle.path / name} ({size / 1e6:.1f} MB)")


COMMANDS = [export_, build_engine_]
