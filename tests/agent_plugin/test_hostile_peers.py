"""Slow and unauthenticated peers cannot hold the server's slots or buffers.

Real sockets on 127.0.0.1 against a ForwardServer in this process:

* 50 connections dribbling one byte of a request every half second, at
  ``max_connections = 50``, no longer lock out normal clients (the per-peer cap keeps
  slots for other hosts; the frame deadline closes the dribblers);
* the handshake deadline closes a peer that never sends its PING, and a peer that
  has not authenticated can make the server buffer ``max_handshake_bytes`` at most;
* time the server spends not reading (a slow sink) is not charged to the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from logsieve.agent_plugin.forward import ForwardLimits, RecordBatch, encode_ack
from logsieve.agent_plugin.metrics import Metrics, sample_value
from logsieve.agent_plugin.serve_config import load_serve_settings
from logsieve.agent_plugin.server import ForwardServer
from logsieve.agent_plugin.server_config import ServerConfig
from logsieve.errors import ConfigError

from .wire import T_SEC, et, packb

T = 10.0
# Any byte-dribbled request: a Forward request's header and a few bytes of its entries.
DRIBBLE = packb(["slow", [[et(T_SEC), {"log": "x" * 200}]], {"chunk": "never"}])


class Sink:
    """Accepts batches at once unless ``gate`` is cleared; counts records by tag."""

    def __init__(self) -> None:
        self.records: dict[str, int] = {}
        self.gate = asyncio.Event()
        self.gate.set()

    async def put(self, batch: RecordBatch) -> None:
        await self.gate.wait()
        self.records[batch.tag] = self.records.get(batch.tag, 0) + len(batch.records)


@contextlib.asynccontextmanager
async def serving(**config: Any) -> AsyncIterator[tuple[ForwardServer, Sink]]:
    sink = Sink()
    cfg = ServerConfig(host="127.0.0.1", port=0, udp_heartbeat=False, **config)
    server = ForwardServer(cfg, sink, Metrics())
    await server.start()
    try:
        yield server, sink
    finally:
        await server.stop(drain_timeout=2.0)


def second_loopback() -> str:
    """127.0.0.2 as a client source address (Linux routes all of 127/8 to lo)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 0))
        except OSError:
            pytest.skip("cannot bind 127.0.0.2 as a source address on this system")
    return "127.0.0.2"


async def dribbler(port: int, stop: asyncio.Event, *, reconnect: bool, gap: float) -> None:
    """A slow peer: one byte of a request every ``gap`` s; reconnects when dropped."""
    while not stop.is_set():
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        try:
            for byte in DRIBBLE:
                if stop.is_set() or writer.is_closing():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(gap)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if not reconnect:
            await stop.wait()
            return
        await asyncio.sleep(0.05)


