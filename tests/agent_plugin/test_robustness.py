"""Bad peers and bad timing against a real server on 127.0.0.1.

* a storm of 10,000 seeded, fuzzed frames (mutations of valid frames of every mode)
  over thousands of connections: no crash, no leaked connection, counted, bounded;
* an oversize frame closes only its own connection while another keeps being acked;
* a gzip bomb is bounded over a socket (peak memory measured with ``tracemalloc``);
* SIGTERM in the middle of an acked stream (a frame held inside the server, the client's
  window full): every record whose frame was acked comes out of the pipeline
  (pass-through upstream) after the ordered shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import random
import signal
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgpack
import pytest

from logsieve.agent_plugin.app import Service, run_service
from logsieve.agent_plugin.forward import ForwardLimits, RecordBatch, encode_ack
from logsieve.agent_plugin.metrics import Metrics, sample_value
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.agent_plugin.server import ForwardServer
from logsieve.agent_plugin.server_config import ServerConfig
from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.engine.worker import EngineWorker
from logsieve.export.data.synth import generate_hdfs

from .served import hdfs_events, settings
from .wire import T_SEC, et, packb

pytestmark = pytest.mark.asyncio

T = 10.0  # seconds any single wait may take before the test fails
REASONS = ("limit", "msgpack", "compression", "invalid")


class CountingSink:
    """Accepts every batch at once; counts records by tag."""

    def __init__(self) -> None:
        self.records: dict[str, int] = {}

    async def put(self, batch: RecordBatch) -> None:
        self.records[batch.tag] = self.records.get(batch.tag, 0) + len(batch.records)


@contextlib.asynccontextmanager
async def serving(limits: ForwardLimits) -> AsyncIterator[tuple[ForwardServer, CountingSink]]:
    sink = CountingSink()
    config = ServerConfig(host="127.0.0.1", port=0, udp_heartbeat=False, limits=limits)
    server = ForwardServer(config, sink, Metrics())
    await server.start()
    try:
        yield server, sink
    finally:
        await server.stop(drain_timeout=2.0)


@contextlib.contextmanager
def loop_errors() -> Any:
    """Collect whatever reaches the event loop's exception handler (a crash in a
    callback or a task nobody awaited); the test asserts the list stays empty."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


def malformed(server: ForwardServer) -> dict[str, float]:
    return {r: sample_value(server.metrics.malformed_frames, reason=r) for r in REASONS}


async def wait_until(predicate: Callable[[], bool], timeout: float = T) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    data = bytearray()
    with contextlib.suppress(ConnectionError):
        while chunk := await asyncio.wait_for(reader.read(65536), T):
            data += chunk
    return bytes(data)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def acks_in(data: bytes) -> list[bytes]:
    """Chunk ids of the ``{"ack": id}`` replies in ``data`` (a truncated tail is ignored)."""
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(data)
    out = []
    with contextlib.suppress(ValueError):
        for obj in unpacker:
            if isinstance(obj, dict) and isinstance(obj.get(b"ack"), bytes):
                out.append(obj[b"ack"])
    return out


# -- the fuzzer ------------------------------------------------------------------------


def valid_frame(rng: random.Random, i: int, chunk: str | None) -> list[Any]:
    """A valid request of a random mode, as a Python structure (packed by the caller)."""
    n = rng.randint(1, 4)
    recs = [{"log": f"Receiving block blk_{i}_{k} src: /10.0.0.{k}:1", "k": k} for k in range(n)]
    times: list[Any] = [et(T_SEC, i % 1_000_000), T_SEC, float(T_SEC) + 0.5]
    option: dict[str, Any] = {"size": n}
    if chunk is not None:
        option["chunk"] = chunk
    mode = rng.choice(("message", "forward", "forward_v15", "packed", "compressed"))
    if mode == "message":
        return ["app.log", rng.choice(times), recs[0], option]
    if mode == "forward":
        return ["app.log", [[rng.choice(times), r] for r in recs], option]
    if mode == "forward_v15":
        return ["app.log", [[[rng.choice(times), {}], r] for r in recs], option]
    entries = b"".join(packb([rng.choice(times), r]) for r in recs)
    if mode == "packed":
        return ["app.log", entries, option]
    return ["app.log", gzip.compress(entries), {**option, "compressed": "gzip"}]


