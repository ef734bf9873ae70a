"""Hostile input cannot bloat the server: measured on ``logsieve serve`` in its own process.

Reproduction 2 of issue 16: a few bytes of msgpack headers declaring huge arrays, held
open on 20 connections, with and without a shared key (so before authentication):
the server's peak RSS stays under 300 MiB (it reached 1,375 MiB when the codec
unpacked as bytes arrived). The fuzz in ``test_hostile_fuzz`` reuses the helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.bundle import Bundle

from .serve_proc import ServeProcess

pytestmark = pytest.mark.asyncio

# A Message-mode request's first bytes (array of 2, tag "am"), then 1,000 nested array32
# headers each declaring 250,000 items: 5,004 bytes that never complete. Unpacked as they
# arrive, each header pre-allocates its list: ~66 MiB held per connection.
AMPLIFY = b"\x92\xa2am" + (b"\xdd" + struct.pack(">I", 250_000)) * 1000
PEAK_BOUND_MIB = 300.0


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[FlagReceiver]:
    rx = FlagReceiver()
    await rx.start()
    try:
        yield rx
    finally:
        await rx.stop()


async def wait_metric(
    server: ServeProcess, name: str, at_least: float, timeout: float = 20.0
) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (value := await server.metric(name)) < at_least:
        if loop.time() > deadline:
            raise AssertionError(f"{name} = {value}, waited for {at_least}")
        await asyncio.sleep(0.1)
    return value


@pytest.mark.parametrize("shared_key", [None, "secret"], ids=["open", "before_auth"])
async def test_declared_lengths_do_not_amplify_memory(
    tiny_bundle: Bundle, tmp_path: Path, shared_key: str | None
) -> None:
    from .serve_proc import serve_process

    config = "[server]\nudp_heartbeat = false\n"
    if shared_key is not None:
        config += f"shared_key = '{shared_key}'\n"
    async with receiver() as rx, serve_process(tiny_bundle, tmp_path, rx.port, config) as server:
        baseline = server.rss_mib()
        writers = []
        try:
            for _ in range(20):
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(AMPLIFY)
                await writer.drain()
                writers.append(writer)
            await wait_metric(server, "logsieve_forward_bytes_received_total", 20 * len(AMPLIFY))
            await asyncio.sleep(0.5)
            # Still held open: memory is bounded while the peers wait, not by closing them.
            assert await server.metric("logsieve_forward_connections_open") == 20
            held, peak = server.rss_mib(), server.peak_mib()
        finally:
            for writer in writers:
                writer.close()
        print(f"RSS baseline {baseline:.0f} MiB, holding 20 {held:.0f} MiB, peak {peak:.0f} MiB")
        assert peak <= PEAK_BOUND_MIB, (baseline, held, peak)
        assert held - baseline < 20.0, (baseline, held, peak)
