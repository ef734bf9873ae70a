"""Where does the AOTInductor CUDA package crash? A prepared check for the next GPU session.

On an H200 (torch 2.11+cu130) our CUDA package compiled but ``aoti_load_package``
died of SIGSEGV, fp32 and fp16 alike (bench/RESULTS.md, "GPU"). This script separates
the possible causes in one short device call. Each case runs in its own child process
(a crash ends that case only) and goes export → compile → load → run → compare with
the exported program run eagerly, announcing each step, so the report says which step
died and in which Python frame (faulthandler):

- ``tiny-static`` / ``tiny-dynamic``: a two-layer MLP. If these crash, AOTInductor CUDA
  is broken in that torch image, whatever our graph.
- ``program``: the bundle's ``program.pt2`` moved to the device exactly as
  ``build-engine --backend aoti`` does (dynamic batch and length).
- ``program-static``: the same graph re-exported at one fixed shape: tells dynamic
  shapes (symbolic sizes in the wrapper) from the rest of the graph.
- ``program-single-thread``: ``program`` loaded with ``run_single_threaded=True`` (the
  loader's other runner), where this torch has that argument.

Run on the device (a bundle exported here, copied into ``.devbundle/``, ignored by git):
``python3 bench/aoti_cuda_diag.py .devbundle [--device cuda] [--cases ...]``. On this
CPU, ``--device cpu`` runs the same flow (it is how the script itself is checked).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CASES = ("tiny-static", "program", "program-static", "tiny-dynamic", "program-single-thread")


def _step(what: str) -> None:
    from logsieve.engine.aoti_backend import STEP

    print(f"{STEP}{what}", file=sys.stderr, flush=True)


def _inputs(case: str, device: str) -> tuple[object, ...]:
    import torch

    if case.startswith("tiny"):
        return (torch.randn(8, 16, device=device),)
    ids = torch.full((4, 9), 5, dtype=torch.int64, device=device)
    ids[:, 0] = 1  # [CLS]
    return ids, torch.tensor([9, 6, 3, 2], dtype=torch.int64, device=device)


def _exported(case: str, bundle: Path, device: str) -> torch.export.ExportedProgram:
    import torch
    from torch import nn

    from logsieve.bundle import open_bundle
    from logsieve.engine.torch_backend import program_on

    example = _inputs(case, device)
    if case.startswith("tiny"):
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).to(device).eval()
        dims = ({0: torch.export.Dim("batch", min=1, max=64)},) if case == "tiny-dynamic" else None
        program = torch.export.export(model, example, dynamic_shapes=dims)
    else:
        program = program_on(open_bundle(bundle), device)
        if case == "program-static":
            program = torch.export.export(program.module(), example)
    return program


def child(case: str, bundle: Path, device: str) -> None:
    """One case, in this process; prints the largest difference from eager on success."""
    import inspect

    import torch

    _step("exporting")
    program = _exported(case, bundle, device)
    example = _inputs(case, device)
    with torch.no_grad():
        expected = program.module()(*example)
    with tempfile.TemporaryDirectory() as tmp:
        _step("compiling")
        path = torch._inductor.aoti_compile_and_package(
            program, package_path=str(Path(tmp) / "p.pt2")
        )
        _step("loading the package")
        kwargs = {}
        if case == "program-single-thread":
            params = inspect.signature(torch._inductor.aoti_load_package).parameters
            if "run_single_threaded" not in params:
                print("SKIP: this torch's aoti_load_package has no run_single_threaded")
                return
            kwargs["run_single_threaded"] = True
        runner = torch._inductor.aoti_load_package(path, **kwargs)
        _step("running")
        got = runner(*example)
    got, expected = (tuple(x) if isinstance(x, (list, tuple)) else (x,) for x in (got, expected))
    diff = max(
        float((g.float() - e.float()).abs().max()) for g, e in zip(got, expected, strict=True)
    )
    print(f"OK: max abs difference from the eager program {diff:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per case")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.bundle, args.device)
        return
    import torch

    from logsieve.engine.aoti_backend import crash_site

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU"
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {gpu}; device {args.device}")
    print("| case | result | seconds |")
    print("| --- | --- | ---: |")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    for case in args.cases:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-X", "faulthandler", __file__, str(args.bundle),
               "--device", args.device, "--child", case]  # fmt: skip
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=args.timeout, env=env, check=False
            )
            out = done.stdout.strip().splitlines()
            if done.returncode == 0:
                result = out[-1] if out else "OK"
            elif done.returncode < 0:
                result = f"SIGNAL {-done.returncode} {crash_site(done.stderr)}"
            else:
                result = f"FAILED (exit {done.returncode}) {crash_site(done.stderr)}"
        except subprocess.TimeoutExpired:
            result = f"TIMEOUT after {args.timeout:.0f} s"
        print(
            f"| {case} | {result.replace('|', '/')} | {time.perf_counter() - t0:.0f} |", flush=True
        )


if __name__ == "__main__":
    main()
