"""Latency versus baselines (issue 6): ms per window of every method on the same real
windows in one run, batch 1 and batch 256; ADALog per line on real BGL lines.

Run: ``.venv/bin/pytest bench/test_baselines_bench.py --benchmark-columns=min,mean``.
The "latency versus baselines" section at the end prints ms/window, windows/s and each
method's ratio to FastLogAD through its fastest engine (``load_engine(bundle, "auto")``)
at the same batch size (> 1: slower than FastLogAD).

Methods, all on CPU with ``torch.set_num_threads(1)`` (one intra-op thread each;
``LOGSIEVE_BENCH_THREADS`` changes it):

* ``fastlogad-auto``: a bundle of ``logsieve train``'s default size (d 256, 4 layers,
  4 heads, FFN 256), loaded by ``load_engine(bundle, "auto")``, which on a CPU is ONNX
  Runtime fp32 (the registry's order; a test below checks it); ``fastlogad-aoti``: the
  AOTInductor CPU package built for the same bundle; ``fastlogad-eager``: the
  ``nn.Module`` from its ``model.pt`` (:class:`~logsieve.export.fastlogad.bundle.EagerEngine`).
  All three go through
  :func:`logsieve.engine.score_windows` (length bucketing). The bundle is trained
  briefly on the HDFS sessions, or taken from ``$LOGSIEVE_BENCH_BUNDLE`` (the AOTI
  package is built only when the bundle lacks one for this CPU: minutes).
* ``fastlogad-cache-cold`` / ``fastlogad-cache-warm``: the same ``auto`` engine behind
  the server's verdict cache (:class:`~logsieve.engine.cache.CachedWindowEngine` over a
  :class:`~logsieve.engine.windows.LocalWindowEngine`, the server's default bounds),
  scoring the same windows as template ids (what the server hands it). *cold*: a new,
  empty cache every round, so only windows repeated inside the round are hits; *warm*:
  a cache that first scored 8,192 *other* test chunks (a server some minutes into its
  traffic), then the round. The hit rate of each round is reported beside the figure.
* ``deeplog``, ``logbert``, ``iforest``: the baselines at their paper sizes as
  ``logsieve.export.evaluation.methods`` builds them, fitted once on the HDFS training windows with
  one epoch (speed does not depend on how well they are trained); each scores a batch
  with its own ``score`` (what the harness times). LogBERT's ``score`` pads a batch to
  its longest window, so ``logbert-bucketed`` also feeds it the same-width groups
  ``score_windows`` gives FastLogAD (model cost without the padding; batch > 1 only).
* ``adalog-eager`` (per *line*): an ADALog bundle at the default size (d 128, 2 layers,
  7 masking patterns, max 64 tokens) trained one epoch on the normal lines of
  ``bgl/raw/BGL_2k.log``, scoring the first lines of that file: tokenization (timestamp
  removal, masking, WordPiece) plus the eager model, as ``score_lines`` does minus
  loading the bundle. ``adalog-onnxruntime``: the same bundle exported, the model
  through ONNX Runtime fp32 (tokenization still timed).

Windows: a fixed sample (seed 0, as in ``test_engine_bench.py``) of real HDFS test
session chunks; 64 per round at batch 1, 1,024 at batch 256. Best of 3 rounds.
FastLogAD scores pre-parsed template ids (template matching runs at ~2M lines/s,
``bench/RESULTS.md``, and is not timed here); ADALog's unit is one raw line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.bundle import Bundle, open_bundle
from logsieve.engine import Engine, build_engine, load_engine, score_windows
from logsieve.engine.batching import batches
from logsieve.engine.cache import CachedWindowEngine, CacheStats, VerdictCache
from logsieve.engine.windows import LocalWindowEngine
from logsieve.export.data.prepare import Prepared
from logsieve.export.fastlogad.scoring import EagerEngine
from logsieve.logs.vocab import Vocab

THREADS = int(os.environ.get("LOGSIEVE_BENCH_THREADS", "1"))
N_ITEMS = {1: 64, 256: 1024}  # windows (lines for ADALog) scored per round, by batch size
WINDOW_METHODS = [
    "fastlogad-auto",
    "fastlogad-aoti",
    "fastlogad-eager",
    "fastlogad-cache-cold",
    "fastlogad-cache-warm",
    "deeplog",
    "logbert",
    "logbert-bucketed",
    "iforest",
]
LINE_METHODS = ["adalog-eager", "adalog-onnxruntime"]

Runner = Callable[[Sequence[Any], int], None]


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def hdfs(shared_data: Path) -> Prepared:
    from logsieve.export.data.prepare import prepare

    return prepare("hdfs-sessions", shared_data / "hdfs" / "sessions")


@pytest.fixture(scope="session")
def bench_windows(hdfs: Prepared) -> list[np.ndarray]:
    flat = [c for w in hdfs.test for c in w]
    return [flat[i] for i in _sample(len(flat))]


def _sample(n: int) -> np.ndarray:
    """Which of the ``n`` test chunks the bench scores (fixed: seed 0)."""
    return np.random.default_rng(0).choice(n, max(N_ITEMS.values()), replace=False)


@pytest.fixture(scope="session")
def fastlogad_bundle(hdfs: Prepared, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    from logsieve.engine.aoti_backend import artifact_name
    from logsieve.export.program import export_bundle

    env = os.environ.get("LOGSIEVE_BENCH_BUNDLE")
    if env:
        bundle = open_bundle(Path(env))
    else:
        from logsieve.export.fastlogad.bundle import train_bundle
        from logsieve.export.fastlogad.model import ModelConfig
        from logsieve.export.fastlogad.train import TrainConfig

        cfg = TrainConfig(rtd_epochs=1, hst_epochs=1, batch_size=64, seed=0)
        model = ModelConfig(vocab_size=hdfs.vocab.size, max_len=hdfs.log_config.max_len)
        out = tmp_path_factory.mktemp("baselines") / "bundle"
        bundle, _ = train_bundle(hdfs, out, train_cfg=cfg, model_cfg=model, progress=False)
    if int(bundle.manifest["vocab_size"]) != hdfs.vocab.size:
        pytest.skip(f"{bundle.path}: not an HDFS-sessions bundle (vocabulary size differs)")
    if "program.pt2" not in bundle.manifest["files"]:
        bundle = export_bundle(bundle.path)
    if artifact_name("cpu", "fp32") not in bundle.manifest["files"]:
        bundle, _ = build_engine(bundle.path, "aoti", precision="fp32", device="cpu")
    return bundle


@pytest.fixture(scope="session")
def fitted_baselines(hdfs: Prepared) -> dict[str, Any]:
    """The harness's baselines at their paper sizes, one epoch each (``--epochs 1``)."""
    from logsieve.export.evaluation.methods import EvalOptions, _make_baseline

    opt = EvalOptions(epochs=1)
    out: dict[str, Any] = {}
    for name in ("deeplog", "logbert", "iforest"):
        b = _make_baseline(name, hdfs, 0, opt)
        # LogBERT trains a paper-size transformer: 1,024 windows are plenty for timing.
        train = hdfs.train[:1024] if name == "logbert" else hdfs.train
        b.fit(train, hdfs.validation)
        out[name] = b
    return out


