"""A seeded, bounded fuzz of ``logsieve serve`` in its own process, its memory measured.

5,000 hostile requests (:mod:`.fuzz`: mutations of valid requests of all four modes,
random bytes, truncations, huge declared lengths, deep nesting, wrong types, invalid
UTF-8, extreme times, gzip bombs) over thousands of connections, while slow peers
dribble valid requests (which must be acked) or stall mid-request (which the frame
deadline must close). Afterwards:

* the process lives, ``/health`` answers 200, a valid request is acked;
* the server's peak RSS stayed under ``PEAK_BOUND_MIB`` and its RSS is back within
  ``SETTLE_BOUND_MIB`` of what it was before the fuzz;
* SIGTERM still shuts it down in order (exit 0) with a flag delivered upstream: no
  task of the pipeline died on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from pathlib import Path

import pytest

from logsieve.agent_plugin.forward import encode_ack
from logsieve.bundle import Bundle

from .fuzz import bombs, hostile_frame
from .serve_proc import ServeProcess, serve_process
from .served import ODD_BLOCK, odd_block, replay
from .test_hostile_memory import receiver, wait_metric
from .test_robustness import acks_in, close_writer, read_to_eof, valid_frame
from .wire import T_SEC, et, packb

FUZZ_FRAMES = 5_000
SEED = 0x16F022
# The largest legitimate transient: inflating a gzip bomb up to max_decompressed_bytes
# (64 MiB) plus the copies around it, on top of a ~45 MiB server.
PEAK_BOUND_MIB = 300.0
SETTLE_BOUND_MIB = 50.0
T = 10.0


async def storm_connection(
    port: int, frames: list[bytes], prefix: int, rng: random.Random
) -> tuple[int, int]:
    """``prefix`` valid acked requests, then the hostile ones, then EOF; read to EOF.
    Returns (valid requests sent, their acks received). The server may reset the
    connection before we are done writing (a bomb refused early): that is fine."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
    chunks = [f"ok{rng.randrange(2**32)}-{k}" for k in range(prefix)]
    try:
        for chunk in chunks:
            writer.write(packb(valid_frame(rng, 0, chunk)))
        for frame in frames:
            writer.write(frame)
        with contextlib.suppress(OSError):
            writer.write_eof()
        data = await read_to_eof(reader)
    finally:
        with contextlib.suppress(OSError):
            await close_writer(writer)
    acked = set(acks_in(data))
    return len(chunks), sum(1 for c in chunks if c.encode() in acked)


async def slow_acked(port: int, rng: random.Random, i: int) -> bool:
    """A slow but honest peer: a valid request starting with twenty 1-7 byte pieces,
    30 ms apart, then the rest: whole well within the 1 s frame deadline."""
    chunk = f"slow{i}"
    frame = packb(valid_frame(rng, i, chunk))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        at = 0
        for _ in range(20):
            step = rng.randint(1, 7)
            writer.write(frame[at : at + step])
            at += step
            await asyncio.sleep(0.03)
        writer.write(frame[at:])
        expected = encode_ack(chunk.encode())
        return await asyncio.wait_for(reader.readexactly(len(expected)), T) == expected
    finally:
        await close_writer(writer)


async def stalled(port: int, rng: random.Random, i: int) -> bool:
    """A peer that sends half a request and waits: the frame deadline must close it."""
    frame = packb(valid_frame(rng, i, f"stall{i}"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame[: max(1, len(frame) // 2)])
        with contextlib.suppress(ConnectionError):
            return await asyncio.wait_for(reader.read(), T) == b""  # EOF, no ack
        return True
    finally:
        await close_writer(writer)


async def acked_once(server: ServeProcess, chunk: bytes) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(packb(["after.fuzz", [[et(T_SEC), {"log": "x"}]], {"chunk": chunk}]))
        expected = encode_ack(chunk)
        return await asyncio.wait_for(reader.readexactly(len(expected)), T) == expected
    finally:
        await close_writer(writer)


@pytest.mark.asyncio
async def test_fuzzed_serve_lives_acks_and_returns_to_its_memory(
    tiny_bundle: Bundle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    rng = random.Random(SEED)
    bombs()  # made once, outside the timed part
    frames = [hostile_frame(rng, i) for i in range(FUZZ_FRAMES)]
    groups: list[list[bytes]] = []
    at = 0
    while at < len(frames):  # mostly one request per connection, some several
        size = 1 if rng.random() < 0.8 else rng.randint(2, 6)
        groups.append(frames[at : at + size])
        at += size
    config = "[server]\nudp_heartbeat = false\nframe_timeout = 1.0\nhandshake_timeout = 1.0\n"
    async with receiver() as rx, serve_process(tiny_bundle, tmp_path, rx.port, config) as server:
        # Warm up with valid traffic, so 'before' already holds what serving allocates.
        warm = random.Random(SEED + 1)
        for _ in range(20):
            sent, acked = await storm_connection(server.port, [], 10, warm)
            assert acked == sent == 10
        before = server.rss_mib()
        started = time.monotonic()
        sent = acked = 0
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

        srng = random.Random(SEED + 2)
        slow = [slow_acked(server.port, srng, i) for i in range(8)]
        stuck = [stalled(server.port, srng, i) for i in range(8)]
        results = await asyncio.gather(*(worker(w) for w in range(16)), *slow, *stuck)
        elapsed = time.monotonic() - started
        assert all(r in (None, True) for r in results), results

        assert server.alive(), server.log.read_text()[-4000:]
        await wait_metric(server, "logsieve_forward_connections_open", 0, timeout=T)
        assert await server.metric("logsieve_forward_connections_open") == 0
        assert await acked_once(server, b"after")
        after, peak = server.rss_mib(), server.peak_mib()
        status, _ = await server.http_get("/health")
        closed_late = await server.metric(
            "logsieve_forward_connections_closed_total", reason="frame_timeout"
        )
        # Still a working pipeline: a block of unknown lines is flagged at shutdown.
        await asyncio.to_thread(replay, server.port, odd_block(1_226_262_930.0))
        await asyncio.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(server.proc.wait(), 60.0)
    print(
        f"fuzz: {len(frames)} frames, {len(groups)} connections, {elapsed:.1f} s; server RSS "
        f"before {before:.0f} MiB, after {after:.0f} MiB, peak {peak:.0f} MiB"
    )
    assert code == 0, server.log.read_text()[-4000:]
    assert status == 200
    assert sent > 500 and acked == sent  # valid requests before a bad one are all acked
    assert closed_late >= 8  # the stalled peers, closed by the frame deadline
    assert peak <= PEAK_BOUND_MIB, (before, after, peak)
    assert after - before <= SETTLE_BOUND_MIB, (before, after, peak)
    assert ODD_BLOCK in {f["key"] for f in rx.flags()}
    assert elapsed < 60.0
