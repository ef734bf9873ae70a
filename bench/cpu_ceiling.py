"""How fast *any* CPU engine could score the engine benchmark's HDFS windows on this
machine: the ceiling behind issue 4's "best compiled CPU backend >= 2x torch eager fp32
at batch 256" target, measured rather than argued.

A compiled engine can remove Python dispatch, fuse the elementwise ops and drop padding,
but it must still do the model's matrix products. This script times exactly those
products, and nothing else, for the batches ``score_windows`` makes of the benchmark's
1,024 HDFS windows at batch 256:

- fp32: each ``nn.Linear`` of the model as one ``F.linear`` call (MKL/oneDNN, the
  fastest fp32 GEMM on this machine; ONNX Runtime's MLAS was slower in a side check) on
  the padded batch, and again on the real tokens only (a padding-free engine);
- int8: the same shapes through ONNX Runtime's ``DynamicQuantizeMatMul`` (per-tensor
  activations, the kernel its int8 backend runs) and through a per-token quantized
  ``MatMulIntegerToFloat`` (the accuracy fix: see ``--accuracy``);
- the eager model itself on the same windows.

eager time / GEMM-only time is the most any engine of that precision can gain here.
``--accuracy`` adds the verdict agreement of per-tensor and per-token int8 (simulated
with fake quantization in torch) on the engine suite's 2,000 parity windows.

Run (repo root): ``PYTHONPATH=. .venv/bin/python bench/cpu_ceiling.py BUNDLE
[--threads 1] [--accuracy]``; needs ``../shared/data`` (or ``$LOGSIEVE_DATA``).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from bench.test_engine_bench import _hdfs_windows, interleaved
from logsieve.bundle import open_bundle
from logsieve.engine.batching import batches, pad
from logsieve.export.fastlogad.model import Discriminator, load_discriminator
from tests.conftest import data_dir
from tests.engine.conftest import parity_windows

N_WINDOWS, BATCH, ROUNDS = 1024, 256, 9


def linears(model: Discriminator) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def gemm_rows(windows: list[np.ndarray], max_len: int) -> tuple[list[int], list[int], int]:
    """Rows each GEMM sees per batch: padded (``B * width``) and real tokens only."""
    lengths = np.array([len(w) for w in windows], dtype=np.int64)
    padded, real = [], []
    for idx, width in batches(lengths, BATCH, max_len):
        padded.append(len(idx) * width)
        real.append(int(lengths[idx].sum()))
    return padded, real, int(lengths.sum())


def fp32_gemms(layers: list[nn.Linear], rows: list[int]) -> Callable[[], None]:
    xs = [[torch.randn(m, lin.in_features) for lin in layers] for m in rows]

    def run() -> None:
        with torch.inference_mode():
            for per_batch in xs:
                for lin, x in zip(layers, per_batch, strict=True):
                    F.linear(x, lin.weight, lin.bias)

    return run


def _linear_graph(weight: np.ndarray, bias: np.ndarray, per_token: bool) -> bytes:
    """One int8 linear as ONNX Runtime runs it: dynamic per-tensor (``DynamicQuantizeMatMul``)
    or per-token activations (row scales, zero point 128) into ``MatMulIntegerToFloat``."""
    k, n = weight.shape
    scale = np.maximum(np.abs(weight).max(0), 1e-8) / 127  # per output column
    wq = (np.clip(np.round(weight / scale), -127, 127) + 128).astype(np.uint8)
    inits = [
        numpy_helper.from_array(wq, "wq"),
        numpy_helper.from_array(scale.astype(np.float32), "ws"),
        numpy_helper.from_array(np.full(n, 128, np.uint8), "wz"),
        numpy_helper.from_array(bias.astype(np.float32), "b"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
        numpy_helper.from_array(np.float32(127), "c127"),
        numpy_helper.from_array(np.float32(1e-8), "eps"),
        numpy_helper.from_array(np.float32(1), "one"),
        numpy_helper.from_array(np.uint8(128), "z128"),
    ]
    mk = helper.make_node
    if not per_token:
        nodes = [mk("DynamicQuantizeMatMul", ["x", "wq", "ws", "wz", "b"], ["y"],
                    domain="com.microsoft")]  # fmt: skip
    else:
        # MatMulIntegerToFloat takes only a per-tensor A scale (a [M, 1] scale gave
        # wrong results when ORT fused it), so the row scale is applied after it.
        nodes = [
            mk("Abs", ["x"], ["ax"]), mk("ReduceMax", ["ax", "last"], ["am"], keepdims=0),
            mk("Div", ["am", "c127"], ["s0"]), mk("Max", ["s0", "eps"], ["xs"]),
            mk("Shape", ["xs"], ["shape"]), mk("Expand", ["z128", "shape"], ["xz"]),
            mk("QuantizeLinear", ["x", "xs", "xz"], ["xq"], axis=0),
            mk("MatMulIntegerToFloat", ["xq", "wq", "one", "ws", "z128", "wz"], ["y0"],
               domain="com.microsoft"),
            mk("Unsqueeze", ["xs", "last"], ["xs2"]), mk("Mul", ["y0", "xs2"], ["y1"]),
            mk("Add", ["y1", "b"], ["y"]),
        ]  # fmt: skip
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        inits,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    return bytes(model.SerializeToString())


def int8_gemms(
    layers: list[nn.Linear], rows: list[int], threads: int, per_token: bool
) -> Callable[[], None]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sessions = [
        ort.InferenceSession(
            _linear_graph(
                lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy(), per_token
            ),
            opts,
            providers=["CPUExecutionProvider"],
        )
        for lin in layers
    ]
    rng = np.random.default_rng(0)
    xs = [[rng.standard_normal((m, lin.in_features), dtype=np.float32) for lin in layers]
          for m in rows]  # fmt: skip

    def run() -> None:
        for per_batch in xs:
            for sess, x in zip(sessions, per_batch, strict=True):
                sess.run(None, {"x": x})

    return run


def eager_model(model: Discriminator, windows: list[np.ndarray]) -> Callable[[], None]:
    lengths = np.array([len(w) for w in windows], dtype=np.int64)
    padded = [pad([windows[i] for i in idx], width)
              for idx, width in batches(lengths, BATCH, model.cfg.max_len)]  # fmt: skip

    def run() -> None:
        with torch.inference_mode():
            for ids, lens in padded:
                model.score(torch.from_numpy(ids), torch.from_numpy(lens))

    return run


def _fake_quant(x: torch.Tensor, per_token: bool) -> torch.Tensor:
    """Round-trip through 8 bits: asymmetric per tensor (ORT's dynamic quantization) or
    asymmetric per token (one scale and zero point per row)."""
    dims = (-1,) if per_token else tuple(range(x.dim()))
    lo = x.amin(dims, keepdim=True).clamp(max=0)
    hi = x.amax(dims, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / 255).clamp(min=1e-8)
    zero = torch.round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


class _FakeQuantLinear(nn.Module):
    def __init__(self, lin: nn.Linear, per_token: bool) -> None:
        super().__init__()
        w = lin.weight.detach()
        scale = w.abs().amax(1, keepdim=True).clamp(min=1e-8) / 127  # per output channel
        self.weight, self.bias, self.per_token = torch.round(w / scale) * scale, lin.bias, per_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(_fake_quant(x, self.per_token), self.weight, self.bias)


def accuracy(model: Discriminator, threshold: float, root: Path) -> None:
    from logsieve.export.data.prepare import prepare

    windows = parity_windows(prepare("hdfs-sessions", root / "hdfs" / "sessions"))
    lengths = np.array([len(w) for w in windows], dtype=np.int64)

    def scores(m: Discriminator) -> np.ndarray:
        out = np.empty(len(windows), np.float32)
        with torch.inference_mode():
            for idx, width in batches(lengths, BATCH, model.cfg.max_len):
                ids, lens = pad([windows[i] for i in idx], width)
                out[idx] = m.score(torch.from_numpy(ids), torch.from_numpy(lens))[0].numpy()
        return out

    ref = scores(model)
    print(f"\nint8 accuracy, simulated (2,000 parity windows, threshold {threshold:.4g}, "
          f"{int((ref > threshold).sum())} flagged):")  # fmt: skip
    for label, per_token in (("per-tensor activations", False), ("per-token activations", True)):
        quant = copy.deepcopy(model)
        for parent in list(quant.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear) and child.out_features > 1:
                    setattr(parent, name, _FakeQuantLinear(child, per_token))
        s = scores(quant)
        rel = np.abs(s - ref) / np.abs(ref)
        agree = float(np.mean((s > threshold) == (ref > threshold)))
        print(f"  {label}: max rel. score error {rel.max():.3g}, median {np.median(rel):.3g}, "
              f"identical verdicts {100 * agree:.2f}%")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--accuracy", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = data_dir()
    if root is None:
        raise SystemExit("real data not found: set LOGSIEVE_DATA or place ../shared/data")
    bundle = open_bundle(args.bundle)
    model = load_discriminator(bundle.file("model.pt")).eval()
    windows = _hdfs_windows(root, N_WINDOWS)
    layers = linears(model)
    padded, real, tokens = gemm_rows(windows, model.cfg.max_len)
    flops = 2 * sum(lin.in_features * lin.out_features for lin in layers) * sum(padded)
    real_flops = flops * tokens / sum(padded)
    runs = {"eager model": eager_model(model, windows)}
    work = {"eager model": float(flops)}
    for label, rows in (("padded batches", padded), ("real tokens only", real)):
        f = flops if rows is padded else real_flops
        runs[f"fp32, {label} (torch F.linear)"] = fp32_gemms(layers, rows)
        work[f"fp32, {label} (torch F.linear)"] = f
        for per_token, kind in ((False, "dynamic per-tensor"), (True, "per-token")):
            runs[f"int8 {kind}, {label} (ORT)"] = int8_gemms(layers, rows, args.threads, per_token)
            work[f"int8 {kind}, {label} (ORT)"] = f
    times = interleaved(runs, ROUNDS)
    eager = np.array(times["eager model"])
    print(
        f"{N_WINDOWS} HDFS windows, batch {BATCH}, {args.threads} thread(s): {tokens} tokens, "
        f"{sum(padded)} after padding, {len(padded)} batches, {len(layers)} linears; "
        f"{ROUNDS} interleaved rounds"
    )
    print(
        f"eager model: {np.median(eager):.3f} s median ({N_WINDOWS / np.median(eager):.0f} "
        "windows/s)"
    )
    print(
        "| GEMMs only (no attention, norms, activations) | s, median | GFLOPS "
        "| eager / this: median (range) |"
    )
    print("| --- | ---: | ---: | ---: |")
    for label, t in times.items():
        if label == "eager model":
            continue
        ratio = eager / np.array(t)
        print(
            f"| {label} | {np.median(t):.3f} | {work[label] / np.median(t) / 1e9:.1f} | "
            f"{np.median(ratio):.2f}x ({ratio.min():.2f}-{ratio.max():.2f}) |"
        )
    if args.accuracy:
        accuracy(model, bundle.threshold, root)


if __name__ == "__main__":
    main()
