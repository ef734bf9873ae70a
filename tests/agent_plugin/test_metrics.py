"""Metrics registry (Prometheus text 0.0.4) and its HTTP endpoint over a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import AsyncIterator

import msgpack
import pytest

from logsieve.agent_plugin.forward import encode_ack
from logsieve.agent_plugin.metrics import Metrics, MetricsRegistry
from logsieve.agent_plugin.metrics_http import MetricsServer
from logsieve.agent_plugin.server import ForwardServer
from logsieve.agent_plugin.server_config import ServerConfig
from logsieve.agent_plugin.sink import QueueSink

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


def test_render_counter_gauge_histogram_exactly() -> None:
    reg = MetricsRegistry()
    c = reg.counter("x_total", "Things.\nSecond line \\ done", ["kind"])
    c.labels(kind='a"b\\c\nd').inc(2)
    g = reg.gauge("depth", "Queue depth.")
    g.set_function(lambda: 7)
    h = reg.histogram("lat_seconds", "Latency.", buckets=[0.1, 1])
    for value in (0.05, 0.5, 3):
        h.observe(value)
    assert reg.render() == (
        "# HELP x_total Things.\\nSecond line \\\\ done\n"
        "# TYPE x_total counter\n"
        'x_total{kind="a\\"b\\\\c\\nd"} 2\n'
        "# HELP depth Queue depth.\n"
        "# TYPE depth gauge\n"
        "depth 7\n"
        "# HELP lat_seconds Latency.\n"
        "# TYPE lat_seconds histogram\n"
        'lat_seconds_bucket{le="0.1"} 1\n'
        'lat_seconds_bucket{le="1.0"} 2\n'
        'lat_seconds_bucket{le="+Inf"} 3\n'
        "lat_seconds_sum 3.55\n"
        "lat_seconds_count 3\n"
    )
    parsed = parse_prometheus(reg.render())
    assert parsed[("x_total", (("kind", 'a"b\\c\nd'),))] == 2
    assert math.isclose(parsed[("lat_seconds_sum", ())], 3.55)


def test_misuse_is_rejected() -> None:
    reg = MetricsRegistry()
    c = reg.counter("a_total", "A.", ["mode"])
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("a_total", "again")
    with pytest.raises(ValueError, match="labels"):
        c.inc()
    with pytest.raises(ValueError, match="takes labels"):
        c.labels(other="x")
    with pytest.raises(ValueError, match="cannot decrease"):
        c.labels(mode="m").inc(-1)
    with pytest.raises(ValueError, match="invalid metric name"):
        reg.counter("bad-name", "x")
    with pytest.raises(ValueError, match="increasing"):
        reg.histogram("h", "x", buckets=[1, 0.5])
    g = reg.gauge("g", "G.")
    g.inc(3)
    g.dec()
    assert g.value == 2


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
    depth = metrics.registry.gauge("logsieve_queue_depth", "Batches queued.", ["queue"])
    sink = QueueSink(8)
    depth.labels(queue="records").set_function(sink.qsize)
    server = ForwardServer(ServerConfig(host="127.0.0.1", port=0), sink, metrics)
    await server.start()
    endpoint = MetricsServer(metrics.registry, "127.0.0.1", 0, health=lambda: server.is_serving)
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
        async with http_get(endpoint.port, "/health") as (status, _, _):
            assert status == 503
    finally:
        await server.stop()
        await endpoint.stop()


@pytest.mark.asyncio
async def test_bad_request_and_stop_with_a_hanging_scraper() -> None:
    endpoint = MetricsServer(MetricsRegistry(), "127.0.0.1", 0)
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