async def client(port: int, i: int, source: str, within: float) -> float:
    """A normal client: connect, send one acked request, await the ack; retry when
    refused (as Fluent Bit does) until ``within`` s. Returns the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunk = f"c{i}".encode()
    expected = encode_ack(chunk)
    while loop.time() - started < within:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
        except OSError:
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(packb(["normal", [[et(T_SEC, i), {"log": f"ok {i}"}]], {"chunk": chunk}]))
            reply = await asyncio.wait_for(reader.read(len(expected)), within)
            if reply == expected:
                return loop.time() - started
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await asyncio.sleep(0.1)  # refused: closed at once, try again
    raise AssertionError(f"client {i} not served within {within} s")


async def settle(server: ForwardServer, open_at_least: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + T
    while sample_value(server.metrics.connections_open) < open_at_least:
        assert loop.time() < deadline, "dribblers did not connect"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_slow_peers_from_one_host_leave_slots_for_other_hosts() -> None:
    source = second_loopback()
    async with serving(max_connections=50, max_connections_per_peer=25, frame_timeout=2.0) as (
        server,
        sink,
    ):
        stop = asyncio.Event()
        # A persistent attacker: 50 dribblers that reconnect as soon as they are dropped.
        attack = [
            asyncio.create_task(dribbler(server.port, stop, reconnect=True, gap=0.5))
            for _ in range(50)
        ]
        try:
            await settle(server, 25)
            await asyncio.sleep(0.5)
            waits = await asyncio.gather(*(client(server.port, i, source, T) for i in range(20)))
        finally:
            stop.set()
            await asyncio.gather(*attack)
        refused = sample_value(server.metrics.connections_refused)
    assert sink.records["normal"] == 20 and "slow" not in sink.records
    assert max(waits) < 3.0, waits  # served at once: slots were free for this host
    assert refused >= 25  # the attacker's connections beyond its share


@pytest.mark.asyncio
async def test_frame_deadline_closes_dribblers_so_clients_of_the_same_host_get_in() -> None:
    async with serving(max_connections=50, frame_timeout=1.0) as (server, sink):
        stop = asyncio.Event()
        attack = [
            asyncio.create_task(dribbler(server.port, stop, reconnect=False, gap=0.3))
            for _ in range(50)
        ]
        try:
            await settle(server, 50)
            waits = await asyncio.gather(
                *(client(server.port, i, "127.0.0.1", T) for i in range(20))
            )
        finally:
            stop.set()
            await asyncio.gather(*attack)
        closed = sample_value(server.metrics.connections_closed, reason="frame_timeout")
    assert sink.records["normal"] == 20
    assert closed == 50  # every dribbler, none of the clients
    assert max(waits) < 1.0 + 3.0, waits


@pytest.mark.asyncio
async def test_handshake_deadline_closes_a_silent_or_slow_peer() -> None:
    async with serving(shared_key="k", handshake_timeout=0.5, frame_timeout=None) as (server, _):
        loop = asyncio.get_running_loop()
        silent = await asyncio.open_connection("127.0.0.1", server.port)
        slow = await asyncio.open_connection("127.0.0.1", server.port)
        started = loop.time()
        slow[1].write(b"\x96\xa4PING")  # a PING that never finishes
        for reader, writer in (silent, slow):
            with contextlib.suppress(ConnectionError):
                while await asyncio.wait_for(reader.read(4096), T):
                    pass  # the HELO, then EOF
            writer.close()
        elapsed = loop.time() - started
        closed = sample_value(server.metrics.connections_closed, reason="handshake_timeout")
    assert closed == 2
    assert 0.4 < elapsed < 3.0


@pytest.mark.asyncio
async def test_before_authentication_a_peer_buffers_max_handshake_bytes_at_most() -> None:
    limits = ForwardLimits(max_handshake_bytes=4096)
    async with serving(shared_key="k", limits=limits) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        # A "PING" whose first string declares 1 MiB: legal under max_frame_bytes.
        writer.write(b"\x96\xdb\x00\x10\x00\x00" + b"x" * 8192)
        with contextlib.suppress(ConnectionError):
            while await asyncio.wait_for(reader.read(4096), T):
                pass
        writer.close()
        failed = sample_value(server.metrics.handshake_failures)
        closed = sample_value(server.metrics.connections_closed, reason="handshake")
    assert failed == closed == 1  # too big to be a PING: a failed handshake


@pytest.mark.asyncio
async def test_time_the_server_spends_not_reading_is_not_charged_to_the_peer() -> None:
    async with serving(frame_timeout=0.3, idle_timeout=0.3) as (server, sink):
        sink.gate.clear()  # the sink holds the first request for 1 s
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        first = packb(["held", [[et(T_SEC), {"log": "a"}]], {"chunk": "a"}])
        second = packb(["held", [[et(T_SEC), {"log": "b"}]], {"chunk": "b"}])
        writer.write(first + second[:5])  # and half of the next request
        await asyncio.sleep(1.0)
        sink.gate.set()
        assert await asyncio.wait_for(reader.readexactly(len(encode_ack(b"a"))), T) == encode_ack(
            b"a"
        )
        writer.write(second[5:])
        assert await asyncio.wait_for(reader.readexactly(len(encode_ack(b"b"))), T) == encode_ack(
            b"b"
        )
        writer.close()
    assert sink.records["held"] == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_connections_per_peer", 0),
        ("max_connections_per_peer", True),
        ("handshake_timeout", 0),
        ("frame_timeout", float("nan")),
        ("frame_timeout", -1.0),
        ("max_buffered_bytes", 1024),  # under max_frame_bytes
    ],
)
def test_new_server_settings_are_validated(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig(**{field: value})
    assert info.value.field == f"server.{field}"


def test_max_handshake_bytes_is_validated() -> None:
    with pytest.raises(ConfigError, match="max_handshake_bytes"):
        ForwardLimits(max_handshake_bytes=100)


def test_new_settings_are_read_from_serve_toml_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(
        "[server]\nport = 25000\nmax_connections_per_peer = 8\nhandshake_timeout = 2.5\n"
        "[server.limits]\nmax_handshake_bytes = 4096\n"
    )
    s = load_serve_settings(path, {"LOGSIEVE_SERVER_FRAME_TIMEOUT": "5"})
    assert (s.server.max_connections_per_peer, s.server.handshake_timeout) == (8, 2.5)
    assert s.server.frame_timeout == 5.0 and s.server.limits.max_handshake_bytes == 4096
    defaults = ServerConfig()
    assert (defaults.max_connections_per_peer, defaults.handshake_timeout) == (64, 10.0)
    assert defaults.frame_timeout == 60.0 and defaults.limits.max_handshake_bytes == 16 * 1024


@pytest.mark.asyncio
async def test_server_wide_buffer_budget_closes_the_biggest_holder() -> None:
    kib = 1024
    limits = ForwardLimits(max_frame_bytes=512 * kib)
    async with serving(limits=limits, max_buffered_bytes=1024 * kib) as (server, sink):
        holders = []
        for _ in range(4):  # 400 KiB each of a request that never completes
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x93\xa3big\xdb\x00\x07\x00\x00" + b"x" * (400 * kib))
            await writer.drain()
            holders.append((reader, writer))
            await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + T
        while sample_value(server.metrics.connections_closed, reason="overload") < 2:
            assert loop.time() < deadline, "nobody was shed"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert sample_value(server.metrics.connections_closed, reason="overload") == 2
        assert sum(c.in_frame for c in server.connections) <= 1024 * kib
        assert await client(server.port, 0, "127.0.0.1", T) < T  # others are still served
        for _, writer in holders:
            writer.close()
    assert sink.records["normal"] == 1


@pytest.mark.asyncio
async def test_closed_connections_are_freed_without_the_cyclic_gc() -> None:
    """serve runs the cyclic GC rarely (app.GC_THRESHOLD): a connection kept alive by
    a reference cycle keeps its buffers for minutes, which under a flood of bad peers
    is hundreds of MiB. Every way a connection ends must leave it to refcounting."""
    gc.collect()
    gc.disable()
    try:
        async with serving(shared_key=None, frame_timeout=0.3, idle_timeout=0.3) as (server, _):
            refs: list[weakref.ref[Any]] = []
            sends = [
                packb(["ok", [[et(T_SEC), {"log": "a"}]], {"chunk": "a"}]),  # acked, peer closes
                b"\xc1" + b"x" * 100,  # malformed msgpack
                b"\x92\xa2am" + b"\xdd\x00\x03\xd0\x90" * 10,  # stalls: frame deadline
                b"",  # silent: idle timeout
                b"\x92\xa2am" + b"\xdd\x00\xff\xff\xff",  # over max_array_len
            ]
            for data in sends:
                before = set(server.connections)
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                while not set(server.connections) - before:
                    await asyncio.sleep(0.01)
                (conn,) = set(server.connections) - before
                refs.append(weakref.ref(conn))
                del conn, before
                writer.write(data)
                with contextlib.suppress(ConnectionError, TimeoutError):
                    if data.startswith(b"\x93"):
                        await asyncio.wait_for(reader.read(64), T)  # the ack
                        writer.close()
                    while await asyncio.wait_for(reader.read(4096), T):
                        pass
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + T
            while server.connections:
                assert loop.time() < deadline
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            alive = [r() for r in refs if r() is not None]
            assert alive == [], [gc.get_referrers(c) for c in alive]
    finally:
        gc.enable()
