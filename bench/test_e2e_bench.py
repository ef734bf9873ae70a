"""End to end: Forward in → templates → windows → ONNX Runtime → flags upstream.

Run: ``.venv/bin/pytest bench/test_e2e_bench.py -s -p no:cacheprovider``
(``-s`` shows the summary; real data from ``../shared/data``, skipped when absent).

Set-up: a small FastLogAD bundle (d 32, 1 layer, 1+1 epochs) trained on the raw lines
of ``hdfs/raw/HDFS_20000.log`` and exported, served by an in-process :class:`Service`
with the ``onnxruntime`` backend and detection on (flags to an in-process
:class:`FlagReceiver`). The load comes from ``bench/loadgen.py`` in a *subprocess*:
PackedForward frames of the same raw lines (looped, shifted in event time so windows
keep closing), ``CHUNK`` records per frame over ``CONNECTIONS`` connections, with acks.

Why the service in-process and the load generator outside: the generator's packing and
ack bookkeeping would otherwise share the service's GIL and event loop, and the figure
would be the sum of both; in its own process it gets the second core. The service stays
in-process so the bench can time each window without a hook in ``agent_plugin``: it
wraps, on the instance, ``pipeline._enqueue`` (window closed) and ``builder.build``
(scored, record built and handed straight to the upstream writer).

Three runs, one bundle:

1. max rate for ``DURATION`` s → sustained records/s acked (backpressure keeps acks
   within one bounded queue of the engine, so this is the rate with detection on);
2. half the target rate (15k records/s; half the max if the max is lower) → window-close
   → flag latency p50/p99 (every window's verdict; and close → arrival upstream for
   the flags); and, when the max is above 30k, half the max too (reported, not a target);
3. max rate again under ``cProfile`` (event-loop thread) → where the time goes, by
   stage; the engine runs in its own thread and is taken from the pipeline's
   ``engine_seconds`` histogram instead.

``test_e2e_engine_process_vs_thread`` compares, in interleaved max-rate rounds, the
serving default (engine in a child process, raised GC thresholds) with the engine in a
thread of the server under the default GC thresholds (how it served before).

``LOGSIEVE_BENCH_STREAM=sessions`` sends HDFS sessions of the dev split with fresh block
ids instead of the looped file (``bench/hdfs_sessions.py``: windows repeat as real
traffic's do); ``LOGSIEVE_BENCH_STREAM=bgl`` sends generated BGL-like lines of 64 hosts
(per-host sliding windows, a bundle trained on 16 other generated hosts); every run
reports the verdict cache's hit rate (``cache``).

``LOGSIEVE_BENCH_PIPELINE='{"key": value}'`` overrides ``[pipeline]`` settings of the
served runs (the server's defaults otherwise). ``LOGSIEVE_BENCH_E2E_BUNDLE=DIR`` serves
a bundle an earlier run trained (with the same stream and model settings) instead of
training one.

``LOGSIEVE_BENCH_MODEL=default`` trains the bench bundle at ``logsieve train``'s model
size (d 256, 4 layers; 1+1 epochs: the speed of the model users run, not its accuracy)
instead of the small d 32, 1 layer one. A fourth run measures the Forward server alone
(records decoded, acked and dropped: detection off) on the same stream: the ratio's
denominator.

Every run also reports ``cpu_per_record``: CPU µs per acked record of the server
process (event loop and its threads), the engine process and the load generator, and
the ceiling they imply on this machine's 2 cores (all of it busy, nothing idle): the
cost model that says what a target needs, whatever the scheduling.

Targets (issue 17): >= 75k records/s sustained with the default model size, p99 <= 100 ms
at half that rate (issue 5's were 30k and 250 ms). They are printed and asserted (a miss
fails with the measured figure, like the engine benchmark's target);
``LOGSIEVE_BENCH_ENFORCE=0`` only prints them.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.pipeline_config import PipelineConfig
from logsieve.agent_plugin.receiver import FlagReceiver, Received
from logsieve.agent_plugin.serve_config import ServeSettings
from logsieve.agent_plugin.server_config import ServerConfig
from logsieve.agent_plugin.upstream_config import UpstreamConfig
from logsieve.agent_plugin.wal_config import DurabilityConfig
from logsieve.bundle import Bundle, open_bundle

LOADGEN = Path(__file__).with_name("loadgen.py")
CHUNK = int(os.environ.get("LOGSIEVE_BENCH_CHUNK", "500"))
CONNECTIONS = int(os.environ.get("LOGSIEVE_BENCH_CONNECTIONS", "2"))
DURATION = float(os.environ.get("LOGSIEVE_BENCH_DURATION", "10"))
# Frames each connection keeps unacked (loadgen's --window).
IN_FLIGHT = int(os.environ.get("LOGSIEVE_BENCH_IN_FLIGHT", "8"))
# The load generator renders its frames before the clock starts (loadgen --prerender):
# enough for this many records/s over the run (max-rate runs; paced runs: their rate),
# live after that (counted: records_rendered_live). Its Python then stays off the two
# cores the server is measured on, as an agent on other machines would. 0: live.
PRERENDER_RATE = float(os.environ.get("LOGSIEVE_BENCH_PRERENDER_RATE", "120000"))


def _prerender(rate: float, duration: float, top: float = PRERENDER_RATE) -> str:
    """loadgen's --prerender for a run at ``rate`` (0: max) of ``duration`` s."""
    if PRERENDER_RATE <= 0:
        return "0"
    return str(int((rate if rate > 0 else top) * duration * 1.05))