@dataclass
class AdaLogRig:
    bundle: Bundle
    model: Any
    tokenizer: Any
    lines: list[str]
    engine: Engine | None
    engine_error: str


@pytest.fixture(scope="session")
def adalog(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> AdaLogRig:
    from logsieve.export.adalog.bundle import (
        AdaLogConfig,
        export_adalog_bundle,
        load_adalog,
        read_line_texts,
        train_adalog_bundle,
    )

    path = shared_data / "bgl" / "raw" / "BGL_2k.log"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    texts, labels = read_line_texts(path, "bgl")
    normal = [t for t, y in zip(texts, labels, strict=True) if y == 0]
    cut = int(0.9 * len(normal))
    out = tmp_path_factory.mktemp("adalog") / "bundle"
    bundle = train_adalog_bundle(
        normal[:cut], normal[cut:], out, AdaLogConfig(epochs=1, seed=0), fmt="bgl"
    )
    model, tokenizer = load_adalog(bundle)
    engine: Engine | None = None
    error = ""
    try:
        bundle = export_adalog_bundle(bundle.path)
        engine = load_engine(bundle, "onnxruntime", threads=THREADS)
    except Exception as exc:  # report the row as skipped, with the reason
        error = f"{type(exc).__name__}: {exc}"
    return AdaLogRig(bundle, model, tokenizer, texts[: max(N_ITEMS.values())], engine, error)


def _chunks(items: Sequence[Any], batch: int) -> list[Sequence[Any]]:
    return [items[i : i + batch] for i in range(0, len(items), batch)]


WARM_WINDOWS = 8192  # chunks scored into the warm cache before the timed rounds


def _template_ids(vocab: Vocab, window: np.ndarray) -> list[int]:
    """A chunk's token ids (``[CLS]`` first) back to template ids (``[UNK]`` as -1)."""
    out = []
    for token in window[1:]:
        t = vocab.template_id(int(token))
        out.append(-1 if t is None else t)
    return out


def _cached_runner(
    method: str, bundle: Bundle, hdfs: Prepared, bench: list[np.ndarray]
) -> tuple[Runner, str, Callable[[], None], Callable[[], float]]:
    """The verdict-cache rows: the scoring call, its label, the untimed set-up of each
    round (a fresh cache, warmed for the warm row) and the last round's hit rate."""
    config = PipelineConfig()
    engine = load_engine(bundle, "auto", threads=THREADS)
    windows = LocalWindowEngine(engine, hdfs.vocab, hdfs.log_config)
    stats = CacheStats()
    as_ids = {id(w): _template_ids(hdfs.vocab, w) for w in bench}
    warm: list[list[int]] = []
    if method == "fastlogad-cache-warm":
        # Other chunks of the test data (by position, not by content: a chunk equal to
        # a benched one is what a server that saw earlier traffic holds).
        flat = [c for w in hdfs.test for c in w]
        rest = np.setdiff1d(np.arange(len(flat)), _sample(len(flat)))
        picks = np.random.default_rng(1).choice(rest, min(WARM_WINDOWS, len(rest)), replace=False)
        warm = [_template_ids(hdfs.vocab, flat[i]) for i in picks]
    state: dict[str, Any] = {}

    def fresh() -> CachedWindowEngine:
        cache = VerdictCache(config.verdict_cache_entries, config.verdict_cache_bytes, stats)
        cached = CachedWindowEngine(
            windows,
            cache,
            n_templates=hdfs.vocab.n_templates,
            max_len=hdfs.log_config.max_len,
            truncate=hdfs.log_config.truncate,
        )
        for chunk in _chunks(warm, 256):
            cached.score_ids(list(chunk))
        return cached

    def setup() -> None:  # untimed: the cache each round starts from
        state["cached"] = fresh()
        state["hits"], state["misses"] = stats.hits, stats.misses + stats.duplicates

    def run(ws: Sequence[Any], batch: int) -> None:
        cached = state["cached"]
        for chunk in _chunks(ws, batch):
            cached.score_ids([as_ids[id(w)] for w in chunk])

    def hit_rate() -> float:
        hits = stats.hits - state["hits"]
        return hits / max(1, hits + stats.misses + stats.duplicates - state["misses"])

    label = f"{engine.info.label} + verdict cache ({method.rsplit('-', 1)[1]})"
    return run, label, setup, hit_rate


def _window_runner(method: str, bundle: Bundle, baselines: dict[str, Any]) -> tuple[Runner, str]:
    """The scoring call and what runs it (engine label or baseline class)."""
    if method.startswith("fastlogad"):
        engine: Engine = (
            EagerEngine(bundle, int(bundle.manifest["program"]["max_batch"]))
            if method == "fastlogad-eager"
            else load_engine(bundle, "aoti", threads=THREADS)
            if method == "fastlogad-aoti"
            else load_engine(bundle, "auto", threads=THREADS)
        )

        def run_engine(ws: Sequence[Any], batch: int) -> None:
            score_windows(engine, ws, batch_size=batch)

        return run_engine, engine.info.label
    if method == "logbert-bucketed":
        lb = baselines["logbert"]

        def run_bucketed(ws: Sequence[Any], batch: int) -> None:
            lengths = np.array([len(w) for w in ws], dtype=np.int64)
            for idx, _width in batches(lengths, batch, lb.cfg.max_len):
                lb.score([ws[i] for i in idx])

        return run_bucketed, "LogBERT, fed score_windows' length buckets"
    b = baselines[method]

    def run_baseline(ws: Sequence[Any], batch: int) -> None:
        for chunk in _chunks(ws, batch):
            b.score(chunk)

    return run_baseline, type(b).__name__


def _line_runner(method: str, rig: AdaLogRig) -> tuple[Runner, str]:
    from logsieve.export.adalog.model import score_ids

    max_len = rig.model.cfg.max_len
    encode = rig.tokenizer.encode
    engine = rig.engine
    if method == "adalog-eager":

        def run_eager(lines: Sequence[Any], batch: int) -> None:
            for chunk in _chunks(lines, batch):
                score_ids(rig.model, [encode(line, max_len) for line in chunk], batch)

        return run_eager, "torch-eager-fp32-cpu"
    if engine is None:
        pytest.skip(f"ADALog engine unavailable: {rig.engine_error}")
    assert engine is not None

    def run_engine(lines: Sequence[Any], batch: int) -> None:
        for chunk in _chunks(lines, batch):
            ids = [np.asarray(encode(line, max_len), dtype=np.int64) for line in chunk]
            score_windows(engine, ids, batch_size=batch)

    return run_engine, engine.info.label


def _record(
    benchmark: Any,
    results: dict[str, dict[str, float | str]],
    key: str,
    n: int,
    unit: str,
    tokens: float,
    runs_on: str,
) -> None:
    best = benchmark.stats.stats.min
    results[key] = {
        "ms_per_item": 1000 * best / n,
        "items_per_s": n / best,
        "items": n,
        "unit": unit,
        "mean_tokens": tokens,
        "runs_on": runs_on,
    }
    benchmark.extra_info.update(results[key])


@pytest.mark.parametrize("batch", [1, 256])
@pytest.mark.parametrize("method", WINDOW_METHODS)
def test_window_latency(
    benchmark: Any,
    method: str,
    batch: int,
    fastlogad_bundle: Bundle,
    fitted_baselines: dict[str, Any],
    hdfs: Prepared,
    bench_windows: list[np.ndarray],
    baseline_results: dict[str, dict[str, float | str]],
) -> None:
    if method == "logbert-bucketed" and batch == 1:
        pytest.skip("batch 1 pads nothing: the logbert row is the same call")
    ws = bench_windows[: N_ITEMS[batch]]
    benchmark.group = f"batch {batch}"
    if method.startswith("fastlogad-cache"):
        run, runs_on, setup, hit_rate = _cached_runner(method, fastlogad_bundle, hdfs, ws)

        def round_setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            setup()
            return (ws, batch), {}

        benchmark.pedantic(run, setup=round_setup, rounds=3, warmup_rounds=1)
        runs_on = f"{runs_on}, {100 * hit_rate():.0f}% hits"
    else:
        run, runs_on = _window_runner(method, fastlogad_bundle, fitted_baselines)
        benchmark.pedantic(run, args=(ws, batch), rounds=3, warmup_rounds=1)
    tokens = float(np.mean([len(w) for w in ws]))
    _record(benchmark, baseline_results, f"b{batch} {method}", len(ws), "window", tokens, runs_on)


@pytest.mark.parametrize("batch", [1, 256])
@pytest.mark.parametrize("method", LINE_METHODS)
def test_line_latency(
    benchmark: Any,
    method: str,
    batch: int,
    adalog: AdaLogRig,
    baseline_results: dict[str, dict[str, float | str]],
) -> None:
    run, runs_on = _line_runner(method, adalog)
    lines = adalog.lines[: N_ITEMS[batch]]
    benchmark.group = f"batch {batch}"
    benchmark.pedantic(run, args=(lines, batch), rounds=3, warmup_rounds=1)
    max_len = adalog.model.cfg.max_len
    tokens = float(np.mean([len(adalog.tokenizer.encode(line, max_len)) for line in lines]))
    _record(benchmark, baseline_results, f"b{batch} {method}", len(lines), "line", tokens, runs_on)


def test_auto_picks_onnxruntime(fastlogad_bundle: Bundle) -> None:
    """The reference row is what a CPU server runs: ``auto`` picks ONNX Runtime fp32 over
    the AOTI package built above (the registry's documented order)."""
    engine = load_engine(fastlogad_bundle, "auto", threads=THREADS)
    assert engine.info.label == "onnxruntime-fp32-cpu", engine.info.label
