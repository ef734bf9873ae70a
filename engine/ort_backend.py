"""ONNX Runtime backend: the CPU default, and CUDA/TensorRT execution providers when the
installed onnxruntime has them.

This module and everything it imports stay free of torch: a CPU server that runs ONNX
Runtime never pays torch's import time or memory (a test checks ``sys.modules``).

Precisions: ``fp32`` runs the bundle's ``model.onnx``; ``int8`` runs
``engines/ort-int8.onnx``, made by :func:`build_int8` with ONNX Runtime's dynamic
quantization (8-bit weights, activations quantized per batch at run time: no calibration
data needed, which suits a detector whose threshold is the only calibrated thing).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from logsieve.bundle import Bundle
from logsieve.errors import BackendUnavailable, BundleError, ConfigError

from .base import EngineInfo, FloatArray, IdArray, add_engine_file, check_inputs

__all__ = ["INT8_FILE", "OrtEngine", "build_int8", "providers_for"]

INT8_FILE = "engines/ort-int8.onnx"


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # a dependency, but be clear if a slim install lacks it
        raise BackendUnavailable(
            f"onnxruntime is not importable ({exc}): pip install onnxruntime"
        ) from None
    return onnxruntime


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device`` (``cpu`` or ``cuda[:n]``), best first."""
    available = set(_ort().get_available_providers())
    if device == "cpu":
        return ["CPUExecutionProvider"]
    wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if not wanted:
        raise BackendUnavailable(
            f"onnxruntime has no CUDA provider (has {sorted(available)}): "
            "pip install onnxruntime-gpu, or use --device cpu"
        )
    return [*wanted, "CPUExecutionProvider"]


class OrtEngine:
    """An ``onnxruntime.InferenceSession`` over the bundle's ONNX model."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        precision: str = "fp32",
        device: str = "cpu",
        threads: int | None = None,
        build_missing: bool = False,
    ) -> None:
        ort = _ort()
        if precision not in ("fp32", "int8"):
            raise ConfigError("precision", precision, "'fp32' or 'int8' for onnxruntime")
        artifact = "model.onnx" if precision == "fp32" else INT8_FILE
        if artifact == INT8_FILE and artifact not in bundle.manifest["files"] and build_missing:
            bundle = build_int8(bundle)  # model.onnx itself comes from export, not from here
        if artifact not in bundle.manifest["files"]:
            hint = (
                "logsieve export --bundle B"
                if precision == "fp32"
                else "logsieve build-engine --backend onnxruntime --precision int8"
            )
            raise BundleError(f"{bundle.path}: no {artifact} in the bundle (run: {hint})")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: ORT's shape-inference chatter is noise
        try:
            self._session = ort.InferenceSession(
                str(bundle.file(artifact)), opts, providers=providers_for(device)
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise BundleError(
                f"{bundle.path / artifact}: onnxruntime cannot load it ({exc})"
            ) from None
        self.info = EngineInfo.for_bundle(bundle, "onnxruntime", precision, device, artifact)
        self.providers: list[str] = list(self._session.get_providers())

    def score(self, ids: IdArray, lengths: IdArray) -> tuple[FloatArray, FloatArray]:
        check_inputs(ids, lengths, self.info)
        scores, probs = self._session.run(
            ["scores", "token_probs"],
            {"ids": np.ascontiguousarray(ids, np.int64), "lengths": lengths.astype(np.int64)},
        )
        return scores, probs


def build_int8(bundle: Bundle) -> Bundle:
    """Write ``engines/ort-int8.onnx`` (dynamic int8 quantization of ``model.onnx``)."""
    _ort()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = bundle.file("model.onnx")
    with tempfile.TemporaryDirectory(dir=bundle.path, prefix=".build.") as tmp:
        out = Path(tmp) / "ort-int8.onnx"
        # MatMul/Gemm weights only: quantizing the embedding Gathers costs accuracy on
        # the [CLS] norm for no speed. uint8 weights (U8U8) rather than int8: on x86
        # without VNNI, ORT's U8S8 kernels can saturate the 16-bit intermediate sums;
        # measured here, int8 weights gave 2.9e-2 max relative score error, uint8 1.7e-2.
        quantize_dynamic(
            source, out, weight_type=QuantType.QUInt8, op_types_to_quantize=["MatMul", "Gemm"]
        )
        entry: dict[str, object] = {
            "backend": "onnxruntime",
            "precision": "int8",
            "device": "any",  # dynamic quantization: no device-specific code in the file
            "toolkit": f"onnxruntime {_ort().__version__}",
            "method": "quantize_dynamic, uint8 MatMul/Gemm weights",
        }
        return add_engine_file(bundle, INT8_FILE, out, entry)
