"""The engine in a child process: same scores as in-process, survives a killed child,
names a bad bundle, ignores the signals the server handles, and is the serving default."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.pipeline import StreamingPipeline
from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.agent_plugin.pipeline_metrics import PipelineMetrics
from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.engine.windows import score_template_windows
from logsieve.engine.worker import EngineWorker, EngineWorkerError
from logsieve.errors import BundleError, ConfigError

WINDOWS = [[0, 1, 2], [3], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [2, 0]]


@pytest.fixture(scope="module")
def worker(tiny_bundle: Bundle) -> EngineWorker:
    w = EngineWorker(tiny_bundle.path, "onnxruntime", threads=1)
    yield w  # type: ignore[misc]
    w.close()


def _pid(worker: EngineWorker) -> int:
    assert worker._proc is not None and worker._proc.pid is not None
    return worker._proc.pid


def test_scores_match_the_in_process_engine(
    worker: EngineWorker, tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    assert tiny_bundle.vocab is not None
    expected = score_template_windows(
        tiny_engine, tiny_bundle.vocab, tiny_bundle.log_config, WINDOWS, 256
    )
    got = worker.score_ids(WINDOWS)
    assert [len(p) for _, p in got] == [len(w) for w in WINDOWS]
    for (s, p), (es, ep) in zip(got, expected, strict=True):
        assert s == pytest.approx(es, rel=1e-6)
        assert p == pytest.approx(ep, rel=1e-6, abs=1e-7)
    assert worker.info.label == "onnxruntime-fp32-cpu"
    assert worker.score_ids([]) == []


def test_child_ignores_sigterm_and_sigint(worker: EngineWorker) -> None:
    """A process-group signal must not kill the engine while the server flushes windows."""
    pid = _pid(worker)
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    assert len(worker.score_ids(WINDOWS)) == len(WINDOWS)
    assert _pid(worker) == pid and worker.restarts == 0


def test_killed_child_is_restarted_and_the_batch_retried(worker: EngineWorker) -> None:
    before = worker.score_ids(WINDOWS)
    pid = _pid(worker)
    os.kill(pid, signal.SIGKILL)
    assert worker.score_ids(WINDOWS) == before
    assert worker.restarts == 1 and _pid(worker) != pid


def test_an_engine_error_comes_back_and_the_child_goes_on(
    worker: EngineWorker, tiny_bundle: Bundle, tiny_engine: Engine
) -> None:
    assert tiny_bundle.vocab is not None
    bad = [["not a template id"]]
    with pytest.raises(Exception) as in_process:
        score_template_windows(tiny_engine, tiny_bundle.vocab, tiny_bundle.log_config, bad)
    with pytest.raises(in_process.type):
        worker.score_ids(bad)  # type: ignore[arg-type]
    assert len(worker.score_ids(WINDOWS)) == len(WINDOWS)


def test_a_bad_bundle_fails_at_start_with_the_loaders_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="manifest"):
        EngineWorker(tmp_path, "onnxruntime")


def test_a_bad_backend_fails_at_start(tiny_bundle: Bundle) -> None:
    with pytest.raises(ConfigError, match="backend"):
        EngineWorker(tiny_bundle.path, "nonesuch")


def test_close_is_idempotent_and_final(tiny_bundle: Bundle) -> None:
    w = EngineWorker(tiny_bundle.path, "onnxruntime", threads=1)
    proc = w._proc
    w.close()
    w.close()
    assert proc is not None and not proc.is_alive()
    with pytest.raises(EngineWorkerError, match="closed"):
        w.score_ids(WINDOWS)


def test_serving_runs_the_engine_in_a_child_by_default() -> None:
    assert PipelineConfig().engine_process is True
    with pytest.raises(ConfigError, match="engine_process"):
        PipelineConfig(engine_process="yes")  # type: ignore[arg-type]


def test_the_event_loop_form_matches_and_survives_a_killed_child(worker: EngineWorker) -> None:
    expected = worker.score_ids(WINDOWS)

    async def go() -> tuple[object, object, object]:
        first = await worker.score_ids_async(WINDOWS)
        restarts = worker.restarts
        os.kill(_pid(worker), signal.SIGKILL)
        second = await worker.score_ids_async(WINDOWS)
        return first, second, worker.restarts - restarts

    first, second, restarted = asyncio.run(go())
    assert first == expected and second == expected and restarted == 1
    assert asyncio.run(worker.score_ids_async([])) == []


def test_restarts_are_exported_as_a_metric(worker: EngineWorker, tiny_bundle: Bundle) -> None:
    metrics = PipelineMetrics()
    StreamingPipeline(PipelineConfig(), tiny_bundle, worker, upstream=None, metrics=metrics)  # type: ignore[arg-type]
    before = worker.restarts  # the module's worker: other tests may have restarted it
    os.kill(_pid(worker), signal.SIGKILL)
    assert len(worker.score_ids(WINDOWS)) == len(WINDOWS)  # finds it dead, restarts, retries
    assert worker.restarts == before + 1
    assert sample_value(metrics.engine_restarts) == worker.restarts


@pytest.mark.parametrize("form", ["blocking", "event-loop"])
def test_a_hung_child_is_killed_restarted_and_the_batch_retried(
    tiny_bundle: Bundle, form: str
) -> None:
    w = EngineWorker(tiny_bundle.path, "onnxruntime", threads=1, batch_timeout=1.0)
    try:
        expected = w.score_ids(WINDOWS)
        hung = _pid(w)
        os.kill(hung, signal.SIGSTOP)  # alive, never answers: a hung runtime
        got = (
            w.score_ids(WINDOWS) if form == "blocking" else asyncio.run(w.score_ids_async(WINDOWS))
        )
        assert got == expected
        assert w.restarts == 1 and _pid(w) != hung
        with pytest.raises(ProcessLookupError):
            os.kill(hung, 0)  # killed and reaped, not left behind
    finally:
        w.close()


def test_engine_timeout_is_validated() -> None:
    assert PipelineConfig().engine_timeout == 120.0
    with pytest.raises(ConfigError, match="engine_timeout"):
        PipelineConfig(engine_timeout=0)