ENFORCE = os.environ.get("LOGSIEVE_BENCH_ENFORCE", "1") != "0"
STREAM = os.environ.get("LOGSIEVE_BENCH_STREAM", "loop")  # or "sessions", "bgl"
MODEL = os.environ.get("LOGSIEVE_BENCH_MODEL", "small")  # or "default" (train's d 256, 4 layers)
# "off": the sustained runs without the verdict cache (the before of issue 17's after).
CACHE = os.environ.get("LOGSIEVE_BENCH_CACHE", "on")
SERVED: dict[str, Any] = (
    {"verdict_cache_entries": 0, "verdict_cache_bytes": 0} if CACHE == "off" else {}
) | json.loads(os.environ.get("LOGSIEVE_BENCH_PIPELINE", "{}"))  # other [pipeline] keys
TARGET_RATE, TARGET_P99 = 75_000.0, 0.100  # issue 17 (issue 5's were 30k and 250 ms)

# Where cProfile's per-function self time is attributed, by source path.
STAGES = (
    ("decode (forward codec, modes, connection)", ("agent_plugin/forward/", "connection.py")),
    ("templates (masking, matching)", ("logs/templates.py", "logs/masking.py")),
    ("windows (keys, windower)", ("logs/windows.py", "logs/keys.py", "logs/pipeline.py")),
    ("pipeline glue (put, batcher, flags)", ("agent_plugin/pipeline.py", "flags.py", "scoring")),
    ("upstream writer", ("agent_plugin/upstream.py", "spool.py")),
    ("msgpack", ("msgpack",)),
    ("event loop, sockets", ("asyncio/", "selectors.py", "socket.py", "<built-in method select")),
)


