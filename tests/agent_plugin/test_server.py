"""ForwardServer over real sockets on 127.0.0.1: modes, acks, flow control, shutdown.

Clients are the real ``fluent-logger`` sender and raw sockets writing the
hand-built frames of FORWARD.md §2/§9 (see ``wire.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fluent import sender

from logsieve.agent_plugin.connection import ForwardProtocol, classify_protocol_error
from logsieve.agent_plugin.forward import (
    ClientHandshake,
    ForwardLimits,
    FrameDecoder,
    RecordBatch,
    encode_ack,
)
from logsieve.agent_plugin.metrics import Metrics, sample_value
from logsieve.agent_plugin.server import ForwardServer, build_ssl_context
from logsieve.agent_plugin.server_config import ServerConfig
from logsieve.agent_plugin.sink import QueueSink, RecordSink
from logsieve.errors import (
    CompressionError,
    ConfigError,
    LimitExceeded,
    MalformedMsgpack,
    ProtocolError,
)

from .wire import (
    ACK_FLUENTD,
    FLUENTBIT_CHUNK,
    FLUENTD_CHUNK,
    FWD_V15,
    T_SEC,
    entry,
    et,
    fluentd_packed,
    gzip_members,
    packb,
)

T = 5.0  # seconds any single wait may take before the test fails


class RecordingSink:
    """Accepts everything at once and remembers it."""

    def __init__(self) -> None:
        self.batches: list[RecordBatch] = []
        self._changed = asyncio.Event()

    async def put(self, batch: RecordBatch) -> None:
        self.batches.append(batch)
        self._changed.set()

    async def wait_for(self, count: int) -> list[RecordBatch]:
        async def _wait() -> None:
            while len(self.batches) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), T)
        return self.batches


class BlockingSink(RecordingSink):
    """Accepts a batch only once ``gate`` is set; ``entered`` tells a put is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def put(self, batch: RecordBatch) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().put(batch)


@contextlib.asynccontextmanager
async def serving(sink: RecordSink, **settings: Any) -> AsyncIterator[ForwardServer]:
    server = ForwardServer(ServerConfig(host="127.0.0.1", port=0, **settings), sink, Metrics())
    await server.start()
    try:
        yield server
    finally:
        await server.stop(drain_timeout=1.0)


@contextlib.asynccontextmanager
async def connect(
    port: int, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=tls), T)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def assert_silent(reader: asyncio.StreamReader, seconds: float = 0.2) -> None:
    """Nothing (no ack, no EOF) arrives for ``seconds``."""
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(1), seconds)