WRONG: tuple[Any, ...] = (
    42, -1, None, True, 1.5, "text", b"\x00\xff", [], {}, [1, [2]], {"a": [1]},
    msgpack.ExtType(5, b"xyz"), 2**64 - 1,
)  # fmt: skip
HUGE_HEADERS = (
    b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
    b"\xc6\xff\xff\xff\xff",  # bin32
    b"\xdd\xff\xff\xff\xff",  # array32 of 4G elements
    b"\xdf\xff\xff\xff\xff",  # map32
    b"\xc9\x7f\xff\xff\xff\x00",  # ext32
    b"\xdc\xff\xff",  # array16 of 65535 elements
)


def wrong_type(rng: random.Random, frame: list[Any]) -> list[Any]:
    """Replace one part of a valid request (tag, time, entries, record, option
    values) with a value of the wrong type."""
    frame = list(frame)
    where = rng.randrange(6)
    if where < 3 and where < len(frame):
        frame[where] = rng.choice(WRONG)
    elif where == 3 and isinstance(frame[1], list) and frame[1]:
        entries = [list(e) for e in frame[1]]
        entry = rng.choice(entries)
        entry[rng.randrange(len(entry))] = rng.choice(WRONG)
        frame[1] = entries
    elif isinstance(frame[-1], dict):
        option = dict(frame[-1])
        key = rng.choice(("chunk", "size", "compressed", "fluent_signal"))
        option[key] = rng.choice((*WRONG, "zstd", "lz4", "gzip"))
        frame[-1] = option
    else:
        frame.append(rng.choice(WRONG))
    return frame


def fuzz_frame(rng: random.Random, i: int) -> bytes:
    """One mutated (or, rarely, still valid) request; every kind is seeded."""
    chunk = f"f{i}" if rng.random() < 0.5 else None
    base = valid_frame(rng, i, chunk)
    raw = packb(base)
    kind = rng.randrange(8)
    if kind == 0:  # bit flips
        data = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 1:  # truncation (the server then sees EOF mid-frame)
        return raw[: rng.randrange(1, len(raw))]
    if kind == 2:
        return packb(wrong_type(rng, base))
    if kind == 3:  # a huge length header spliced in anywhere
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + rng.choice(HUGE_HEADERS) + raw[at:]
    if kind == 4:
        return rng.randbytes(rng.randint(1, 512))
    if kind == 5:  # byte-level garbage in a gzip payload that claims to be compressed
        body = bytearray(gzip.compress(rng.randbytes(64)))
        body[rng.randrange(len(body))] ^= 0xFF
        return packb(["app.log", bytes(body), {"compressed": "gzip", "chunk": f"f{i}"}])
    if kind == 6:  # nesting deeper than any limit
        return b"\x91" * rng.randint(200, 5000) + b"\xc0"
    return raw[: rng.randrange(len(raw))] + rng.randbytes(rng.randint(1, 64))


