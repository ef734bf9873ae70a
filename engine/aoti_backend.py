"""AOTInductor backend: ``program.pt2`` compiled ahead of time into a native package.

:func:`build` compiles the bundle's ExportedProgram with
``torch._inductor.aoti_compile_and_package`` for the local CPU (fp32) or CUDA GPU (fp32
or fp16) into ``engines/aoti-<device>-<precision>-torch<version>.pt2``. The device part
names what the code was compiled for (the CPU's vector ISA, or the GPU model and compute
capability), so a package built elsewhere is never loaded by mistake: it is rebuilt.

The graph is moved to the GPU with ``torch.export.passes.move_to_device_pass`` (weights
and the devices recorded in the graph). FP16 on CUDA: that graph is cast to half, then
exported again from it (no model code involved) and compiled; ids and lengths stay int64,
outputs are cast back to float32 at this edge.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from logsieve.bundle import Bundle
from logsieve.errors import BackendUnavailable, BundleError, ConfigError

from .base import EngineInfo, FloatArray, IdArray, add_engine_file, check_inputs
from .devices import device_tag
from .torch_backend import check_device, indexed, program_on

__all__ = [
    "INDUCTOR_CONFIGS",
    "STEP",
    "AotiEngine",
    "artifact_name",
    "build",
    "crash_site",
    "verify_in_child",
]

# Freezing folds the weights into the graph as constants, which lets Inductor prepack
# the Linear weights for oneDNN on CPU (a first, loaded measurement: 1.29 s vs 1.7 s per
# 256 HDFS windows without it; bench/RESULTS.md has the interleaved figures). CPU only:
# prepacking is a CPU gain. (CUDA packages crashed their loader on an H200 with torch
# 2.11 with and without freezing: not the cause.)
INDUCTOR_CONFIGS: dict[str, dict[str, object]] = {"cpu": {"freezing": True}, "cuda": {}}


def artifact_name(device: str, precision: str) -> str:
    """Bundle-relative file name of the package for this machine's ``device``."""
    return f"engines/aoti-{device_tag(device)}-{precision}-torch{torch.__version__}.pt2"


def _check(device: str, precision: str) -> None:
    check_device(device)
    if precision not in ("fp32", "fp16"):
        raise ConfigError("precision", precision, "'fp32' or 'fp16' for aoti")
    if precision == "fp16" and device == "cpu":
        raise ConfigError("precision", precision, "'fp32' on cpu (fp16 needs --device cuda)")


def _program_for(bundle: Bundle, device: str, precision: str) -> torch.export.ExportedProgram:
    program = program_on(bundle, device)
    if precision == "fp32":
        return program
    limits = bundle.manifest.get("program", {})
    max_batch, max_len = int(limits["max_batch"]), int(limits["max_len"])
    module = program.module().half()
    device = str(indexed(device))
    ids = torch.full((3, min(7, max_len)), 4, dtype=torch.int64, device=device)
    lengths = torch.tensor([ids.shape[1], 3, 2], dtype=torch.int64, device=device)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    seq = torch.export.Dim("seq", min=2, max=max_len)
    with torch.no_grad():
        return torch.export.export(
            module, (ids, lengths), dynamic_shapes=({0: batch, 1: seq}, {0: batch})
        )


def build(bundle: Bundle, *, device: str = "cpu", precision: str = "fp32") -> Bundle:
    """Compile ``program.pt2`` for ``device`` into the bundle's ``engines/`` (minutes)."""
    _check(device, precision)
    name = artifact_name(device, precision)
    t0 = time.perf_counter()
    program = _program_for(bundle, device, precision)
    with tempfile.TemporaryDirectory(dir=bundle.path, prefix=".build.") as tmp:
        out = Path(tmp) / "package.pt2"
        try:
            with warnings.catch_warnings():
                # torch's own compiler stack warns about its internal deprecations
                # (torch.jit.script_method...); nothing a user can act on.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                torch._inductor.aoti_compile_and_package(
                    program,
                    package_path=str(out),
                    inductor_configs=INDUCTOR_CONFIGS[torch.device(device).type],
                )
        except Exception as exc:  # a C++ toolchain problem surfaces here
            raise BackendUnavailable(
                f"AOTInductor could not compile for {device} ({type(exc).__name__}: {exc}); "
                "it needs a C++ compiler (gcc/g++) and, for CUDA, the CUDA toolkit"
            ) from None
        verify_in_child(out, device)
        entry: dict[str, object] = {
            "backend": "aoti",
            "precision": precision,
            "device": device_tag(device),
            "toolkit": f"torch {torch.__version__}",
            "build_seconds": round(time.perf_counter() - t0, 1),
        }
        return add_engine_file(bundle, name, out, entry)


