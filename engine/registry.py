"""Pick, build and load an engine for a bundle.

``auto`` takes the first that works, in this documented order (fastest first, from the
measurements in ``bench/RESULTS.md``):

1. ``tensorrt`` fp16 on the GPU, when ``import tensorrt`` works and a CUDA GPU is present
   (the plan is built on first use and cached in the bundle's ``engines/``);
2. ``aoti`` on the GPU, fp16 then fp32, when such a package was built for this GPU;
3. ``torch`` on the GPU (the exported program, eager), when a CUDA GPU is present;
4. ``onnxruntime`` fp32 on the CPU, when the bundle has ``model.onnx``;
5. ``aoti`` fp32 on the CPU, when a package was built for this CPU and ONNX Runtime
   cannot run (the two are within noise of each other on large batches, ONNX Runtime
   is faster on single windows, a quiet server's batches, and needs no torch);
6. ``torch`` fp32 on the CPU.

int8 is never picked by ``auto``: its scores move by up to ~2% and depend on the other
windows of the batch (activations are quantized per batch), so it is opt-in.
A GPU is looked for only where the machine shows an NVIDIA device node, and AOTInductor
only when the bundle lists a package, so a CPU-only server ends at ONNX Runtime without
importing torch.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from logsieve.bundle import Bundle, open_bundle
from logsieve.errors import BackendUnavailable, BundleError, ConfigError

from .base import BACKENDS, BUILDABLE, PRECISIONS, Engine

__all__ = ["build_engine", "gpu_present", "load_engine"]

log = logging.getLogger(__name__)

_DEFAULT_PRECISION = {"tensorrt": "fp16", "aoti": "fp32", "onnxruntime": "fp32", "torch": "fp32"}


def gpu_present() -> bool:
    """An NVIDIA GPU that torch can use (torch is imported only if a device node exists)."""
    if not Path("/dev/nvidiactl").exists() and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _open(bundle: Bundle | Path) -> Bundle:
    return bundle if isinstance(bundle, Bundle) else open_bundle(Path(bundle))


def load_engine(
    bundle: Bundle | Path,
    backend: str = "auto",
    *,
    precision: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    build_missing: bool = False,
) -> Engine:
    """An engine for ``bundle``. ``auto`` follows the module's order; a named backend
    either loads or raises :class:`BackendUnavailable`/:class:`BundleError` saying why.
    ``build_missing``: build a missing compiled artifact (AOTI package, TensorRT plan,
    ONNX Runtime int8 model) into the bundle first instead of raising."""
    b = _open(bundle)
    if b.detector not in ("fastlogad", "adalog"):  # both export the same (ids, lengths) I/O
        raise BundleError(f"{b.path}: engines serve fastlogad and adalog bundles, not {b.detector}")
    if backend == "auto":
        return _auto(b, threads)
    if backend not in BACKENDS:
        raise ConfigError("backend", backend, f"'auto' or one of {', '.join(BACKENDS)}")
    precision = precision or _DEFAULT_PRECISION[backend]
    if precision not in PRECISIONS:
        raise ConfigError("precision", precision, f"one of {', '.join(PRECISIONS)}")
    device = device or ("cuda" if backend == "tensorrt" else "cpu")
    kwargs: dict[str, Any] = {"precision": precision, "device": device, "threads": threads}
    if backend == "onnxruntime":
        from .ort_backend import OrtEngine

        return OrtEngine(b, build_missing=build_missing, **kwargs)
    if backend == "torch":
        from .torch_backend import TorchEngine

        return TorchEngine(b, **kwargs)
    if backend == "aoti":
        from .aoti_backend import AotiEngine

        return AotiEngine(b, build_missing=build_missing, **kwargs)
    from .trt_backend import TrtEngine

    return TrtEngine(b, build_missing=build_missing, **kwargs)


def _auto(b: Bundle, threads: int | None) -> Engine:
    tried: list[str] = []
    candidates: list[tuple[str, str, str, bool]] = []  # backend, precision, device, build
    if gpu_present():
        if importlib.util.find_spec("tensorrt") is not None:
            candidates.append(("tensorrt", "fp16", "cuda", True))
        candidates += [("aoti", "fp16", "cuda", False), ("aoti", "fp32", "cuda", False)]
        candidates.append(("torch", "fp32", "cuda", False))
    candidates += [
        ("onnxruntime", "fp32", "cpu", False),
        ("aoti", "fp32", "cpu", False),
        ("torch", "fp32", "cpu", False),
    ]
    built_aoti = any(k.startswith("engines/aoti-") for k in b.manifest["files"])
    for backend, precision, device, build in candidates:
        if backend == "aoti" and not built_aoti:
            continue  # nothing built: skip without importing torch
        try:
            engine = load_engine(
                b, backend, precision=precision, device=device, threads=threads,
                build_missing=build,
            )  # fmt: skip
        except (BackendUnavailable, BundleError, ConfigError) as exc:
            tried.append(f"{backend}-{precision}-{device}: {exc}")
            continue
        log.info("engine auto: %s (skipped: %s)", engine.info.label, tried or "none")
        return engine
    raise BackendUnavailable(f"{b.path}: no engine can run here; tried " + "; ".join(tried))


def build_engine(
    bundle: Bundle | Path,
    backend: str,
    *,
    precision: str | None = None,
    device: str | None = None,
) -> tuple[Bundle, str]:
    """Build the artifact ``backend`` needs into the bundle; returns it and the file name."""
    b = _open(bundle)
    if backend not in BUILDABLE:
        raise ConfigError("backend", backend, "one of " + ", ".join(BUILDABLE))
    precision = precision or _DEFAULT_PRECISION[backend]
    device = device or ("cuda" if backend == "tensorrt" else "cpu")
    if "program.pt2" not in b.manifest["files"]:
        raise BundleError(f"{b.path}: not exported yet (run: logsieve export --bundle {b.path})")
    if backend == "onnxruntime":
        if device != "cpu":
            from .ort_backend import providers_for

            providers_for(device)  # raises when this onnxruntime has no CUDA provider
        if precision == "int8":
            from .ort_backend import INT8_FILE, build_int8

            return build_int8(b), INT8_FILE
        if precision != "fp32":
            raise ConfigError("precision", precision, "'fp32' or 'int8' for onnxruntime")
        return b, "model.onnx"  # written by export; nothing to compile
    if backend == "aoti":
        from . import aoti_backend

        return aoti_backend.build(b, device=device, precision=precision), (
            aoti_backend.artifact_name(device, precision)
        )
    from . import trt_backend

    built = trt_backend.build(b, device=device, precision=precision)
    return built, trt_backend.artifact_name(device, precision)