async def storm_connection(
    port: int, frames: list[bytes], prefix: int, rng: random.Random
) -> tuple[int, int]:
    """``prefix`` valid acked frames, then the fuzzed ones, then EOF; read to EOF.

    Returns (valid frames sent, their acks received): every valid frame sent before
    a bad one must still be acknowledged.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
    chunks = [f"ok{rng.randrange(2**32)}-{k}" for k in range(prefix)]
    try:
        for chunk in chunks:
            writer.write(packb(valid_frame(rng, 0, chunk)))
        for frame in frames:
            writer.write(frame)
        with contextlib.suppress(ConnectionError):
            writer.write_eof()
        data = await read_to_eof(reader)
    finally:
        await close_writer(writer)
    acked = set(acks_in(data))
    return len(chunks), sum(1 for c in chunks if c.encode() in acked)


async def test_10000_fuzzed_frames_no_crash_no_leak_counted_and_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)  # thousands of one-line warnings: keep only errors
    rng = random.Random(0x10651E7E)
    frames = [fuzz_frame(rng, i) for i in range(10_000)]
    # Most connections carry one fuzzed frame (each is then surely decoded: a bad frame
    # closes its connection); some carry several back to back, so a bad one also cuts
    # off the frames behind it, as on a real keep-alive connection.
    groups: list[list[bytes]] = []
    at = 0
    while at < len(frames):
        size = 1 if rng.random() < 0.8 else rng.randint(2, 6)
        groups.append(frames[at : at + size])
        at += size
    limits = ForwardLimits(
        max_frame_bytes=64 * 1024,
        max_decompressed_bytes=256 * 1024,
        max_records_per_frame=1000,
        max_collection_len=1000,
        max_nesting_depth=50,
    )
    sent = acked = 0
    started = time.monotonic()
    async with serving(limits) as (server, sink):
        with loop_errors() as errors:
            queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
            for g in groups:
                queue.put_nowait(g)

            async def worker(seed: int) -> None:
                nonlocal sent, acked
                wrng = random.Random(seed)
                while not queue.empty():
                    group = queue.get_nowait()
                    s, a = await storm_connection(server.port, group, wrng.randint(0, 1), wrng)
                    sent, acked = sent + s, acked + a

            await asyncio.gather(*(worker(w) for w in range(32)))
            elapsed = time.monotonic() - started
            # No leaked connection: every socket closed and left the registry.
            assert await wait_until(lambda: sample_value(server.metrics.connections_open) == 0), (
                server.connections
            )
            assert not server.connections
            counts = malformed(server)
            # Still serving: a valid frame on a fresh connection is acked.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                writer.write(packb(["after.storm", [[et(T_SEC), {"log": "x"}]], {"chunk": "z"}]))
                expected = encode_ack(b"z")
                assert await asyncio.wait_for(reader.readexactly(len(expected)), T) == expected
            finally:
                await close_writer(writer)
        assert errors == []
    assert elapsed < 30.0, f"storm took {elapsed:.1f} s"
    assert sample_value(server.metrics.connections_total) == len(groups) + 1
    assert sent > 1000 and acked == sent  # a bad frame never costs the good ones before it
    assert all(counts[r] > 0 for r in REASONS), counts
    # Every protocol close is counted once, under one reason class.
    closed = sample_value(server.metrics.connections_closed, reason="protocol")
    assert closed == sum(counts.values()) > 3000, counts
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert sink.records["after.storm"] == 1


# -- oversize frame, gzip bomb -----------------------------------------------------------


async def acked_stream(
    port: int, stop: asyncio.Event, acks: list[float], tag: str = "good"
) -> None:
    """One keep-alive connection sending a frame, awaiting its ack, until ``stop``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        i = 0
        while not stop.is_set():
            chunk = f"g{i}".encode()
            writer.write(packb([tag, [[et(T_SEC, i), {"i": i}]], {"chunk": chunk}]))
            expected = encode_ack(chunk)
            assert await asyncio.wait_for(reader.readexactly(len(expected)), T) == expected
            acks.append(time.monotonic())
            i += 1
            await asyncio.sleep(0.002)
    finally:
        await close_writer(writer)


async def test_oversize_frame_closes_only_its_connection_while_another_is_acked() -> None:
    limit = 64 * 1024
    record = {"pad": "x" * 1000}
    # A legal header (200 entries, under every collection limit) whose body grows
    # past max_frame_bytes: only the byte count gives it away.
    oversize = packb(["bad", [[T_SEC, record]] * 200])
    assert len(oversize) > 3 * limit
    async with serving(ForwardLimits(max_frame_bytes=limit)) as (server, sink):
        stop, acks = asyncio.Event(), list[float]()
        good = asyncio.create_task(acked_stream(server.port, stop, acks))
        assert await wait_until(lambda: len(acks) >= 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        sent = 0
        try:
            with contextlib.suppress(ConnectionError):
                for at in range(0, len(oversize), 4096):
                    writer.write(oversize[at : at + 4096])
                    await writer.drain()
                    sent += 4096
                    await asyncio.sleep(0.002)
                    if reader.at_eof() or writer.is_closing():
                        break
            assert await read_to_eof(reader) == b""  # closed, no ack
            closed_at = time.monotonic()
        finally:
            await close_writer(writer)
        acks_before = sum(1 for t in acks if t <= closed_at)
        assert await wait_until(lambda: len(acks) >= acks_before + 20)
        assert not good.done()  # still streaming, never interrupted
        stop.set()
        await asyncio.wait_for(good, T)
        assert sample_value(server.metrics.malformed_frames, reason="limit") == 1
        assert sample_value(server.metrics.connections_closed, reason="protocol") == 1
    assert "bad" not in sink.records and sink.records["good"] == len(acks)


def bomb_frames() -> dict[str, bytes]:
    one = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)  # 64 MiB of zeros
    member = gzip.compress(bytes(512 * 1024), compresslevel=9)
    return {
        "one_member": packb(["bomb", one, {"compressed": "gzip", "chunk": "b1"}]),
        # Each member alone is under the limit; together they are 100 MiB.
        "many_members": packb(["bomb", member * 200, {"compressed": "gzip", "chunk": "b2"}]),
    }