# Loads the package and scores one batch; run in a child so that a crash stays there.
# Each step is announced on stderr first, so a crash can be placed (the loader or the
# first call); the child runs with faulthandler, which prints the Python stack on SIGSEGV.
STEP = "probe step: "  # how a probe announces what it does next
_PROBE = f"""
import sys, torch
print({STEP!r} + "loading the package", file=sys.stderr, flush=True)
runner = torch._inductor.aoti_load_package(sys.argv[1])
print({STEP!r} + "scoring one batch", file=sys.stderr, flush=True)
ids = torch.full((2, 5), 4, dtype=torch.int64, device=sys.argv[2])
scores, _ = runner(ids, torch.tensor([5, 3], dtype=torch.int64, device=sys.argv[2]))
assert bool(torch.isfinite(scores).all()), scores
"""


def crash_site(stderr: str) -> str:
    """Where the probe died: its last announced step and, after a fatal signal, the
    innermost Python frame faulthandler printed (else the last line of stderr)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    steps = [line[len(STEP) :] for line in lines if line.startswith(STEP)]
    frames = [line for line in lines if line.startswith("File ")]
    if frames and any(line.startswith("Fatal Python error") for line in lines):
        last = frames[0]  # faulthandler lists the most recent call first
    else:
        last = next((line for line in reversed(lines) if not line.startswith(STEP)), "no output")
    where = f"while {steps[-1]}" if steps else "before loading"
    return f"{where} ({last[:300]})"


def verify_in_child(package: Path, device: str, timeout_s: float = 600.0) -> None:
    """Load ``package`` and score a batch in a separate Python process before the bundle
    lists it. A compiled package that crashes its loader (an AOTInductor CUDA package
    segfaulted in ``aoti_load_package`` on an H200 with torch 2.11; bench/RESULTS.md)
    must fail the build with a clear error, not take a server down later."""
    try:
        child = subprocess.run(
            [sys.executable, "-X", "faulthandler", "-c", _PROBE, str(package),
             str(indexed(device))],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise BackendUnavailable(
            f"AOTInductor package for {device} did not load and run within {timeout_s:.0f} s"
        ) from None
    if child.returncode != 0:
        how = (
            f"crashed ({signal.Signals(-child.returncode).name})"
            if child.returncode < 0
            else f"failed (exit {child.returncode})"
        )
        raise BackendUnavailable(
            f"AOTInductor package for {device} compiled, but loading and running it {how} "
            f"{crash_site(child.stderr)}; not added to the bundle (use --backend torch or "
            "onnxruntime)"
        )


class AotiEngine:
    """Runs an AOTInductor package from the bundle's ``engines/``."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        precision: str = "fp32",
        device: str = "cpu",
        threads: int | None = None,
        build_missing: bool = False,
    ) -> None:
        _check(device, precision)
        self._device = torch.device(device)
        name = artifact_name(device, precision)
        if name not in bundle.manifest["files"]:
            if not build_missing:
                raise BundleError(
                    f"{bundle.path}: no {name} (run: logsieve build-engine --backend aoti "
                    f"--device {device} --precision {precision})"
                )
            bundle = build(bundle, device=device, precision=precision)
        if threads:
            torch.set_num_threads(threads)
        try:
            self._runner: Any = torch._inductor.aoti_load_package(str(bundle.file(name)))
        except Exception as exc:
            raise BundleError(f"{bundle.path / name}: cannot be loaded ({exc})") from None
        self.info = EngineInfo.for_bundle(bundle, "aoti", precision, device, name)

    def score(self, ids: IdArray, lengths: IdArray) -> tuple[FloatArray, FloatArray]:
        check_inputs(ids, lengths, self.info)
        with torch.inference_mode():
            s, p = self._runner(
                torch.from_numpy(np.ascontiguousarray(ids, np.int64)).to(self._device),
                torch.from_numpy(lengths.astype(np.int64)).to(self._device),
            )
        return s.float().cpu().numpy(), p.float().cpu().numpy()
