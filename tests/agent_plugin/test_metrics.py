"""Metric names, types and buckets as exposed, and the HTTP endpoint over a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncIterator

import msgpack
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, generate_latest

from logsieve.agent_plugin.forward import encode_ack
from logsieve.agent_plugin.metrics import DEFAULT_BUCKETS, Metrics, sample_value
from logsieve.agent_plugin.metrics_http import MetricsServer
from logsieve.agent_plugin.pipeline_metrics import PipelineMetrics
from logsieve.agent_plugin.server import ForwardServer
from logsieve.agent_plugin.server_config import ServerConfig
from logsieve.agent_plugin.sink import QueueSink
from logsieve.agent_plugin.upstream import UpstreamClient
from logsieve.agent_plugin.upstream_config import UpstreamConfig

T = 5.0

_SAMPLE = re.compile(
    r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*)\})?'
    r" (?P<value>\S+)"
)
_LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Strict little parser: every sample belongs to a family declared by HELP and TYPE."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram") and name in helped
            types[name] = kind
            continue
        match = _SAMPLE.fullmatch(line)
        assert match, f"unparseable line {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"sample {name} has no TYPE"
        labels = tuple(
            (k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
            for k, v in _LABEL.findall(match["labels"] or "")
        )
        samples[(name, labels)] = float(match["value"])
    return samples


# Every family a service exposes, as exposed before prometheus_client (dashboards and
# the README use these names): counters keep their ``_total``.
FAMILIES = [
    ("logsieve_forward_records_received_total", "counter"),
    ("logsieve_forward_records_skipped_total", "counter"),
    ("logsieve_forward_bytes_received_total", "counter"),
    ("logsieve_forward_frames_total", "counter"),
    ("logsieve_forward_non_log_signals_total", "counter"),
    ("logsieve_forward_ignored_requests_total", "counter"),
    ("logsieve_forward_connections_open", "gauge"),
    ("logsieve_forward_connections_total", "counter"),
    ("logsieve_forward_connections_refused_total", "counter"),
    ("logsieve_forward_connections_closed_total", "counter"),
    ("logsieve_forward_buffered_bytes", "gauge"),
    ("logsieve_forward_acks_sent_total", "counter"),
    ("logsieve_forward_handshake_failures_total", "counter"),
    ("logsieve_forward_malformed_frames_total", "counter"),
    ("logsieve_forward_heartbeats_total", "counter"),
    ("logsieve_forward_sink_put_seconds", "histogram"),
    ("logsieve_pipeline_records_total", "counter"),
    ("logsieve_pipeline_raw_lines_total", "counter"),
    ("logsieve_pipeline_unknown_template_lines_total", "counter"),
    ("logsieve_pipeline_unknown_template_rate", "gauge"),
    ("logsieve_pipeline_windows_open", "gauge"),
    ("logsieve_pipeline_windows_closed_total", "counter"),
    ("logsieve_pipeline_windows_failed_total", "counter"),
    ("logsieve_pipeline_queue_depth", "gauge"),
    ("logsieve_pipeline_held_records", "gauge"),
    ("logsieve_pipeline_batch_windows", "histogram"),
    ("logsieve_pipeline_engine_seconds", "histogram"),
    ("logsieve_pipeline_engine_process_restarts", "gauge"),
    ("logsieve_pipeline_cache_hits_total", "counter"),
    ("logsieve_pipeline_cache_misses_total", "counter"),
    ("logsieve_pipeline_cache_batch_duplicates_total", "counter"),
    ("logsieve_pipeline_cache_evictions_total", "counter"),
    ("logsieve_pipeline_cache_entries", "gauge"),
    ("logsieve_pipeline_cache_bytes", "gauge"),
    ("logsieve_pipeline_verdicts_total", "counter"),
    ("logsieve_pipeline_novelty_decisions_total", "counter"),
    ("logsieve_pipeline_novelty_patterns", "gauge"),
    ("logsieve_pipeline_records_sent_upstream_total", "counter"),
    ("logsieve_pipeline_retimed_records_total", "counter"),
    ("logsieve_pipeline_dropped_total", "counter"),
    ("logsieve_model_reloads_total", "counter"),
    ("logsieve_model_info", "gauge"),
    ("logsieve_upstream_records_acked", "gauge"),
    ("logsieve_upstream_records_sent", "gauge"),
    ("logsieve_upstream_buffered_records", "gauge"),
    ("logsieve_upstream_spilled_chunks", "gauge"),
    ("logsieve_upstream_spool_chunks", "gauge"),
    ("logsieve_upstream_spool_bytes", "gauge"),
    ("logsieve_upstream_dropped_records", "gauge"),
    ("logsieve_upstream_retries", "gauge"),
    ("logsieve_upstream_reconnects", "gauge"),
    ("logsieve_upstream_connected", "gauge"),
]

BUCKETS = {
    "logsieve_forward_sink_put_seconds": DEFAULT_BUCKETS,
    "logsieve_pipeline_batch_windows": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    "logsieve_pipeline_engine_seconds": (
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ),
}  # fmt: skip


def service_metrics() -> tuple[Metrics, PipelineMetrics]:
    """The metrics a service registers, wired as app.Service wires them."""
    metrics = Metrics()
    pipeline = PipelineMetrics(metrics.registry)
    pipeline.bind(
        open_windows=lambda: 3,
        unknown_rate=lambda: 0.25,
        queue_depth=lambda: 1,
        held_records=lambda: 0,
        engine_restarts=lambda: 0,
    )
    pipeline.bind_upstream(UpstreamClient(UpstreamConfig()))
    return metrics, pipeline


def test_exposition_keeps_every_name_type_and_bucket() -> None:
    metrics, pipeline = service_metrics()
    metrics.records_received.labels(mode="forward").inc(2)
    metrics.put_seconds.observe(0.02)
    pipeline.batch_windows.observe(3)
    pipeline.engine_seconds.observe(0.003)
    text = generate_latest(metrics.registry).decode()
    types = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE)
    assert types == FAMILIES
    assert "_created" not in text  # prometheus_client's extra series are switched off
    samples = parse_prometheus(text)
    assert samples[("logsieve_forward_records_received_total", (("mode", "forward"),))] == 2
    assert samples[("logsieve_forward_acks_sent_total", ())] == 0  # unlabelled: shown at once
    assert samples[("logsieve_pipeline_windows_open", ())] == 3  # read at scrape
    assert samples[("logsieve_pipeline_unknown_template_rate", ())] == 0.25
    assert samples[("logsieve_upstream_connected", ())] == 0
    for name, bounds in BUCKETS.items():
        les = [dict(labels)["le"] for (sample, labels) in samples if sample == name + "_bucket"]
        assert les == [repr(float(b)) for b in bounds] + ["+Inf"], name
        assert samples[(name + "_count", ())] == 1
    assert math.isclose(samples[("logsieve_forward_sink_put_seconds_sum", ())], 0.02)
    assert samples[("logsieve_forward_sink_put_seconds_bucket", (("le", "0.025"),))] == 1
    assert samples[("logsieve_forward_sink_put_seconds_bucket", (("le", "0.01"),))] == 0


def test_each_service_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()  # two services in one process: no clash
    a.acks_sent.inc()
    assert (sample_value(a.acks_sent), sample_value(b.acks_sent)) == (1, 0)
    assert REGISTRY.get_sample_value("logsieve_forward_acks_sent_total") is None
    with pytest.raises(ValueError, match="Duplicated"):
        Gauge("logsieve_forward_connections_open", "again", registry=a.registry)


def test_sample_value_reads_what_a_scrape_shows() -> None:
    metrics, pipeline = service_metrics()
    received = metrics.records_received.labels(mode="message")
    received.inc(3)
    assert sample_value(received) == sample_value(metrics.records_received, mode="message") == 3
    assert sample_value(metrics.records_received, mode="forward") == 0  # not used yet
    metrics.connections_open.inc(3)
    metrics.connections_open.dec()
    assert sample_value(metrics.connections_open) == 2
    assert sample_value(pipeline.windows_open) == 3  # set_function
    for value in (0.05, 0.5, 3):
        metrics.put_seconds.observe(value)
    assert sample_value(metrics.put_seconds) == 3  # a histogram reads as its count
    with pytest.raises(ValueError):
        sample_value(metrics.records_received, other="x")  # no such label
    with pytest.raises(ValueError):
        sample_value(metrics.records_received)  # labels missing
    with pytest.raises(ValueError):
        metrics.acks_sent.inc(-1)  # counters only go up


@contextlib.asynccontextmanager
async def http_get(
    port: int, path: str, method: str = "GET"
) -> AsyncIterator[tuple[int, dict[str, str], bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), T)  # the server closes after one reply
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert int(headers["Content-Length"]) == len(body)
        yield int(lines[0].split(" ")[1]), headers, body
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_metrics_endpoint_over_a_real_socket() -> None:
    metrics = Metrics()
    # The pipeline side registers its own metrics on the same registry.
    depth = Gauge("logsieve_queue_depth", "Batches queued.", ["queue"], registry=metrics.registry)
    sink = QueueSink(8)
    depth.labels(queue="records").set_function(sink.qsize)
    server = ForwardServer(ServerConfig(host="127.0.0.1", port=0), sink, metrics)
    await server.start()
    endpoint = MetricsServer(
        metrics.registry, "127.0.0.1", 0, health=lambda: None if server.is_serving else "down"
    )
    await endpoint.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        frame = msgpack.packb(["app", [[1, {"m": 1}], [2, {"m": 2}]], {"chunk": "k"}])
        try:
            writer.write(frame)
            ack = encode_ack(b"k")
            assert await asyncio.wait_for(reader.readexactly(len(ack)), T) == ack
        finally:
            writer.close()
            await writer.wait_closed()

        async with http_get(endpoint.port, "/metrics?x=1") as (status, headers, body):
            assert status == 200
            assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        samples = parse_prometheus(body.decode())
        p = "logsieve_forward_"
        assert samples[(p + "records_received_total", (("mode", "forward"),))] == 2
        assert samples[(p + "frames_total", (("mode", "forward"),))] == 1
        assert samples[(p + "bytes_received_total", ())] == len(frame)
        assert samples[(p + "acks_sent_total", ())] == 1
        assert samples[(p + "connections_total", ())] == 1
        assert samples[(p + "connections_refused_total", ())] == 0
        assert samples[(p + "handshake_failures_total", ())] == 0
        assert samples[(p + "sink_put_seconds_count", ())] == 1
        assert samples[("logsieve_queue_depth", (("queue", "records"),))] == 1

        async with http_get(endpoint.port, "/health") as (status, _, body):
            assert (status, body) == (200, b"ok\n")
        async with http_get(endpoint.port, "/nope") as (status, _, _):
            assert status == 404
        async with http_get(endpoint.port, "/metrics", "POST") as (status, _, _):
            assert status == 405
        await server.stop()
        async with http_get(endpoint.port, "/health") as (status, _, body):
            assert (status, body) == (503, b"unhealthy: down\n")  # says why
    finally:
        await server.stop()
        await endpoint.stop()


@pytest.mark.asyncio
async def test_bad_request_and_stop_with_a_hanging_scraper() -> None:
    endpoint = MetricsServer(CollectorRegistry(), "127.0.0.1", 0)
    await endpoint.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    hanging_r, hanging_w = await asyncio.open_connection("127.0.0.1", endpoint.port)
    try:
        writer.write(b"garbage\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), T)).startswith(b"HTTP/1.1 400 ")
        hanging_w.write(b"GET /metr")  # never finishes its request
        await asyncio.sleep(0.05)
        await asyncio.wait_for(endpoint.stop(), T)  # cancels the hanging handler
        assert await asyncio.wait_for(hanging_r.read(), T) == b""
    finally:
        for w in (writer, hanging_w):
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