@pytest.mark.parametrize("shape", ["one_member", "many_members"])
async def test_gzip_bomb_is_bounded_over_a_socket(shape: str) -> None:
    frame = bomb_frames()[shape]
    assert len(frame) < 1024 * 1024  # small on the wire
    limit = 1024 * 1024
    async with serving(ForwardLimits(max_decompressed_bytes=limit)) as (server, sink):
        stop, acks = asyncio.Event(), list[float]()
        good = asyncio.create_task(acked_stream(server.port, stop, acks))
        assert await wait_until(lambda: len(acks) >= 3)
        tracemalloc.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                writer.write(frame)
                assert await read_to_eof(reader) == b""  # closed, no ack
            finally:
                await close_writer(writer)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        n = len(acks)
        assert await wait_until(lambda: len(acks) >= n + 5)
        stop.set()
        await asyncio.wait_for(good, T)
        assert sample_value(server.metrics.malformed_frames, reason="limit") == 1
    # Inflating stops one byte past the limit: the peak is a few copies of 1 MiB plus
    # the frame itself, nowhere near the 64-100 MiB the bomb expands to.
    assert peak < 8 * limit, f"peak {peak / 2**20:.1f} MiB"
    assert "bomb" not in sink.records


# -- SIGTERM mid-stream --------------------------------------------------------------------


class AckedClient:
    """Streams PackedForward frames of numbered records with ``chunk`` acks, keeping up
    to ``window`` frames in flight, until the server closes the connection."""

    def __init__(
        self, port: int, lines: list[tuple[float, str]], per_frame: int = 20, window: int = 4
    ) -> None:
        self.port, self.lines, self.per_frame, self.window = port, lines, per_frame, window
        self.frames: dict[bytes, list[int]] = {}  # chunk -> record seqs
        self.written = 0  # frames written whole
        self.acked: list[bytes] = []

    @property
    def in_flight(self) -> int:
        """Frames written and not acked yet."""
        return self.written - len(self.acked)

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        unpacker = msgpack.Unpacker(raw=True)
        slots = asyncio.Semaphore(self.window)
        closed = asyncio.Event()

        async def read_acks() -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while data := await reader.read(65536):
                    unpacker.feed(data)
                    for obj in unpacker:
                        self.acked.append(obj[b"ack"])
                        slots.release()
            closed.set()
            for _ in range(self.window):  # wake the writer
                slots.release()

        acks = asyncio.create_task(read_acks())
        seq = 0
        try:
            while not closed.is_set():
                await slots.acquire()
                if closed.is_set():
                    break
                seqs = list(range(seq, seq + self.per_frame))
                seq += self.per_frame
                chunk = f"c{seqs[0]}".encode()
                entries = b"".join(
                    packb([et(int(t), s % 1000), {"log": text, "seq": s}])
                    for s in seqs
                    for t, text in [self.lines[s % len(self.lines)]]
                )
                self.frames[chunk] = seqs
                try:
                    writer.write(packb(["hdfs", entries, {"chunk": chunk, "size": len(seqs)}]))
                    await writer.drain()
                except ConnectionError:
                    break
                self.written += 1
                await asyncio.sleep(0.001)
        finally:
            await asyncio.wait_for(acks, T)
            await close_writer(writer)