async def read_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes (fails if it does not within T)."""
    with contextlib.suppress(ConnectionResetError):
        return await asyncio.wait_for(reader.read(), T)
    return b""


async def read_ack(reader: asyncio.StreamReader, chunk: bytes) -> None:
    """The next bytes are exactly ``{"ack": chunk}`` (str-typed)."""
    expected = encode_ack(chunk)
    assert await asyncio.wait_for(reader.readexactly(len(expected)), T) == expected


async def read_obj(reader: asyncio.StreamReader, decoder: FrameDecoder) -> Any:
    while (frame := next(decoder, None)) is None:
        data = await asyncio.wait_for(reader.read(65536), T)
        assert data, "server closed the connection"
        decoder.feed(data)
    return frame.obj


def forward_frame(n: int, chunk: str | None = None, records: int = 1, pad: int = 0) -> bytes:
    option = {"chunk": chunk} if chunk is not None else None
    body = [[et(T_SEC, n), {"i": n, "pad": "x" * pad}] for _ in range(records)]
    return packb(["app.log", body] if option is None else ["app.log", body, option])


# -- clients -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fluent_logger_client_records_reach_the_sink() -> None:
    sink = RecordingSink()
    async with serving(sink) as server:

        def send() -> None:
            plain = sender.FluentSender("app", host="127.0.0.1", port=server.port)
            precise = sender.FluentSender(
                "app", host="127.0.0.1", port=server.port, nanosecond_precision=True
            )
            try:
                assert plain.emit_with_time("log", T_SEC, {"msg": "hi", "n": 1})
                assert precise.emit_with_time("ns", T_SEC + 0.5, {"msg": "precise"})
            finally:
                plain.close()
                precise.close()

        await asyncio.to_thread(send)
        batches = await sink.wait_for(2)
    by_tag = {b.tag: b for b in batches}
    (plain,) = by_tag["app.log"].records
    assert (plain.tag, plain.time_ns, plain.record) == (
        "app.log",
        T_SEC * 10**9,
        {"msg": "hi", "n": 1},
    )
    (precise,) = by_tag["app.ns"].records
    assert precise.time_ns == T_SEC * 10**9 + 500_000_000
    assert precise.record == {"msg": "precise"}
    assert by_tag["app.log"].mode == "message" and by_tag["app.log"].chunk is None
    assert sample_value(server.metrics.records_received, mode="message") == 2


def _gzip_frame() -> bytes:
    payload = gzip_members(entry(T_SEC, {"msg": "a"}), entry(T_SEC, {"msg": "b"}))
    return fluentd_packed(payload, {"size": 2, "compressed": "gzip", "chunk": FLUENTD_CHUNK})


MODES = {
    # Fluent Bit dynamic tag: Message mode with fluent_signal, chunk and metadata.
    "message": (
        packb(
            [
                "app.log",
                et(T_SEC, 123456789),
                {"msg": "hi"},
                {"fluent_signal": 0, "chunk": FLUENTBIT_CHUNK.decode(), "metadata": {"k": "v"}},
            ]
        ),
        FLUENTBIT_CHUNK,
        ["hi"],
    ),
    # Fluent Bit >= 5.0.5 default entry form, with send_options.
    "forward": (
        b"\x93" + FWD_V15[1:] + packb({"chunk": FLUENTBIT_CHUNK.decode()}),
        FLUENTBIT_CHUNK,
        ["hi"],
    ),
    # Fluentd out_forward: str32 entries, compressed "text", chunk with "\n".
    "packed_forward": (
        fluentd_packed(
            entry(T_SEC, {"msg": "p"}),
            {"size": 1, "compressed": "text", "chunk": FLUENTD_CHUNK.decode()},
        ),
        FLUENTD_CHUNK,
        ["p"],
    ),
    # Fluentd gzip: two concatenated members, str32.
    "compressed_packed_forward": (_gzip_frame(), FLUENTD_CHUNK, ["a", "b"]),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", list(MODES))
async def test_each_mode_is_acked_only_after_the_sink_accepted(mode: str) -> None:
    frame, chunk, messages = MODES[mode]
    sink = BlockingSink()
    async with serving(sink) as server, connect(server.port) as (reader, writer):
        # Fluent Bit writes header, entries and options separately: split the frame.
        for piece in (frame[:3], frame[3:-5], frame[-5:]):
            writer.write(piece)
            await writer.drain()
        await asyncio.wait_for(sink.entered.wait(), T)
        await assert_silent(reader)  # the put is pending: no ack yet
        assert sample_value(server.metrics.acks_sent) == 0
        sink.gate.set()
        ack = await asyncio.wait_for(reader.readexactly(len(encode_ack(chunk))), T)
        assert ack == encode_ack(chunk)
        if mode in ("packed_forward", "compressed_packed_forward"):
            assert ack == ACK_FLUENTD  # str-typed, trailing "\n" kept (FORWARD.md §2)
        (batch,) = sink.batches
        assert batch.mode == mode
        assert [r.record["msg"] for r in batch.records] == messages
        assert sample_value(server.metrics.frames, mode=mode) == 1
        assert sample_value(server.metrics.acks_sent) == 1


@pytest.mark.asyncio
async def test_many_frames_on_one_keepalive_connection_stay_in_order() -> None:
    sink = RecordingSink()
    frames = [forward_frame(n, chunk=f"chunk-{n}") for n in range(200)]
    stream = b"".join(frames)
    rng = random.Random(7)
    async with serving(sink) as server, connect(server.port) as (reader, writer):
        pos = 0
        while pos < len(stream):  # odd splits, across frame boundaries
            step = rng.randint(1, 700)
            writer.write(stream[pos : pos + step])
            await writer.drain()
            pos += step
        expected = b"".join(encode_ack(f"chunk-{n}".encode()) for n in range(200))
        assert await asyncio.wait_for(reader.readexactly(len(expected)), T) == expected
        # Heartbeat (nil) and a non-log signal on the same connection: no put, the latter acked.
        writer.write(b"\xc0" + packb(["m", b"\x00", {"fluent_signal": 1, "chunk": "sig"}]))
        await read_ack(reader, b"sig")
    assert [b.records[0].record["i"] for b in sink.batches] == list(range(200))
    assert sample_value(server.metrics.heartbeats, kind="nil") == 1
    assert sample_value(server.metrics.non_log_signals, signal="1") == 1
    assert sample_value(server.metrics.connections_total) == 1


# -- bad peers -------------------------------------------------------------------------


BAD_FRAMES = {
    "msgpack": b"\xc1",  # a byte msgpack never uses
    "limit": forward_frame(0, pad=4096),
    "compression": fluentd_packed(b"\x1f\x8bnot gzip", {"compressed": "gzip"}),
    "invalid": packb([42, [[T_SEC, {"a": 1}]]]),  # tag is not a string
}


@pytest.mark.asyncio
@pytest.mark.parametrize("reason", list(BAD_FRAMES))
async def test_malformed_frame_closes_only_that_connection(
    reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    limits = ForwardLimits(max_frame_bytes=2048)
    async with (
        serving(sink, limits=limits) as server,
        connect(server.port) as (good_r, good_w),
        connect(server.port) as (bad_r, bad_w),
    ):
        caplog.set_level(logging.WARNING, logger="logsieve.agent_plugin")
        bad_w.write(BAD_FRAMES[reason])
        assert await read_eof(bad_r) == b""  # closed without an ack
        good_w.write(forward_frame(1, chunk="ok"))
        await read_ack(good_r, b"ok")
        peer = "127.0.0.1:{}".format(bad_w.get_extra_info("sockname")[1])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and peer in warnings[0].getMessage()
    assert sample_value(server.metrics.malformed_frames, reason=reason) == 1
    assert sample_value(server.metrics.connections_closed, reason="protocol") == 1
    assert len(sink.batches) == 1


def test_protocol_errors_are_classified_by_kind_not_by_message() -> None:
    assert classify_protocol_error(LimitExceeded("x")) == "limit"
    assert classify_protocol_error(MalformedMsgpack("x")) == "msgpack"
    assert classify_protocol_error(CompressionError("x")) == "compression"
    # The old text search filed anything naming a "limit" under limit.
    assert classify_protocol_error(ProtocolError("nanoseconds out of range (limit 9)")) == (
        "invalid"
    )


@pytest.mark.asyncio
async def test_sink_refusing_a_batch_closes_without_ack() -> None:
    class FailingSink:
        async def put(self, batch: RecordBatch) -> None:
            raise RuntimeError("pipeline stopped")

    async with serving(FailingSink()) as server, connect(server.port) as (reader, writer):
        writer.write(forward_frame(1, chunk="c1"))
        assert await read_eof(reader) == b""
    assert sample_value(server.metrics.acks_sent) == 0
    assert sample_value(server.metrics.connections_closed, reason="sink") == 1


# -- handshake, TLS, heartbeat --------------------------------------------------------


@pytest.mark.asyncio
async def test_shared_key_handshake_then_data() -> None:
    sink = RecordingSink()
    settings = {"shared_key": "secret", "self_hostname": "server.example", "users": {"alice": "pw"}}
    async with serving(sink, **settings) as server, connect(server.port) as (reader, writer):
        decoder = FrameDecoder()
        client = ClientHandshake("client.example", "secret", "alice", "pw")
        writer.write(client.receive_helo(await read_obj(reader, decoder)))
        pong = client.receive_pong(await read_obj(reader, decoder))  # verifies the digest
        assert pong.server_hostname == b"server.example"
        writer.write(forward_frame(3, chunk="after-auth"))
        assert await read_obj(reader, decoder) == {b"ack": b"after-auth"}
    assert sink.batches[0].records[0].record["i"] == 3
    assert sample_value(server.metrics.handshake_failures) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("key", ["wrong", None])
async def test_failed_handshake_replies_pong_false_and_closes(
    key: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    async with serving(sink, shared_key="secret") as server, connect(server.port) as (r, w):
        decoder = FrameDecoder()
        helo = await read_obj(r, decoder)
        if key is None:  # a client without a shared key just sends data
            w.write(forward_frame(1, chunk="c"))
        else:
            w.write(ClientHandshake("client.example", key).receive_helo(helo))
        pong = await read_obj(r, decoder)
        assert pong[:2] == [b"PONG", False]
        assert await read_eof(r) == b""
    assert sample_value(server.metrics.handshake_failures) == 1
    assert sink.batches == []
    assert sum("handshake failed" in r.getMessage() for r in caplog.records) == 1


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Self-signed server and client certificates made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no `openssl` executable (and `cryptography` is not installed) to make certs")
    out = tmp_path_factory.mktemp("certs")
    paths: dict[str, Path] = {}
    for name, cn, san in (
        ("server", "127.0.0.1", "IP:127.0.0.1"),
        ("client", "client", "DNS:client"),
    ):
        cert, key = out / f"{name}.pem", out / f"{name}.key"
        args = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        subj = ["-subj", f"/CN={cn}", "-addext", f"subjectAltName={san}"]
        files = ["-keyout", str(key), "-out", str(cert)]
        subprocess.run(
            [openssl, *args.split(), *subj, *files], check=True, capture_output=True, timeout=30
        )
        paths[f"{name}_cert"], paths[f"{name}_key"] = cert, key
    return paths


@pytest.mark.asyncio
async def test_tls_and_mutual_tls(certs: dict[str, Path]) -> None:
    sink = RecordingSink()
    client_ctx = ssl.create_default_context(cafile=str(certs["server_cert"]))
    tls = {"tls_cert": certs["server_cert"], "tls_key": certs["server_key"]}
    async with serving(sink, **tls) as server, connect(server.port, client_ctx) as (reader, writer):
        writer.write(forward_frame(1, chunk="tls"))
        await read_ack(reader, b"tls")
    mtls = {
        "tls_cert": certs["server_cert"],
        "tls_key": certs["server_key"],
        "tls_ca": certs["client_cert"],
    }
    async with serving(sink, **mtls) as server:
        # No client certificate: the server rejects the handshake, nothing is accepted.
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            async with connect(server.port, client_ctx) as (reader, writer):
                writer.write(forward_frame(2, chunk="anon"))
                assert await read_eof(reader) == b""
        client_ctx.load_cert_chain(certs["client_cert"], certs["client_key"])
        async with connect(server.port, client_ctx) as (reader, writer):
            writer.write(forward_frame(3, chunk="mtls"))
            await read_ack(reader, b"mtls")
    assert [b.records[0].record["i"] for b in sink.batches] == [1, 3]


@pytest.mark.asyncio
async def test_udp_heartbeat_is_answered_from_the_same_port() -> None:
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[tuple[bytes, Any]] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not reply.done():
                reply.set_result((data, addr))

    async with serving(RecordingSink()) as server:
        transport, _ = await loop.create_datagram_endpoint(
            Client, remote_addr=("127.0.0.1", server.port)
        )
        try:
            transport.sendto(b"\x00")
            data, addr = await asyncio.wait_for(reply, T)
        finally:
            transport.close()
    assert data == b"\x00" and addr[1] == server.port
    assert sample_value(server.metrics.heartbeats, kind="udp") == 1


# -- connection limits and timers ------------------------------------------------------


@pytest.mark.asyncio
async def test_max_connections_refuses_extra_connections() -> None:
    async with serving(RecordingSink(), max_connections=1) as server:
        async with connect(server.port) as (r1, w1):
            w1.write(forward_frame(1, chunk="one"))
            await read_ack(r1, b"one")
            async with connect(server.port) as (r2, _):
                assert await read_eof(r2) == b""
            assert sample_value(server.metrics.connections_refused) == 1
        # Once the first leaves, a new connection is served again.
        for _ in range(100):
            if not server.connections:
                break
            await asyncio.sleep(0.02)
        async with connect(server.port) as (r3, w3):
            w3.write(forward_frame(3, chunk="tri"))
            await read_ack(r3, b"tri")
    assert sample_value(server.metrics.connections_total) == 2


@pytest.mark.asyncio
async def test_idle_connection_is_closed_but_not_while_waiting_on_the_sink() -> None:
    sink = BlockingSink()
    async with serving(sink, idle_timeout=0.2) as server:
        async with connect(server.port) as (reader, _):
            assert await read_eof(reader) == b""
        assert sample_value(server.metrics.connections_closed, reason="idle") == 1
        async with connect(server.port) as (reader, writer):
            writer.write(forward_frame(1, chunk="slow"))
            await asyncio.wait_for(sink.entered.wait(), T)
            await assert_silent(reader, 0.6)  # 3x the idle timeout, still open
            sink.gate.set()
            await read_ack(reader, b"slow")
        assert sample_value(server.metrics.connections_closed, reason="idle") == 1


@pytest.mark.asyncio
async def test_half_close_still_gets_the_pending_ack_and_empty_connections_are_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = BlockingSink()
    async with serving(sink) as server:
        async with connect(server.port) as (reader, writer):
            writer.write(forward_frame(1, chunk="last"))
            await asyncio.wait_for(sink.entered.wait(), T)
            writer.write_eof()  # the client is done sending, still waits for its ack
            await asyncio.sleep(0.05)
            sink.gate.set()
            assert await read_eof(reader) == encode_ack(b"last")
        async with connect(server.port):
            pass  # Fluentd's transport heartbeat: connect, close
        for _ in range(100):
            if sample_value(server.metrics.heartbeats, kind="connect"):
                break
            await asyncio.sleep(0.02)
        assert sample_value(server.metrics.heartbeats, kind="connect") == 1
        assert sample_value(server.metrics.connections_closed, reason="peer") == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- backpressure and shutdown ---------------------------------------------------------


@pytest.mark.asyncio
async def test_full_sink_stops_reading_and_loses_nothing() -> None:
    sink = QueueSink(maxsize=1)
    frame_count = 0
    async with serving(sink) as server, connect(server.port) as (reader, writer):
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        # Write ~64 KiB frames until the kernel refuses more (our transport buffers > 1 MiB).
        while frame_count < 1000 and writer.transport.get_write_buffer_size() < 1 << 20:
            writer.write(forward_frame(frame_count, chunk=f"c{frame_count}", records=60, pad=1000))
            frame_count += 1
            await asyncio.sleep(0)
        assert writer.transport.get_write_buffer_size() >= 1 << 20, "client never blocked"
        await asyncio.sleep(0.2)
        received = sample_value(server.metrics.bytes_received)
        await asyncio.sleep(0.3)
        assert sample_value(server.metrics.bytes_received) == received  # the server stopped reading
        assert sample_value(server.metrics.buffered_bytes) < 2 << 20  # bounded server-side
        assert sink.qsize() == 1
        # Drain: every frame arrives, in order, and every chunk is acked.
        got: list[int] = []
        expected = b"".join(encode_ack(f"c{n}".encode()) for n in range(frame_count))
        acks = asyncio.ensure_future(reader.readexactly(len(expected)))
        while len(got) < frame_count:
            batch = await asyncio.wait_for(sink.get(), T)
            got.append(batch.records[0].record["i"])
            assert len(batch.records) == 60
        assert await asyncio.wait_for(acks, T) == expected
    assert got == list(range(frame_count))
    assert frame_count > 20


@pytest.mark.asyncio
async def test_stop_acks_the_in_flight_frame_and_refuses_new_connections() -> None:
    sink = BlockingSink()
    server = ForwardServer(ServerConfig(host="127.0.0.1", port=0), sink)
    await server.start()
    async with connect(server.port) as (reader, writer):
        writer.write(forward_frame(1, chunk="inflight") + forward_frame(2, chunk="queued"))
        await asyncio.wait_for(sink.entered.wait(), T)
        stopping = asyncio.ensure_future(server.stop(drain_timeout=T))
        await asyncio.sleep(0.1)
        with pytest.raises(OSError):  # stop accepting comes first
            async with connect(server.port):
                pass
        assert not stopping.done()
        sink.gate.set()
        await asyncio.wait_for(stopping, T)
        # Both frames already received were handed over and acked, then the socket closed.
        assert await read_eof(reader) == encode_ack(b"inflight") + encode_ack(b"queued")
    assert [b.records[0].record["i"] for b in sink.batches] == [1, 2]


@pytest.mark.asyncio
async def test_stop_gives_up_after_drain_timeout_without_ack() -> None:
    sink = BlockingSink()
    server = ForwardServer(ServerConfig(host="127.0.0.1", port=0), sink)
    await server.start()
    async with connect(server.port) as (reader, writer):
        writer.write(forward_frame(1, chunk="never"))
        await asyncio.wait_for(sink.entered.wait(), T)
        await asyncio.wait_for(server.stop(drain_timeout=0.2), T)
        assert await read_eof(reader) == b""
    assert sink.batches == [] and not server.connections
    assert sample_value(server.metrics.connections_open) == 0


@pytest.mark.asyncio
async def test_unread_acks_pause_reading() -> None:
    """A peer that does not read its acks trips the write high-water mark."""

    class Transport(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self.reading = True

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return ("127.0.0.1", 9) if name == "peername" else default

        def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
            pass

        def pause_reading(self) -> None:
            self.reading = False

        def resume_reading(self) -> None:
            self.reading = True

    transport = Transport()
    conns: set[ForwardProtocol] = set()
    protocol = ForwardProtocol(ServerConfig(), RecordingSink(), Metrics(), conns)
    protocol.connection_made(transport)
    protocol.pause_writing()
    assert not transport.reading
    protocol.resume_writing()
    assert transport.reading
    protocol.connection_lost(None)
    assert not conns


# -- config ------------------------------------------------------------------------------


def test_server_config_defaults_and_validation(tmp_path: Path) -> None:
    config = ServerConfig()
    assert (config.host, config.port, config.metrics_host, config.metrics_port) == (
        "0.0.0.0",
        24224,
        "127.0.0.1",
        2021,
    )
    assert config.security is None and not config.tls
    loaded = ServerConfig.from_dict(
        {
            "port": 0,
            "shared_key": "",
            "limits": {"max_frame_bytes": 4096},
            "tls_cert": "c.pem",
            "tls_key": "k.pem",
        }
    )
    assert loaded.limits.max_frame_bytes == 4096 and loaded.tls_cert == Path("c.pem")
    assert loaded.security is not None and loaded.security.shared_key == ""
    bad: list[tuple[dict[str, Any], str]] = [
        ({"bogus": 1}, "server.bogus"),
        ({"limits": {"max_frame": 1}}, "server.limits.max_frame"),
        ({"port": 70000}, "server.port"),
        ({"port": True}, "server.port"),
        ({"users": {"a": "b"}}, "server.users"),
        ({"tls_key": "k.pem"}, "server.tls_cert"),
        ({"tls_ca": "ca.pem"}, "server.tls_ca"),
        ({"idle_timeout": 0}, "server.idle_timeout"),
        ({"max_connections": 0}, "server.max_connections"),
    ]
    for data, field in bad:
        with pytest.raises(ConfigError) as info:
            ServerConfig.from_dict(data)
        assert info.value.field == field, data
    with pytest.raises(ConfigError, match="tls_cert"):
        build_ssl_context(ServerConfig(tls_cert=tmp_path / "no.pem", tls_key=tmp_path / "no.key"))


def test_queue_sink_must_be_bounded() -> None:
    with pytest.raises(ConfigError):
        QueueSink(0)
    assert isinstance(QueueSink(1), RecordSink)
