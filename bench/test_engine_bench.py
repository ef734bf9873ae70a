"""Engine backends: windows/s and ms/window at batch 1, 64 and 256, HDFS- and BGL-length
windows, torch eager fp32 (the ``nn.Module`` from ``model.pt``) as the reference in the
same run.

Run: ``.venv/bin/pytest bench/test_engine_bench.py --benchmark-columns=min,mean,ops``.
The "engine throughput" section at the end prints windows/s and each backend's ratio
to torch eager; ``test_best_compiled_cpu_speedup`` checks the issue's target (the best
compiled CPU backend >= 2x torch eager at batch 256 on HDFS windows) and fails,
printing the figure, when it is not met.

Model: the paper's size (d 256, 4 layers, 4 heads, FFN 256), trained briefly on the
real HDFS sessions (speed does not depend on how well it is trained) or the bundle in
``$LOGSIEVE_BENCH_BUNDLE``. Windows: a fixed sample of real HDFS test sessions; for
BGL, the lengths of the real BGL windows (100 events + [CLS]) with their event ids
folded into this model's vocabulary (cost depends on shape, not on which ids).
Every backend scores the same windows through :func:`logsieve.engine.score_windows`
(length bucketing included), with one intra-op thread per engine unless
``LOGSIEVE_BENCH_THREADS`` says otherwise.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from logsieve.bundle import Bundle, open_bundle
from logsieve.engine import COMBINATIONS, Engine, load_engine, score_windows
from logsieve.export.fastlogad.scoring import EagerEngine

THREADS = int(os.environ.get("LOGSIEVE_BENCH_THREADS", "1"))
N_WINDOWS = {1: 64, 64: 512, 256: 1024}  # windows scored per round, by batch size
# torch eager (the nn.Module from model.pt) is the reference, then every combination;
# "torch" on cuda, the exported program run eagerly on the GPU, is the GPU reference.
BACKENDS = [("torch-eager", "fp32", "cpu"), *COMBINATIONS]


@pytest.fixture(scope="session")
def bench_bundle(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    torch.set_num_threads(THREADS)
    env = os.environ.get("LOGSIEVE_BENCH_BUNDLE")
    if env:
        bundle = open_bundle(Path(env))
    else:
        from logsieve.export.data.prepare import prepare
        from logsieve.export.fastlogad.bundle import train_bundle
        from logsieve.export.fastlogad.model import ModelConfig
        from logsieve.export.fastlogad.train import TrainConfig
        from logsieve.export.program import export_bundle

        data = prepare("hdfs-sessions", shared_data / "hdfs" / "sessions")
        cfg = TrainConfig(rtd_epochs=1, hst_epochs=1, batch_size=64, seed=0)
        model = ModelConfig(vocab_size=data.vocab.size, max_len=data.log_config.max_len)
        out = tmp_path_factory.mktemp("bench") / "bundle"
        bundle, _ = train_bundle(data, out, train_cfg=cfg, model_cfg=model, progress=False)
        bundle = export_bundle(bundle.path)
    if "program.pt2" not in bundle.manifest["files"]:
        from logsieve.export.program import export_bundle

        bundle = export_bundle(bundle.path)
    return bundle


def _skip_reason(backend: str, device: str) -> str | None:
    if device == "cuda" and not torch.cuda.is_available():
        return f"{backend} on cuda: no CUDA GPU visible to torch {torch.__version__}"
    if backend == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (its wheels come from NVIDIA's index)"
    return None


def _hdfs_windows(root: Path, n: int) -> list[np.ndarray]:
    from logsieve.export.data.prepare import prepare

    data = prepare("hdfs-sessions", root / "hdfs" / "sessions")
    flat = [c for w in data.test for c in w]
    rng = np.random.default_rng(0)
    return [flat[i] for i in rng.choice(len(flat), n, replace=False)]


def _bgl_windows(root: Path, n: int, vocab: int) -> list[np.ndarray]:
    out = []
    with (root / "bgl" / "windows" / "train.jsonl").open() as f:
        for line in f:
            ids = json.loads(line)["event_ids"]
            out.append(np.array([1, *((int(i) % (vocab - 4)) + 4 for i in ids)], dtype=np.int64))
            if len(out) == n:
                break
    return out


@pytest.fixture(scope="session")
def windows(shared_data: Path, bench_bundle: Bundle) -> dict[str, list[np.ndarray]]:
    n = max(N_WINDOWS.values())
    vocab = int(bench_bundle.manifest["vocab_size"])
    return {"hdfs": _hdfs_windows(shared_data, n), "bgl": _bgl_windows(shared_data, n, vocab)}


def _runner(
    bundle: Bundle, backend: str, precision: str, device: str = "cpu"
) -> Callable[..., Any]:
    """Score with one backend; builds (once, into the bundle) what it needs, untimed."""
    reason = _skip_reason(backend, device)
    if reason:
        pytest.skip(reason)
    if backend == "torch-eager":
        engine: Engine = EagerEngine(bundle, int(bundle.manifest["program"]["max_batch"]))
    else:
        engine = load_engine(
            bundle.path, backend, precision=precision, device=device, threads=THREADS,
            build_missing=True,
        )  # fmt: skip
    return lambda ws, batch: score_windows(engine, ws, batch_size=batch)


def _key(kind: str, batch: int, backend: str, precision: str, device: str) -> str:
    suffix = "" if device == "cpu" else f"-{device}"
    return f"{kind} b{batch} {backend}-{precision}{suffix}"


@pytest.mark.parametrize("batch", [1, 64, 256])
@pytest.mark.parametrize("kind", ["hdfs", "bgl"])
@pytest.mark.parametrize(
    ("backend", "precision", "device"), BACKENDS, ids=["-".join(b) for b in BACKENDS]
)
def test_engine(
    benchmark: Any,
    bench_bundle: Bundle,
    windows: dict[str, list[np.ndarray]],
    backend: str,
    precision: str,
    device: str,
    kind: str,
    batch: int,
    engine_results: dict[str, dict[str, float]],
) -> None:
    run = _runner(bench_bundle, backend, precision, device)
    ws = windows[kind][: N_WINDOWS[batch]]
    benchmark.group = f"{kind} batch {batch}"
    benchmark.pedantic(run, args=(ws, batch), rounds=3, warmup_rounds=1)
    best = benchmark.stats.stats.min
    key = _key(kind, batch, backend, precision, device)
    engine_results[key] = {
        "windows_per_s": len(ws) / best,
        "ms_per_window": 1000 * best / len(ws),
        "windows": len(ws),
        "mean_tokens": float(np.mean([len(w) for w in ws])),
    }
    benchmark.extra_info.update(engine_results[key])


def test_best_compiled_cpu_speedup(
    bench_bundle: Bundle, windows: dict[str, list[np.ndarray]]
) -> None:
    """The issue's target: the best compiled CPU backend >= 2x torch eager fp32 at batch
    256 on HDFS windows. Measured here with **interleaved** rounds (eager, then each
    backend, repeated) and the median of per-round ratios, so load that drifts during a
    run (other jobs on a shared machine) cancels out; the per-test figures above are
    taken minutes apart and their ratios can be off by 2x on a loaded machine."""
    ws = windows["hdfs"][: N_WINDOWS[256]]
    runners = {
        name: _runner(bench_bundle, backend, precision)
        for name, (backend, precision) in {
            "torch-eager-fp32": ("torch-eager", "fp32"),
            "onnxruntime-fp32": ("onnxruntime", "fp32"),
            "onnxruntime-int8": ("onnxruntime", "int8"),
            "aoti-fp32": ("aoti", "fp32"),
        }.items()
    }
    times = interleaved({name: functools.partial(run, ws, 256) for name, run in runners.items()})
    eager = np.array(times.pop("torch-eager-fp32"))
    ratios = {name: [float(r) for r in eager / np.array(t)] for name, t in times.items()}
    median = _report("interleaved speed-up over torch eager, hdfs batch 256", ratios)
    best = max(median, key=lambda k: median[k])
    assert median[best] >= 2.0, f"best compiled CPU backend {best}: {median[best]:.2f}x eager"


ROUNDS_INTERLEAVED = 5


def interleaved(
    runs: Mapping[str, Callable[[], object]], rounds: int = ROUNDS_INTERLEAVED
) -> dict[str, list[float]]:
    """Seconds per round of each callable: one warm-up call each, then ``rounds`` rounds
    in which they take turns, so load that drifts during a run (other jobs on a shared
    machine) hits them alike; compare them by ratios taken within a round."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return times


