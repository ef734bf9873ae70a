"""Parity of each engine backend this machine can run with the eager model, as numbers.

``tests/engine/test_backends.py`` asserts the issue-4 targets (fp32 max relative score
error <= 1e-4, fp16/int8 <= 2e-2, identical verdicts at the bundle's threshold on >= 99.9%
of windows); this prints the figures behind them for ``bench/RESULTS.md``, on the same
2,000 real HDFS test windows the suite uses.

Run (repo root): ``PYTHONPATH=. .venv/bin/python bench/engine_parity.py BUNDLE
[--data DIR] [--device cpu|cuda]`` with an exported bundle (``logsieve export``); the data
folder defaults to ``$LOGSIEVE_DATA`` or ``../shared/data``. Backends that cannot run here
are listed with the reason; compiled artifacts are built into the bundle when missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from logsieve.bundle import open_bundle
from logsieve.engine import COMBINATIONS, load_engine, score_windows
from logsieve.errors import BackendUnavailable, BundleError, ConfigError
from logsieve.export.data.prepare import prepare
from tests.conftest import data_dir
from tests.engine.conftest import eager_reference, parity_windows


def main(bundle_path: Path, data: Path, devices: tuple[str, ...] = ("cpu", "cuda")) -> None:
    bundle = open_bundle(bundle_path)
    windows = parity_windows(prepare("hdfs-sessions", data / "hdfs" / "sessions"))
    ref, ref_probs = eager_reference(bundle, windows)
    threshold = bundle.threshold
    print(f"{len(windows)} real HDFS test windows; threshold {threshold:.6g}; "
          f"{int((ref > threshold).sum())} flagged by eager torch fp32 (cpu)")  # fmt: skip
    print("| backend | max rel. score error | median | max abs. token-prob error "
          "| identical verdicts | build + load s |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for backend, precision, device in COMBINATIONS:
        if device not in devices:
            continue
        label = f"{backend} {precision} {device}"
        try:
            t0 = time.perf_counter()
            engine = load_engine(  # builds a missing compiled artifact first
                bundle_path, backend, precision=precision, device=device, build_missing=True
            )
            built = time.perf_counter() - t0
        except (BackendUnavailable, BundleError, ConfigError) as exc:
            print(f"| {label} | cannot run here: {str(exc)[:160]} | | | | |")
            continue
        scores, probs = score_windows(engine, windows, batch_size=256)
        rel = np.abs(scores - ref) / np.maximum(np.abs(ref), 1e-6)
        prob_err = max(float(np.abs(p - r).max()) for p, r in zip(probs, ref_probs, strict=True))
        agree = float(np.mean((scores > threshold) == (ref > threshold)))
        print(f"| {engine.info.label} | {rel.max():.2e} | {np.median(rel):.2e} | "
              f"{prob_err:.2e} | {agree:.2%} | {built:.0f} |")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--device", choices=["cpu", "cuda"], action="append")
    args = parser.parse_args()
    root = args.data or data_dir()
    if root is None:
        sys.exit("no data folder: pass --data or set LOGSIEVE_DATA")
    main(args.bundle, root, tuple(args.device or ("cpu", "cuda")))