class Gate:
    """Wraps a sink's ``put``: while closed, a put waits at the gate (as behind a full
    inference queue), which keeps its frame unacked and the connection's reading paused."""

    def __init__(self, put: Callable[[RecordBatch], Any]) -> None:
        self._put = put
        self._open = asyncio.Event()
        self._open.set()
        self.held = 0  # puts waiting at the gate now

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def put(self, batch: RecordBatch) -> None:
        if not self._open.is_set():
            self.held += 1
            try:
                await self._open.wait()
            finally:
                self.held -= 1
        await self._put(batch)


@pytest.mark.parametrize("engine_process", [False, True], ids=["engine-thread", "engine-process"])
async def test_sigterm_mid_stream_loses_nothing_acked(
    tiny_bundle: Bundle, tiny_engine: Engine, engine_process: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flush-at-shutdown is what is under test: HDFS block windows idle out after a day
    of event time, so every record is still in an open window when SIGTERM arrives, and
    only the ordered shutdown (drain the connections, flush the windows through the
    engine, deliver upstream) gets it out. With ``pass_through`` every record comes out
    upstream, so "acked" can be compared with "delivered" record by record.

    Mid-stream is made certain rather than left to timing: the pipeline's ``put`` is
    held at a gate, so when SIGTERM arrives one frame is inside the server unacked and
    the client has its whole window of frames in flight. The gate opens only once the
    shutdown has begun; that frame must then be acked and come out like the others.

    With the engine in a child process (the serving default) the SIGTERM also goes to
    the child, as a process-group signal (Ctrl-C, systemd's control-group kill) would:
    the flush must still have an engine."""
    log = generate_hdfs(60, seed=17)
    lines = [(t, r["log"]) for t, r in hdfs_events(log.lines)]
    rx = FlagReceiver()
    await rx.start()
    loop = asyncio.get_running_loop()
    started: asyncio.Future[Service] = loop.create_future()
    cfg = settings(rx.port, pass_through=True, engine_process=engine_process, backend="onnxruntime")
    task = asyncio.create_task(
        run_service(
            cfg,
            tiny_bundle,
            engine=None if engine_process else tiny_engine,
            ready=started.set_result,
        )
    )
    try:
        service = await asyncio.wait_for(started, T)
        gate = Gate(service.pipeline.put)
        monkeypatch.setattr(service.pipeline, "put", gate.put)  # the server's sink
        client = AckedClient(service.port, lines)
        streaming = asyncio.create_task(client.run())
        assert await wait_until(lambda: len(client.acked) >= 30)
        gate.close()
        # Mid-stream: a put waits inside the server, and the client's window is full.
        assert await wait_until(lambda: gate.held == 1 and client.in_flight == client.window), (
            gate.held,
            client.in_flight,
        )
        acked_at_signal = len(client.acked)
        os.kill(os.getpid(), signal.SIGTERM)
        worker = service.engine if engine_process else None
        if worker is not None:
            assert isinstance(worker, EngineWorker) and worker._proc is not None
            assert worker._proc.pid is not None
            os.kill(worker._proc.pid, signal.SIGTERM)
        # The shutdown has begun (the listener is closed) while the put still waits.
        assert await wait_until(lambda: not service.server.is_serving)
        assert gate.held == 1 and len(client.acked) == acked_at_signal
        gate.open()
        assert await asyncio.wait_for(task, 20.0) == 0
        if worker is not None:
            assert worker.restarts == 0  # the child lived through the signal
        await asyncio.wait_for(streaming, T)
    finally:
        if not task.done():
            task.cancel()
        await rx.stop()
    # The frame that was inside the server at SIGTERM was acked during the shutdown.
    assert len(client.acked) > acked_at_signal
    acked = {s for chunk in client.acked for s in client.frames[chunk]}
    delivered = [r["seq"] for r in rx.records("logsieve.record")]
    assert len(acked) >= 30 * client.per_frame
    missing = acked - set(delivered)
    assert not missing, f"{len(missing)} acked records never came out, e.g. {sorted(missing)[:5]}"
    assert service.upstream.stats.dropped_records == 0
    assert all("logsieve_verdict" in r for r in rx.records("logsieve.record"))
