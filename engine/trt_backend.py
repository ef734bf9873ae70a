"""TensorRT backend: an FP16 plan built from the bundle's ``model.onnx``, run by tensor name.

Build (:func:`build`): parse ``model.onnx`` with TensorRT's ONNX parser, enable FP16, add
one optimization profile per length bucket (:data:`LENGTH_BUCKETS`, each over batch
``1..max_batch``), serialize the plan into ``engines/trt-<precision>-<gpu>-sm<cc>-trt<ver>.plan``.
The name carries everything a plan depends on, so another GPU or TensorRT version
rebuilds rather than loading an incompatible plan.

Run (:class:`TrtEngine`): one execution context per profile; a batch goes to the context
whose bucket holds its width; device buffers are torch CUDA tensors bound with
``set_tensor_address`` and the plan runs with ``execute_async_v3`` on a torch stream.

Nothing here falls back silently: without ``import tensorrt`` and a CUDA GPU every entry
point raises :class:`BackendUnavailable` saying what to install.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from logsieve.bundle import Bundle
from logsieve.errors import BackendUnavailable, BundleError, ConfigError

from .base import EngineInfo, FloatArray, IdArray, add_engine_file, check_inputs
from .devices import device_tag
from .torch_backend import check_device

__all__ = ["LENGTH_BUCKETS", "TrtEngine", "artifact_name", "build"]

# (min, opt, max) sequence lengths per optimization profile: most HDFS sessions are
# short, BGL/Thunderbird windows are long; one profile over 2..512 would tune kernels
# for one shape and run the others slowly.
LENGTH_BUCKETS = ((2, 32, 64), (65, 128, 160), (161, 320, 512))
OPT_BATCH = 256
WORKSPACE_BYTES = 1 << 30


def _trt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(
            f"TensorRT is not importable ({exc}): pip install 'logsieve[gpu]' "
            "(tensorrt wheels come from NVIDIA's package index) on a machine with an NVIDIA GPU"
        ) from None
    return tensorrt


def _check_ok(ok: object, what: str) -> None:
    """The one place a failed TensorRT/CUDA call becomes an error."""
    if not ok:
        raise BackendUnavailable(f"TensorRT: {what} failed")


def artifact_name(device: str, precision: str) -> str:
    trt = _trt()
    return f"engines/trt-{precision}-{device_tag(device)}-trt{trt.__version__}.plan"


def _profiles(max_batch: int, max_len: int) -> list[tuple[int, int, int]]:
    out = []
    for lo, opt, hi in LENGTH_BUCKETS:
        if lo > max_len:
            break
        out.append((lo, min(opt, max_len), min(hi, max_len)))
    return out


def build(bundle: Bundle, *, device: str = "cuda", precision: str = "fp16") -> Bundle:
    """Build and cache the plan for this GPU; returns the updated bundle (minutes)."""
    trt = _trt()
    if precision not in ("fp16", "fp32"):
        raise ConfigError("precision", precision, "'fp16' or 'fp32' for tensorrt")
    if device == "cpu":
        raise ConfigError("device", device, "a CUDA device for tensorrt")
    check_device(device)
    limits = bundle.manifest.get("program", {})
    max_batch, max_len = int(limits["max_batch"]), int(limits["max_len"])
    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(bundle.file("model.onnx").read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"{bundle.path / 'model.onnx'}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    buckets = _profiles(max_batch, max_len)
    opt_b = min(OPT_BATCH, max_batch)
    for lo, opt, hi in buckets:
        profile = builder.create_optimization_profile()
        profile.set_shape("ids", (1, lo), (opt_b, opt), (max_batch, hi))
        profile.set_shape("lengths", (1,), (opt_b,), (max_batch,))
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    _check_ok(plan is not None, "build_serialized_network (see the TensorRT log above)")
    name = artifact_name(device, precision)
    with tempfile.TemporaryDirectory(dir=bundle.path, prefix=".build.") as tmp:
        out = Path(tmp) / "engine.plan"
        out.write_bytes(bytes(plan))
        entry: dict[str, object] = {
            "backend": "tensorrt",
            "precision": precision,
            "device": device_tag(device),
            "toolkit": f"tensorrt {trt.__version__}",
            "profiles": [list(b) for b in buckets],
            "build_seconds": round(time.perf_counter() - t0, 1),
        }
        return add_engine_file(bundle, name, out, entry)


_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "INT64": torch.int64,
                 "INT32": torch.int32}  # fmt: skip


class TrtEngine:
    """Runs a cached TensorRT plan; builds it first when ``build_missing``."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        precision: str = "fp16",
        device: str = "cuda",
        threads: int | None = None,
        build_missing: bool = False,
    ) -> None:
        trt = _trt()
        self._device = check_device(device)
        name = artifact_name(device, precision)
        if name not in bundle.manifest["files"]:
            if not build_missing:
                raise BundleError(
                    f"{bundle.path}: no {name} (run: logsieve build-engine --backend tensorrt)"
                )
            bundle = build(bundle, device=device, precision=precision)
        self._buckets = [tuple(b) for b in bundle.manifest["engines"][name]["profiles"]]
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(bundle.file(name).read_bytes())
        if self._engine is None:
            raise BundleError(f"{bundle.path / name}: TensorRT cannot deserialize the plan")
        self._stream = torch.cuda.Stream(device=self._device)  # type: ignore[no-untyped-call]
        self._contexts = []
        for index in range(len(self._buckets)):
            ctx = self._engine.create_execution_context()
            _check_ok(ctx is not None, "create_execution_context")
            _check_ok(
                ctx.set_optimization_profile_async(index, self._stream.cuda_stream),
                f"set_optimization_profile_async({index})",
            )
            self._contexts.append(ctx)
        self._dtypes = {
            n: _TORCH_DTYPES[self._engine.get_tensor_dtype(n).name]
            for n in ("ids", "lengths", "scores", "token_probs")
        }
        self.info = EngineInfo.for_bundle(bundle, "tensorrt", precision, device, name)

    def score(self, ids: IdArray, lengths: IdArray) -> tuple[FloatArray, FloatArray]:
        check_inputs(ids, lengths, self.info)
        b, t = ids.shape
        index = next(i for i, (lo, _, hi) in enumerate(self._buckets) if lo <= t <= hi)
        ctx = self._contexts[index]
        dev = self._device
        tensors = {
            "ids": torch.from_numpy(np.ascontiguousarray(ids)).to(dev, self._dtypes["ids"]),
            "lengths": torch.from_numpy(lengths).to(dev, self._dtypes["lengths"]),
            "scores": torch.empty((b,), dtype=self._dtypes["scores"], device=dev),
            "token_probs": torch.empty((b, t), dtype=self._dtypes["token_probs"], device=dev),
        }
        _check_ok(ctx.set_input_shape("ids", (b, t)), f"set_input_shape(ids, {(b, t)})")
        _check_ok(ctx.set_input_shape("lengths", (b,)), f"set_input_shape(lengths, {(b,)})")
        for tensor_name, tensor in tensors.items():
            _check_ok(ctx.set_tensor_address(tensor_name, tensor.data_ptr()), tensor_name)
        # Inputs were copied on the current stream; make ours wait for them.
        self._stream.wait_stream(torch.cuda.current_stream(dev))
        _check_ok(ctx.execute_async_v3(self._stream.cuda_stream), "execute_async_v3")
        self._stream.synchronize()
        return (
            tensors["scores"].float().cpu().numpy(),
            tensors["token_probs"].float().cpu().numpy(),
        )