@pytest.fixture(scope="module")
def hdfs_20000(shared_data: Path) -> Path:
    path = shared_data / "hdfs" / "raw" / "HDFS_20000.log"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def e2e_bundle(hdfs_20000: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    from logsieve.export.data.prepare import prepare
    from logsieve.export.fastlogad.bundle import train_bundle
    from logsieve.export.fastlogad.model import ModelConfig
    from logsieve.export.fastlogad.train import TrainConfig
    from logsieve.export.program import export_bundle

    reuse = os.environ.get("LOGSIEVE_BENCH_E2E_BUNDLE")
    if reuse:  # one trained by an earlier run of this bench with the same STREAM and MODEL
        return open_bundle(Path(reuse))
    out = tmp_path_factory.mktemp("e2e") / "bundle"
    if STREAM == "bgl":
        # Per-host sliding windows, trained on other generated hosts than it is served.
        from logsieve.export.data.synth import write_synth
        from logsieve.export.data.synth_bgl import generate_bgl

        train_log = out.parent / "bgl_train.log"
        write_synth(generate_bgl(16, 6 * 3600, seed=1), train_log)
        data = prepare("bgl", train_log)
    elif STREAM == "sessions":
        # Trained on what it is served: sessions of train_normal rendered as raw lines.
        sys.path.insert(0, str(LOADGEN.parent))
        from hdfs_sessions import SessionStream, write_log

        train_log = out.parent / "train_normal.log"
        stream = SessionStream(hdfs_20000.parents[1], normal="train_normal", anomaly_share=0.0)
        write_log(stream, train_log, 60_000)
        data = prepare("hdfs", train_log, train_n=2000)
    else:
        labels = hdfs_20000.with_name("HDFS_20000.block_labels.csv")
        data = prepare("hdfs", hdfs_20000, train_n=800, labels_path=labels)
    if MODEL == "default":
        # The size users run (logsieve train's defaults); 1+1 epochs: speed, not accuracy.
        model = ModelConfig(vocab_size=data.vocab.size, max_len=data.log_config.max_len)
    else:
        model = ModelConfig(
            vocab_size=data.vocab.size, d_model=32, n_layers=1, n_heads=2, d_ff=32,
            max_len=data.log_config.max_len,
        )  # fmt: skip
    cfg = TrainConfig(rtd_epochs=1, hst_epochs=1, batch_size=64, seed=0)
    bundle, _ = train_bundle(data, out, train_cfg=cfg, model_cfg=model, progress=False)
    exported: Bundle = export_bundle(bundle.path, max_batch=256)
    return exported


def _settings(
    upstream_port: int,
    pipeline: dict[str, Any] | None = None,
    durability: DurabilityConfig | None = None,
) -> ServeSettings:
    return ServeSettings(
        server=ServerConfig(host="127.0.0.1", port=0, metrics_port=0, udp_heartbeat=False),
        upstream=UpstreamConfig(host="127.0.0.1", port=upstream_port, self_hostname="bench"),
        pipeline=PipelineConfig(backend="onnxruntime", flush_timeout=30.0, **(pipeline or {})),
        durability=durability or DurabilityConfig(),
    )


async def _run(
    bundle: Bundle,
    data: Path,
    rate: float,
    duration: float,
    profile: bool,
    pipeline: dict[str, Any] | None = None,
    durability: DurabilityConfig | None = None,
) -> dict[str, Any]:
    """One served run driven by the loadgen subprocess; returns its figures."""
    closed: dict[tuple[str, float], float] = {}
    verdict_lat: list[float] = []
    flag_lat: list[float] = []

    def arrived(item: Received) -> None:
        rec = item.record
        t = closed.get((rec.get("key"), rec.get("window_start")))
        if t is not None and rec.get("verdict") == "anomaly":
            flag_lat.append(time.perf_counter() - t)

    rx = FlagReceiver(on_record=arrived)
    await rx.start()
    service = Service(_settings(rx.port, pipeline, durability), bundle)
    pipe = service.pipeline
    enqueue, builder = pipe._enqueue, pipe.builder

    async def timed_enqueue(window: Any) -> None:
        closed[(window.key, window.start)] = time.perf_counter()
        await enqueue(window)

    class TimedBuilder:
        """The pipeline's (frozen) FlagBuilder, timing each window's record."""

        tag = builder.tag
        verdict = staticmethod(builder.verdict)

        @staticmethod
        def build(sw: Any) -> Any:
            record = builder.build(sw)
            t = closed.get((sw.key, sw.start))
            if t is not None:
                verdict_lat.append(time.perf_counter() - t)
            return record

        @staticmethod
        def build_incident(incident: Any) -> Any:  # anomalies (session: one window each)
            record = builder.build_incident(incident)
            t = closed.get((incident.window.key, incident.window.start))
            if t is not None:
                verdict_lat.append(time.perf_counter() - t)
            return record

    pipe._enqueue = timed_enqueue
    pipe.model.builder = TimedBuilder()  # type: ignore[assignment]  # a property now
    await service.start()
    profiler = cProfile.Profile() if profile else None
    try:
        # CPU by process over the run: this one (event loop, receiver, engine feeder
        # thread) and the engine process; the load generator reports its own.
        before = (resource.getrusage(resource.RUSAGE_SELF), _child_cpu_seconds())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(LOADGEN), "--port", str(service.port), *_stream_args(data),
            "--chunk", str(CHUNK), "--connections", str(CONNECTIONS), "--rate", str(rate),
            "--duration", str(duration), "--window", str(IN_FLIGHT),
            "--prerender", _prerender(rate, duration), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        if profiler is not None:
            profiler.enable()
        out, _ = await proc.communicate()
        if profiler is not None:
            profiler.disable()
        after = (resource.getrusage(resource.RUSAGE_SELF), _child_cpu_seconds())
        assert proc.returncode == 0
        load = json.loads(out)
        cpu = {
            "server": _rusage_delta(before[0], after[0]),
            "engine_process": after[1] - before[1],
            # From the clock's start: pre-rendering is not part of the run.
            "loadgen": load["cpu_seconds"],
        }
        m = service.pipeline_metrics
        windows = sum(sample_value(m.verdicts, verdict=v) for v in ("normal", "anomaly"))
        engine_s = m.engine_seconds._sum.get()  # a MutexValue in prometheus_client
        engine_batches = sample_value(m.engine_seconds)
        in_run = len(verdict_lat)
        cache = _cache_figures(service)
    finally:
        await service.stop()
        await rx.stop()
    result: dict[str, Any] = {
        "load": load,
        "windows_scored_in_run": windows,
        "engine_seconds_in_run": engine_s,
        "engine_batches_in_run": engine_batches,
        "verdict_latency": verdict_lat[:in_run],
        "flag_latency": flag_lat,
        "flags": len(rx.flags()),
        "dropped": service.upstream.stats.dropped_records,
        "cache": cache,
        "cpu_per_record": _cpu_per_record(cpu, int(load["records_acked"])),
    }
    if profiler is not None:
        result["profile"] = _stages(profiler)
        if os.environ.get("LOGSIEVE_BENCH_PROFILE"):  # the raw stats, for pstats/snakeviz
            profiler.dump_stats(os.environ["LOGSIEVE_BENCH_PROFILE"])
    return result


_TICKS = os.sysconf("SC_CLK_TCK")


def _rusage_delta(a: resource.struct_rusage, b: resource.struct_rusage) -> float:
    return (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)


def _child_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's live children: the engine process.

    Read from ``/proc`` because the engine process is reaped only at ``Service.stop``,
    after the figures are taken; 0.0 where ``/proc`` is absent."""
    me, total = os.getpid(), 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == me:  # field 4 of stat: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    return total


def _cpu_per_record(cpu: dict[str, float], records: int) -> dict[str, float]:
    """µs of CPU per acked record, by process, and the 2-core ceiling they imply."""
    per = {name: 1e6 * seconds / max(1, records) for name, seconds in cpu.items()}
    total = sum(per.values())
    return {
        **{f"{name}_us": round(us, 2) for name, us in per.items()},
        "total_us": round(total, 2),
        # All of it on this machine's cores at once, nothing idle: an upper bound.
        "records_per_s_bound_2_cores": round(2e6 / total) if total else 0.0,
    }


def _stream_args(data: Path) -> list[str]:
    """The loadgen's stream: the looped file, or sessions of the dev split."""
    if STREAM == "sessions":
        return ["--sessions", str(data.parents[1])]  # .../hdfs/raw/HDFS_20000.log -> .../hdfs
    if STREAM == "bgl":
        return ["--bgl-hosts", "64", "--bgl-hours", "2"]
    return ["--data", str(data)]


async def _run_server_alone(data: Path, duration: float) -> dict[str, Any]:
    """Max rate of the Forward server with detection off: the same loadgen, records
    decoded, acked and dropped (no windows, no model): the denominator of the ratio."""
    from logsieve.agent_plugin.server import ForwardServer
    from logsieve.agent_plugin.sink import QueueSink

    sink = QueueSink(64)

    async def drain() -> None:
        while True:
            await sink.get()
            sink.task_done()

    server = ForwardServer(
        ServerConfig(host="127.0.0.1", port=0, metrics_port=0, udp_heartbeat=False), sink
    )
    await server.start()
    consumer = asyncio.create_task(drain())
    try:
        before = (resource.getrusage(resource.RUSAGE_SELF),)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(LOADGEN), "--port", str(server.port), *_stream_args(data),
            "--chunk", str(CHUNK), "--connections", str(CONNECTIONS), "--rate", "0",
            "--duration", str(duration), "--window", str(IN_FLIGHT),
            "--prerender", _prerender(0.0, duration, 2.2 * PRERENDER_RATE),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        after = (resource.getrusage(resource.RUSAGE_SELF),)
        assert proc.returncode == 0
    finally:
        await server.stop()
        consumer.cancel()
    result: dict[str, Any] = json.loads(out)
    cpu = {"server": _rusage_delta(before[0], after[0]), "loadgen": result["cpu_seconds"]}
    result["cpu_per_record"] = _cpu_per_record(cpu, int(result["records_acked"]))
    return result


def _cache_figures(service: Service) -> dict[str, float]:
    """The verdict cache's counters over the run and its hit rate (windows that needed
    no engine row: cache hits and repeats inside a batch)."""
    registry = service.metrics.registry
    names = ("hits", "misses", "batch_duplicates", "evictions")
    out = {n: registry.get_sample_value(f"logsieve_pipeline_cache_{n}_total") or 0.0 for n in names}
    windows = out["hits"] + out["misses"] + out["batch_duplicates"]
    out["hit_rate"] = (out["hits"] + out["batch_duplicates"]) / windows if windows else 0.0
    out["bytes"] = registry.get_sample_value("logsieve_pipeline_cache_bytes") or 0.0
    return out


def _stages(profiler: cProfile.Profile) -> dict[str, Any]:
    """Self time of the event-loop thread per stage (seconds), plus the largest
    unattributed functions."""
    stats = pstats.Stats(profiler)
    totals: dict[str, Any] = dict.fromkeys([name for name, _ in STAGES] + ["other"], 0.0)
    others: list[tuple[float, str]] = []
    for (filename, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
        tottime = row[2]
        where = f"{filename}:{func}"
        for name, needles in STAGES:
            if any(n in where for n in needles):
                totals[name] += tottime
                break
        else:
            totals["other"] += tottime
            others.append((tottime, where.rsplit("/", 1)[-1]))
    totals["other_top"] = [f"{t:.3f}s {w}" for t, w in sorted(others, reverse=True)[:6]]
    return totals


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def test_e2e_sustained_rate_latency_and_stage_breakdown(
    e2e_bundle: Bundle, hdfs_20000: Path, benchmark: Any, throughput: dict[str, Any]
) -> None:
    def all_runs() -> dict[str, dict[str, Any]]:
        top = asyncio.run(_run(e2e_bundle, hdfs_20000, 0.0, DURATION, False, SERVED))
        half_max = top["load"]["records_per_s_acked"] / 2
        # The target's rate: half of 30k (or of the max, if that is lower); and, for
        # the record, half of the measured max when it is higher.
        half = min(half_max, TARGET_RATE / 2)
        lat = asyncio.run(_run(e2e_bundle, hdfs_20000, half, DURATION, False, SERVED))
        lat_max = (
            asyncio.run(_run(e2e_bundle, hdfs_20000, half_max, DURATION, False, SERVED))
            if half_max > half
            else lat
        )
        prof = asyncio.run(_run(e2e_bundle, hdfs_20000, 0.0, DURATION / 2, True, SERVED))
        alone = asyncio.run(_run_server_alone(hdfs_20000, DURATION))
        return {"max": top, "half": lat, "half_max": lat_max, "profile": prof, "alone": alone}

    runs = benchmark.pedantic(all_runs, rounds=1, iterations=1)
    top, half, prof = runs["max"], runs["half"], runs["profile"]
    rate = top["load"]["records_per_s_acked"]
    p50 = _pct(half["verdict_latency"], 50)
    p99 = _pct(half["verdict_latency"], 99)
    half_max = runs["half_max"]
    alone = runs["alone"]["records_per_s_acked"]
    summary = {
        "model": MODEL,
        "verdict_cache": CACHE,
        "pipeline_overrides": SERVED,
        "records_per_s_acked_max": rate,
        "records_per_s_acked_detection_off": alone,
        "ratio_detection_on_to_off": rate / alone,
        "cpu_per_record_max": top["cpu_per_record"],
        "cpu_per_record_detection_off": runs["alone"]["cpu_per_record"],
        "records_per_s_sent_max": top["load"]["records_per_s_sent"],
        "stream": top["load"]["source"],
        # Frames the load generator had to render during the run (its pre-rendered
        # ones ran out): 0 means its Python cost no CPU on the server's cores.
        "records_rendered_live": {
            "max": top["load"]["records_rendered_live"],
            "detection_off": runs["alone"]["records_rendered_live"],
        },
        "cache_hit_rate_max": top["cache"]["hit_rate"],
        "cache_hit_rate_half": half["cache"]["hit_rate"],
        "windows_per_s_max": top["windows_scored_in_run"] / top["load"]["seconds"],
        "half_rate_target": half["load"]["target_rate"],
        "half_rate_acked": half["load"]["records_per_s_acked"],
        "close_to_verdict_p50_ms": p50 * 1e3,
        "close_to_verdict_p99_ms": p99 * 1e3,
        "close_to_flag_upstream_p50_ms": _pct(half["flag_latency"], 50) * 1e3,
        "close_to_flag_upstream_p99_ms": _pct(half["flag_latency"], 99) * 1e3,
        "windows_timed": len(half["verdict_latency"]),
        "half_max_rate_acked": half_max["load"]["records_per_s_acked"],
        "half_max_close_to_verdict_p50_ms": _pct(half_max["verdict_latency"], 50) * 1e3,
        "half_max_close_to_verdict_p99_ms": _pct(half_max["verdict_latency"], 99) * 1e3,
        "flags_timed": len(half["flag_latency"]),
        "engine_seconds_per_window_max_run": top["engine_seconds_in_run"]
        / max(1.0, top["windows_scored_in_run"]),
        "profile_seconds_by_stage": prof["profile"],
        "profile_engine_thread_seconds": prof["engine_seconds_in_run"],
        "profile_records": prof["load"]["records_acked"],
        "chunk": CHUNK,
        "connections": CONNECTIONS,
        "duration_s": DURATION,
        "load_average": os.getloadavg(),
    }
    benchmark.extra_info.update(summary)
    throughput["e2e served, records acked"] = {
        "lines": top["load"]["records_acked"],
        "lines_per_s": rate,
        "lines_per_s_best": rate,
    }
    print("\n" + json.dumps(summary, indent=2))
    # Sanity (holds whatever the machine): everything sent was acked, nothing lost,
    # windows were scored while the load ran, and every timed window was flagged or not.
    for run in (top, half, half_max, prof):
        assert run["load"]["records_acked"] == run["load"]["records_sent"] > 0
        assert run["dropped"] == 0
        assert run["windows_scored_in_run"] > 0
    assert half["verdict_latency"], "no window closed during the half-rate run"
    if ENFORCE:
        assert rate >= TARGET_RATE, f"{rate:,.0f} records/s < {TARGET_RATE:,.0f}"
        assert p99 <= TARGET_P99, f"p99 {p99 * 1e3:.0f} ms > {TARGET_P99 * 1e3:.0f} ms"


AB_ROUNDS = int(os.environ.get("LOGSIEVE_BENCH_AB_ROUNDS", "3"))


def test_e2e_engine_process_vs_thread(
    e2e_bundle: Bundle, hdfs_20000: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Max-rate records/s, engine in a child (default) vs in a thread with the default
    GC thresholds, interleaved rounds so machine drift hits both; prints per-round
    ratios and their median."""
    from logsieve.agent_plugin import app

    configs = {
        "thread, gc default": ({"engine_process": False}, (700, 10, 10)),  # CPython's
        "process, serving gc": ({"engine_process": True}, app.GC_THRESHOLD),
    }
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(AB_ROUNDS):
        for name, (pipeline, threshold) in configs.items():
            monkeypatch.setattr(app, "GC_THRESHOLD", threshold)
            run = asyncio.run(_run(e2e_bundle, hdfs_20000, 0.0, 8.0, False, pipeline))
            assert run["load"]["records_acked"] == run["load"]["records_sent"] > 0
            assert run["dropped"] == 0
            rates[name].append(run["load"]["records_per_s_acked"])
    old, new = rates.values()
    ratios = [n / o for n, o in zip(new, old, strict=True)]
    print("\n" + json.dumps({**rates, "ratio per round": ratios}, indent=2))
    print(f"median ratio process/thread: {float(np.median(ratios)):.2f}x")


def test_e2e_write_ahead_log_cost(e2e_bundle: Bundle, hdfs_20000: Path, tmp_path: Path) -> None:
    """Max-rate records/s acked without and with the write-ahead log (``fsync`` at its
    default, ``batch``; and ``always``), interleaved rounds; prints per-round ratios.

    The bar (issue 16): the default policy costs <= 20% of records/s. The bundle is the
    small one above, so the event loop, not the engine, is the limit and the log's
    cost shows in full; with the default model size the engine bounds both runs.
    """
    configs: dict[str, DurabilityConfig | None] = {
        "no log": None,
        "log, fsync batch": DurabilityConfig(dir=tmp_path / "batch"),
        "log, fsync always": DurabilityConfig(dir=tmp_path / "always", fsync="always"),
    }
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(AB_ROUNDS):
        for name, durability in configs.items():
            run = asyncio.run(_run(e2e_bundle, hdfs_20000, 0.0, 8.0, False, None, durability))
            assert run["load"]["records_acked"] == run["load"]["records_sent"] > 0
            assert run["dropped"] == 0
            rates[name].append(run["load"]["records_per_s_acked"])
    base = rates["no log"]
    ratios = {
        name: [r / b for r, b in zip(rates[name], base, strict=True)]
        for name in configs
        if name != "no log"
    }
    print("\n" + json.dumps({"records/s": rates, "ratio to no log": ratios}, indent=2))
    batch = float(np.median(ratios["log, fsync batch"]))
    print(f"median ratio, fsync batch / no log: {batch:.2f}")
    if ENFORCE:
        assert batch >= 0.80, f"the write-ahead log costs {1 - batch:.0%} of records/s"