def _timed(run: Callable[..., Any], ws: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    run(ws, 256)
    return time.perf_counter() - t0


def test_gpu_order_holds(bench_bundle: Bundle, windows: dict[str, list[np.ndarray]]) -> None:
    """``auto`` prefers AOTInductor over the exported program on the GPU (registry order):
    check that it is faster there, interleaved at batch 256 on HDFS windows, and print each
    GPU backend's speed-up over torch eager on the CPU (the issue's reference)."""
    ws = windows["hdfs"][: N_WINDOWS[256]]
    names = {
        "torch-eager-fp32": ("torch-eager", "fp32", "cpu"),
        "torch-fp32-cuda": ("torch", "fp32", "cuda"),
        "aoti-fp32-cuda": ("aoti", "fp32", "cuda"),
        "aoti-fp16-cuda": ("aoti", "fp16", "cuda"),
    }
    runners = {name: _runner(bench_bundle, *spec) for name, spec in names.items()}
    # The warm-up call also creates the CUDA context and autotunes kernels.
    times = interleaved({name: functools.partial(run, ws, 256) for name, run in runners.items()})
    best = {name: min(t) for name, t in times.items()}
    cpu, gpu = best["torch-eager-fp32"], best["torch-fp32-cuda"]
    print(f"\nGPU, hdfs batch 256, interleaved (best of {ROUNDS_INTERLEAVED}): " + ", ".join(
        f"{k} {len(ws) / v:,.0f} windows/s ({cpu / v:.1f}x cpu eager, {gpu / v:.2f}x torch cuda)"
        for k, v in best.items()))  # fmt: skip
    fastest_aoti = min(best["aoti-fp32-cuda"], best["aoti-fp16-cuda"])
    assert fastest_aoti <= best["torch-fp32-cuda"], "AOTInductor slower than eager on the GPU"


def _multiples_of_8(length: int, max_len: int) -> int:
    """The first bucketing rule (powers of two to 16, then multiples of 8), kept as the
    baseline of :func:`test_bucketing_against_the_first_rule`."""
    if length <= 16:
        return min(max(2, 1 << (max(length, 2) - 1).bit_length()), max_len)
    return min(-(-length // 8) * 8, max_len)


CPU_BACKENDS = {
    "torch-eager-fp32": ("torch-eager", "fp32"),
    "onnxruntime-fp32": ("onnxruntime", "fp32"),
    "aoti-fp32": ("aoti", "fp32"),
}


def _batching_ab(
    bundle: Bundle,
    ws: list[np.ndarray],
    variants: dict[str, tuple[str, object]],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, list[float]]:
    """Each CPU backend scoring ``ws`` at batch 256 under two settings of
    ``logsieve.engine.batching`` (``variants``: name -> (attribute, value); the first is
    the new one, the second the baseline), both in every round: baseline time / new time
    per round, after a warm-up round."""
    from logsieve.engine import batching

    runners = {name: _runner(bundle, *spec) for name, spec in CPU_BACKENDS.items()}
    (new, _), (base, _) = variants.items()
    ratios: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(ROUNDS_INTERLEAVED + 1):
        for name, run in runners.items():
            took = {}
            for variant, (attribute, value) in variants.items():
                monkeypatch.setattr(batching, attribute, value)
                took[variant] = _timed(run, ws)
            if round_:  # the first round warms up both sets of shapes
                ratios[name].append(took[base] / took[new])
    return ratios


def _report(title: str, ratios: dict[str, list[float]]) -> dict[str, float]:
    median = {name: float(np.median(r)) for name, r in ratios.items()}
    print(f"\n{title}, median of {ROUNDS_INTERLEAVED} interleaved rounds: "
          + ", ".join(f"{k} {v:.2f}x ({min(ratios[k]):.2f}-{max(ratios[k]):.2f})"
                      for k, v in median.items()))  # fmt: skip
    return median


def test_bucketing_against_the_first_rule(
    bench_bundle: Bundle, windows: dict[str, list[np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The current bucket widths (exact to 16, then steps of an eighth) against the first
    rule, HDFS windows at batch 256: the median per-round ratio must not fall below 1
    (fewer padded tokens must not cost time through more, smaller batches)."""
    from logsieve.engine import batching

    ws = windows["hdfs"][: N_WINDOWS[256]]
    lengths = np.array([len(w) for w in ws], dtype=np.int64)
    rules = {"current": batching.bucket_width, "first": _multiples_of_8}
    tokens = {}
    for name, rule in rules.items():
        monkeypatch.setattr(batching, "bucket_width", rule)
        tokens[name] = sum(len(i) * w for i, w in batching.batches(lengths, 256, 512))
    variants = {name: ("bucket_width", rule) for name, rule in rules.items()}
    ratios = _batching_ab(bench_bundle, ws, variants, monkeypatch)
    median = _report(
        f"bucketing, hdfs batch 256, padded tokens {tokens['first']} (first rule) -> "
        f"{tokens['current']} (current); time first/current",
        ratios,
    )
    assert tokens["current"] < tokens["first"]
    assert float(np.median(list(median.values()))) >= 1.0, median


@pytest.mark.parametrize("kind", ["bgl", "hdfs"])
def test_cpu_token_budget(
    bench_bundle: Bundle,
    windows: dict[str, list[np.ndarray]],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """Calls of at most CPU_MAX_TOKENS tokens against whole batches of 256, each CPU
    backend: the median per-round ratio must not fall below 1."""
    from logsieve.engine import batching

    budget = batching.CPU_MAX_TOKENS
    variants = {"budget": ("CPU_MAX_TOKENS", budget), "whole batch": ("CPU_MAX_TOKENS", 1 << 30)}
    ratios = _batching_ab(bench_bundle, windows[kind][: N_WINDOWS[256]], variants, monkeypatch)
    median = _report(
        f"{kind} batch 256, calls of <= {budget} tokens; time whole batch/budget",
        ratios,
    )
    assert float(np.median(list(median.values()))) >= 1.0, median


def test_cpu_order_holds(bench_bundle: Bundle, windows: dict[str, list[np.ndarray]]) -> None:
    """``auto`` on a CPU takes ONNX Runtime fp32 before a built AOTInductor package
    (registry order): time both against eager, interleaved, at every batch size on both
    kinds of window, print the ratios, and check what the order rests on, by the median
    of per-round ratios: ONNX Runtime ahead on single HDFS windows (the batches a quiet
    server scores) and not materially behind (within 10%) at batch 256."""
    runners = {name: _runner(bench_bundle, *spec) for name, spec in CPU_BACKENDS.items()}
    table: dict[tuple[str, int], dict[str, float]] = {}
    for kind in ("hdfs", "bgl"):
        for batch in (1, 64, 256):
            ws = windows[kind][: N_WINDOWS[batch]]
            times = interleaved(
                {name: functools.partial(run, ws, batch) for name, run in runners.items()}
            )
            eager = np.array(times["torch-eager-fp32"])
            table[kind, batch] = {
                n: float(np.median(eager / np.array(t))) for n, t in times.items()
            }
    print("\nCPU order, speed-up over torch eager fp32 (median of "
          f"{ROUNDS_INTERLEAVED} interleaved rounds):")  # fmt: skip
    for (kind, batch), ratios in table.items():
        shown = {k: v for k, v in ratios.items() if k != "torch-eager-fp32"}
        print(f"  {kind} batch {batch}: " + ", ".join(f"{k} {v:.2f}x" for k, v in shown.items()))
    single, full = table["hdfs", 1], table["hdfs", 256]
    assert single["onnxruntime-fp32"] >= single["aoti-fp32"], single
    assert full["onnxruntime-fp32"] >= 0.9 * full["aoti-fp32"], full
