"""UpstreamClient against a real in-process Forward receiver on 127.0.0.1.

The receiver below is written from the spec (FORWARD.md §1, §1.4, §1.6) with
asyncio + msgpack only, independent of the client's code: it decodes Forward
and PackedForward frames, records every event, replies ``{"ack": chunk}``, and
can be told to stay silent, to drop connections mid-stream, to restart on the
same port, to require the shared-key handshake, or to speak TLS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import pytest_asyncio

from logsieve.agent_plugin.forward import EventTime
from logsieve.agent_plugin.spool import Chunk
from logsieve.agent_plugin.upstream import UpstreamClient, UpstreamClosedError, encode_frame
from logsieve.agent_plugin.upstream_config import UpstreamConfig
from logsieve.errors import ConfigError, DataError

TAG = "logsieve.flag"
SERVER_NAME = "receiver.test"


def _sha512(*parts: bytes) -> str:
    return hashlib.sha512(b"".join(parts)).hexdigest()


class Receiver:
    """A minimal Fluentd-like ``in_forward``.

    ``mode``: ``ack`` (record, then ack), ``silent`` (record, never ack) or
    ``close`` (close the connection on a frame without recording it).
    """

    def __init__(self, *, shared_key: str | None = None, ssl_ctx: ssl.SSLContext | None = None):
        self.shared_key = shared_key
        self.ssl_ctx = ssl_ctx
        self.mode = "ack"
        self.port = 0
        self.events: list[tuple[str, int, dict[str, Any]]] = []  # (tag, time ns, record)
        self.options: list[dict[str, Any]] = []
        self.connections = 0
        self.handshake_failures = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, ssl=self.ssl_ctx
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = None

    def records(self) -> list[dict[str, Any]]:
        return [rec for _, _, rec in self.events]

    def first_seen_ids(self) -> list[int]:
        """Record ``i`` values in order of first arrival (duplicates removed)."""
        seen: dict[int, None] = {}
        for rec in self.records():
            seen.setdefault(rec["i"], None)
        return list(seen)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        unpacker = msgpack.Unpacker(raw=False)
        try:
            if self.shared_key is not None and not await self._handshake(reader, writer, unpacker):
                return
            while data := await reader.read(65536):
                unpacker.feed(data)
                for obj in unpacker:
                    if not await self._request(obj, writer):
                        return
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _next(self, reader: asyncio.StreamReader, unpacker: msgpack.Unpacker) -> Any:
        while True:
            for obj in unpacker:
                return obj
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError("client went away during the handshake")
            unpacker.feed(data)

    async def _handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, unpacker: Any
    ) -> bool:
        assert self.shared_key is not None
        nonce = os.urandom(16)
        writer.write(msgpack.packb(["HELO", {"nonce": nonce, "auth": b"", "keepalive": True}]))
        ping = await self._next(reader, unpacker)
        assert isinstance(ping, list) and len(ping) == 6 and ping[0] == "PING", ping
        _, host, salt, digest, _user, _pw = ping
        assert all(isinstance(x, str) for x in ping), "PING elements must be msgpack str"
        key = self.shared_key.encode()
        if digest != _sha512(salt.encode(), host.encode(), nonce, key):
            self.handshake_failures += 1
            writer.write(msgpack.packb(["PONG", False, "shared_key mismatch", "", ""]))
            await writer.drain()
            return False
        pong_digest = _sha512(salt.encode(), SERVER_NAME.encode(), nonce, key)
        writer.write(msgpack.packb(["PONG", True, "", SERVER_NAME, pong_digest]))
        await writer.drain()
        return True

    async def _request(self, obj: Any, writer: asyncio.StreamWriter) -> bool:
        if self.mode == "close":
            return False
        assert isinstance(obj, list) and len(obj) == 3, obj
        tag, entries, option = obj
        assert isinstance(tag, str) and isinstance(option, dict)
        if isinstance(entries, (bytes, str)):  # PackedForward
            raw = entries if isinstance(entries, bytes) else entries.encode("utf-8")
            stream = msgpack.Unpacker(raw=False)
            stream.feed(raw)
            entries = list(stream)
        assert option.get("size") == len(entries)
        for time, record in entries:
            assert isinstance(time, msgpack.ExtType) and time.code == 0 and len(time.data) == 8
            sec, nsec = struct.unpack(">II", time.data)
            self.events.append((tag, sec * 1_000_000_000 + nsec, record))
        self.options.append(option)
        if self.mode == "ack" and "chunk" in option:
            writer.write(msgpack.packb({"ack": option["chunk"]}))
            await writer.drain()
        return True


def config(port: int, **kw: Any) -> UpstreamConfig:
    """Fast settings for tests: short timeouts and backoff."""
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "self_hostname": "client.test",
        "ack_timeout": 0.3,
        "connect_timeout": 0.5,
        "flush_interval": 0.02,
        "backoff_initial": 0.02,
        "backoff_max": 0.1,
    }
    base.update(kw)
    return UpstreamConfig(**base)


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.chunk")) if directory.exists() else []


@pytest_asyncio.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    made: list[Receiver] = []

    async def make(**kw: Any) -> Receiver:
        rx = Receiver(**kw)
        await rx.start()
        made.append(rx)
        return rx

    yield make
    for rx in made:
        await rx.stop()


@pytest_asyncio.fixture
async def clients() -> AsyncIterator[Callable[[UpstreamConfig], Awaitable[UpstreamClient]]]:
    made: list[UpstreamClient] = []

    async def make(cfg: UpstreamConfig) -> UpstreamClient:
        client = UpstreamClient(cfg)
        await client.start()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.stop(timeout=0.2)


# -- delivery ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_records_arrive_with_tag_time_and_record(receivers: Any, clients: Any) -> None:
    rx = await receivers()
    client = await clients(config(rx.port))
    await client.send(TAG, {"i": 0, "msg": "héllo", "n": 1.5}, EventTime(1672531200, 123456789))
    await client.send(TAG, {"i": 1, "raw": b"\xff\x00"}, 1672531201.25)
    await client.send("other.tag", {"i": 2})
    assert await client.flush(3.0)
    assert rx.events[0] == (TAG, 1672531200_123456789, {"i": 0, "msg": "héllo", "n": 1.5})
    assert rx.events[1] == (TAG, 1672531201_250000000, {"i": 1, "raw": b"\xff\x00"})
    assert rx.events[2][0] == "other.tag"
    assert len(rx.events) == 3
    # one chunk per tag; each carries a 128-bit base64 chunk id (str) and the size
    assert [o["size"] for o in rx.options] == [2, 1]
    for option in rx.options:
        assert len(base64.b64decode(option["chunk"], validate=True)) == 16
    assert len({o["chunk"] for o in rx.options}) == 2
    stats = client.stats
    assert (stats.chunks_acked, stats.records_acked, stats.retries) == (2, 3, 0)
    assert stats.buffered_records == 0 and stats.dropped_records == 0
    assert await client.stop(1.0) is True


@pytest.mark.asyncio
async def test_packed_forward_mode_and_batching(receivers: Any, clients: Any) -> None:
    rx = await receivers()
    client = await clients(config(rx.port, mode="packed", max_batch_records=4))
    for i in range(10):
        await client.send(TAG, {"i": i})
    assert await client.flush(3.0)
    assert rx.first_seen_ids() == list(range(10))
    assert [o["size"] for o in rx.options] == [4, 4, 2]


def test_encode_frame_is_forward_mode_with_str_strings() -> None:
    entry = msgpack.packb([EventTime(1, 2).to_ext(), {"k": "v"}], use_bin_type=True)
    chunk = Chunk(0, "TlcZBvAx/vf4KtNvA1YeRw==", TAG, 1, entry)
    frame = encode_frame(chunk, require_ack=True, packed=False)
    assert frame == msgpack.packb(
        [TAG, [[EventTime(1, 2).to_ext(), {"k": "v"}]], {"chunk": chunk.chunk_id, "size": 1}],
        use_bin_type=True,
    )
    # the chunk id must be msgpack str (Fluent Bit closes on a bin chunk): fixstr a0|24
    assert b"\xa5chunk\xb8TlcZ" in frame
    assert b"chunk" not in encode_frame(chunk, require_ack=False, packed=False)


@pytest.mark.asyncio
async def test_unacked_chunk_is_kept_then_resent_after_ack_timeout(
    receivers: Any, clients: Any
) -> None:
    rx = await receivers()
    rx.mode = "silent"
    client = await clients(config(rx.port, ack_timeout=0.15))
    await client.send(TAG, {"i": 0})
    await wait_until(lambda: len(rx.events) >= 1)
    await asyncio.sleep(0.05)
    assert client.pending and client.stats.chunks_acked == 0  # waiting for the ack
    await wait_until(lambda: client.stats.ack_timeouts >= 1 and len(rx.events) >= 2)
    rx.mode = "ack"
    assert await client.flush(3.0)
    assert rx.first_seen_ids() == [0]  # duplicates allowed, nothing missing
    assert len({o["chunk"] for o in rx.options}) == 1  # the resend reuses the chunk id
    stats = client.stats
    assert stats.retries >= 1 and stats.reconnects >= 1 and stats.chunks_acked == 1
    assert "no ack" in (client.last_error or "")


@pytest.mark.asyncio
async def test_receiver_down_at_start_then_everything_in_order(
    receivers: Any, clients: Any
) -> None:
    rx = await receivers()
    await rx.stop()
    client = await clients(config(rx.port, max_batch_records=7))
    for i in range(50):
        await client.send(TAG, {"i": i})
    await wait_until(lambda: client.stats.connect_failures >= 2)
    assert client.stats.buffered_records == 50
    await rx.start()
    assert await client.flush(5.0)
    assert rx.first_seen_ids() == list(range(50))
    assert client.stats.records_acked == 50


@pytest.mark.asyncio
async def test_receiver_restart_mid_stream_loses_nothing(receivers: Any, clients: Any) -> None:
    rx = await receivers()
    client = await clients(config(rx.port, max_batch_records=5))

    async def produce() -> None:
        for i in range(200):
            await client.send(TAG, {"i": i})
            if i % 10 == 0:
                await asyncio.sleep(0.005)

    producer = asyncio.create_task(produce())
    await wait_until(lambda: len(rx.events) >= 30)
    rx.mode = "close"  # the next frame dies with its connection, unrecorded
    await wait_until(lambda: client.stats.reconnects >= 1)
    await rx.stop()
    await asyncio.sleep(0.1)
    rx.mode = "ack"
    await rx.start()
    await producer
    assert await client.flush(5.0)
    assert rx.first_seen_ids() == list(range(200))


@pytest.mark.asyncio
async def test_memory_bound_spills_to_disk_then_delivers_and_empties_spool(
    tmp_path: Path, receivers: Any, clients: Any
) -> None:
    rx = await receivers()
    await rx.stop()
    spool = tmp_path / "spool"
    cfg = config(rx.port, max_batch_records=5, memory_buffer_records=10, spool_dir=spool)
    client = await clients(cfg)
    for i in range(43):
        assert await client.send(TAG, {"i": i}) is True
    stats = client.stats
    assert stats.buffered_records <= 10
    assert stats.spilled_chunks >= 6 and stats.spilled_bytes > 0
    assert len(spool_files(spool)) == stats.spool_chunks >= 6
    assert not list(spool.glob(".*.tmp"))
    await rx.start()
    assert await client.flush(5.0)
    assert rx.first_seen_ids() == list(range(43))  # spilled chunks keep their place
    assert spool_files(spool) == []
    assert client.stats.spool_resends == stats.spilled_chunks
    assert client.stats.spool_bytes == 0


@pytest.mark.asyncio
async def test_stop_spools_unacked_and_next_client_resends(tmp_path: Path, receivers: Any) -> None:
    rx = await receivers()
    rx.mode = "silent"
    spool = tmp_path / "spool"
    first = UpstreamClient(config(rx.port, max_batch_records=3, spool_dir=spool))
    await first.start()
    for i in range(7):
        await first.send(TAG, {"i": i})
    await wait_until(lambda: len(rx.events) >= 3)  # first chunk written, never acked
    assert await first.stop(timeout=0.1) is False
    with pytest.raises(UpstreamClosedError):
        await first.send(TAG, {"i": 99})
    assert len(spool_files(spool)) == 3  # in-flight chunk, sealed chunk, open batch
    sent_ids = {o["chunk"] for o in rx.options}

    rx.mode = "ack"
    second = UpstreamClient(config(rx.port, spool_dir=spool))
    await second.start()
    try:
        assert await second.flush(5.0)
    finally:
        assert await second.stop(1.0) is True
    assert rx.first_seen_ids() == list(range(7))
    assert sent_ids <= {o["chunk"] for o in rx.options}  # same ids: dedup-able repeats
    assert second.stats.spool_resends == 3
    assert spool_files(spool) == []


@pytest.mark.asyncio
async def test_spool_scan_removes_tmp_and_sets_aside_corrupt_files(
    tmp_path: Path, receivers: Any, clients: Any
) -> None:
    rx = await receivers()
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / ".00000000000000000001.chunk.tmp").write_bytes(b"half a write")
    (spool / "00000000000000000002.chunk").write_bytes(b"\xc1 not msgpack")
    good = Chunk(3, "AAAAAAAAAAAAAAAAAAAAAA==", TAG, 1, b"")
    good.payload = msgpack.packb([EventTime(5, 0).to_ext(), {"i": 0}], use_bin_type=True)
    (spool / "00000000000000000003.chunk").write_bytes(good.encode())
    client = await clients(config(rx.port, spool_dir=spool))
    assert await client.flush(3.0)
    assert rx.events == [(TAG, 5_000_000_000, {"i": 0})]
    assert rx.options[0]["chunk"] == "AAAAAAAAAAAAAAAAAAAAAA=="
    assert client.stats.spool_corrupt == 1
    assert sorted(p.name for p in spool.iterdir()) == ["00000000000000000002.chunk.bad"]


# -- overflow policies -------------------------------------------------------


@pytest.mark.asyncio
async def test_block_policy_applies_backpressure_until_upstream_frees_space(
    receivers: Any, clients: Any
) -> None:
    rx = await receivers()
    await rx.stop()
    client = await clients(config(rx.port, max_batch_records=5, memory_buffer_records=5))
    for i in range(5):
        await client.send(TAG, {"i": i})
    blocked = asyncio.create_task(client.send(TAG, {"i": 5}))
    await asyncio.sleep(0.2)
    assert not blocked.done()
    await rx.start()
    assert await asyncio.wait_for(blocked, 5.0) is True
    assert await client.flush(5.0)
    assert rx.first_seen_ids() == list(range(6))
    assert client.stats.dropped_records == 0


@pytest.mark.asyncio
async def test_drop_policy_drops_and_counts_when_full(receivers: Any, clients: Any) -> None:
    rx = await receivers()
    await rx.stop()
    cfg = config(rx.port, max_batch_records=5, memory_buffer_records=5, overflow_policy="drop")
    client = await clients(cfg)
    results = [await client.send(TAG, {"i": i}) for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert client.stats.dropped_records == 3
    await rx.start()
    assert await client.flush(5.0)
    assert rx.first_seen_ids() == list(range(5))


@pytest.mark.asyncio
async def test_unserialisable_record_is_rejected_at_send(receivers: Any, clients: Any) -> None:
    rx = await receivers()
    client = await clients(config(rx.port))
    with pytest.raises(DataError, match="msgpack"):
        await client.send(TAG, {"bad": object()})
    assert client.stats.buffered_records == 0


@pytest.mark.asyncio
async def test_without_acks_a_write_is_delivery(receivers: Any, clients: Any) -> None:
    rx = await receivers()
    rx.mode = "silent"  # would never ack anyway
    client = await clients(config(rx.port, require_ack=False))
    await client.send(TAG, {"i": 0})
    assert await client.flush(3.0)
    await wait_until(lambda: len(rx.events) == 1)
    assert "chunk" not in rx.options[0]
    assert client.stats.ack_timeouts == 0


# -- handshake and TLS -------------------------------------------------------


@pytest.mark.asyncio
async def test_shared_key_handshake_succeeds(receivers: Any, clients: Any) -> None:
    rx = await receivers(shared_key="s3cret")
    client = await clients(config(rx.port, shared_key="s3cret"))
    await client.send(TAG, {"i": 0})
    assert await client.flush(3.0)
    assert rx.first_seen_ids() == [0]
    assert client.stats.handshake_failures == 0


@pytest.mark.asyncio
async def test_wrong_shared_key_fails_clearly_retries_with_backoff(
    receivers: Any, clients: Any
) -> None:
    rx = await receivers(shared_key="s3cret")
    client = await clients(config(rx.port, shared_key="wrong"))
    await client.send(TAG, {"i": 0})
    await wait_until(lambda: client.stats.handshake_failures >= 3)
    assert rx.events == [] and rx.handshake_failures >= 3
    assert "shared_key mismatch" in (client.last_error or "")
    assert client.pending and client.stats.buffered_records == 1


@pytest.mark.asyncio
async def test_stop_ends_even_when_a_cancellation_is_swallowed(receivers: Any) -> None:
    """Python 3.11's ``wait_for`` can swallow a cancellation that races its inner future
    (gh-86296). The sender then carried on retrying a failing upstream for as long as
    records were pending, and ``stop()`` waited on it for ever (seen with a wrong
    shared key: the test above hung in teardown about one run in twenty under load).
    Here the connect step swallows every cancellation the way ``wait_for`` can."""
    rx = await receivers(shared_key="s3cret")
    client = UpstreamClient(config(rx.port, shared_key="wrong"))
    swallowed = 0

    async def connect_swallowing_cancel() -> Any:
        nonlocal swallowed
        try:
            await asyncio.sleep(0.5)  # most of the loop's time: the cancel lands here
        except asyncio.CancelledError:
            swallowed += 1
        raise ConnectionRefusedError("upstream refused")  # retryable: the loop goes on

    client._connect = connect_swallowing_cancel  # type: ignore[method-assign]
    await client.start()
    await client.send(TAG, {"i": 0})
    await asyncio.sleep(0.1)  # inside the first attempt; the record stays pending
    assert client.pending
    assert await asyncio.wait_for(client.stop(timeout=0.2), 5.0) is False
    assert swallowed >= 1  # the race this test is about really happened
    assert client.stats.buffered_records == 1 or client.stats.dropped_records == 1


@pytest.mark.asyncio
async def test_server_requiring_handshake_without_shared_key_is_a_clear_error(
    receivers: Any, clients: Any
) -> None:
    rx = await receivers(shared_key="s3cret")
    client = await clients(config(rx.port))
    await client.send(TAG, {"i": 0})
    await wait_until(lambda: client.stats.handshake_failures >= 1)
    assert "set shared_key" in (client.last_error or "")


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl CLI to make a self-signed certificate")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=20,
    )  # fmt: skip
    return cert, key


@pytest.mark.asyncio
async def test_tls_with_self_signed_cert_and_handshake(
    tmp_path: Path, receivers: Any, clients: Any
) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    rx = await receivers(shared_key="k", ssl_ctx=server_ctx)
    cfg = config(rx.port, tls=True, tls_ca_file=cert, tls_server_hostname="localhost")
    client = await clients(UpstreamConfig(**{**cfg.to_dict(), "shared_key": "k"}))
    await client.send(TAG, {"i": 0})
    assert await client.flush(3.0)
    assert rx.first_seen_ids() == [0]


@pytest.mark.asyncio
async def test_tls_untrusted_certificate_is_retried_not_sent(
    tmp_path: Path, receivers: Any, clients: Any
) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    rx = await receivers(ssl_ctx=server_ctx)
    client = await clients(config(rx.port, tls=True))  # system CAs: self-signed is untrusted
    await client.send(TAG, {"i": 0})
    await wait_until(lambda: client.stats.connect_failures >= 2)
    assert "CERTIFICATE_VERIFY_FAILED" in (client.last_error or "")
    assert rx.events == []


# -- config ------------------------------------------------------------------


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"upstream\.prot="):
        UpstreamConfig.from_dict({"prot": 1})
    cfg = UpstreamConfig.from_dict({"host": "fluentd", "port": 24225, "spool_dir": "/tmp/x"})
    assert cfg.spool_dir == Path("/tmp/x") and cfg.port == 24225
    assert UpstreamConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"port": 0}, "upstream.port"),
        ({"port": True}, "upstream.port"),
        ({"ack_timeout": 0}, "upstream.ack_timeout"),
        ({"backoff_initial": 2.0, "backoff_max": 1.0}, "upstream.backoff_max"),
        ({"max_batch_records": 100, "memory_buffer_records": 10}, "upstream.memory_buffer_records"),
        ({"overflow_policy": "spill"}, "upstream.overflow_policy"),
        ({"mode": "message"}, "upstream.mode"),
        ({"username": "u"}, "upstream.username"),
        ({"tls_ca_file": "/ca.pem"}, "upstream.tls_ca_file"),
        ({"tls": True, "tls_cert_file": "/c.pem"}, "upstream.tls_key_file"),
        ({"max_batch_bytes": 10_000_000}, "upstream.max_batch_bytes"),
    ],
)
def test_config_validation_names_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        UpstreamConfig(**kw)
    assert info.value.field == field
