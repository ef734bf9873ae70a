"""The Node client ``@fluent-org/logger`` (npm) against the real service.

Installed with ``npm ci`` from the committed ``tests/node/package-lock.json`` on first
use; skipped with the reason when ``node``/``npm`` are missing or the install fails,
except in CI (``CI`` set, as ``.ci/run``'s runner does), where that fails the tests.
``tests/node/send.js`` emits generated HDFS records with the client in each of its
event modes (Message, Forward, PackedForward, CompressedPackedForward, and the default,
which is PackedForward), with and without acks (``ack`` option: each ``emit`` resolves
only after the server's ``{"ack": chunk}``), with each time format the client offers
(an ``EventTime``, a plain number sent as integer seconds, the ``milliseconds`` option)
and with the handshake (``security``: shared key, optionally user and password).

Every check looks at both ends: what the client reports (emits resolved or rejected,
socket errors) and what the server saw (frames by mode, acks sent, handshake failures)
and put into the pipeline (each record's tag, exact time and content, the windowed
count, and the verdicts that reach upstream).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import pytest

from logsieve.agent_plugin.app import Service
from logsieve.agent_plugin.forward import RecordBatch
from logsieve.agent_plugin.metrics import sample_value
from logsieve.agent_plugin.receiver import FlagReceiver
from logsieve.bundle import Bundle
from logsieve.engine import Engine
from logsieve.export.data.synth import generate_hdfs

from .served import hdfs_events, settings

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
KEY = "s3cret node key"
CLIENT_HOST = "node-client.test"  # must differ from the server's self_hostname
# The client's eventMode -> the carrier mode our decoder detects (and counts frames by).
WIRE_MODE = {
    "default": "packed_forward",
    "Message": "message",
    "Forward": "forward",
    "PackedForward": "packed_forward",
    "CompressedPackedForward": "compressed_packed_forward",
}
ALL_WIRE_MODES = sorted(set(WIRE_MODE.values()))


def unavailable(reason: str) -> NoReturn:
    """Skip, but fail in CI: there a missing Node client is a broken setup, not an option."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI={os.environ['CI']}: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_client() -> Path:
    """``tests/node/send.js`` with its dependency installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("node/npm not installed: the @fluent-org/logger test needs Node.js")
    if not (NODE_DIR / "node_modules" / "@fluent-org" / "logger").is_dir():
        try:
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=NODE_DIR, check=True, capture_output=True, timeout=180,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            out = getattr(exc, "stderr", b"") or b""
            unavailable(f"npm ci of @fluent-org/logger failed (offline?): {out[-300:]!r}")
    return NODE_DIR / "send.js"


@pytest.fixture(scope="module")
def hdfs() -> tuple[list[tuple[int, dict[str, Any]]], set[str]]:
    """Events as (unix milliseconds, record), plus the block ids (one window each).

    Each event gets a distinct millisecond offset inside its second, so the server's
    nanosecond time tells an EventTime (offset kept) from integer seconds (dropped).
    """
    log = generate_hdfs(6, seed=13)
    events = [
        (int(t) * 1000 + (i * 37) % 1000, record)
        for i, (t, record) in enumerate(hdfs_events(log.lines))
    ]
    return events, set(log.labels)


@dataclass
class Seen:
    """What the server handed to the pipeline, batch by batch."""

    batches: list[RecordBatch]

    def records(self) -> list[tuple[str, int, dict[Any, Any]]]:
        return [(r.tag, r.time_ns, r.record) for b in self.batches for r in b.records]


class _Recording:
    """A RecordSink in front of the pipeline: keeps each batch, then passes it on."""

    def __init__(self, inner: Any, seen: Seen) -> None:
        self._inner, self._seen = inner, seen

    async def put(self, batch: RecordBatch) -> None:
        self._seen.batches.append(batch)
        await self._inner.put(batch)


@dataclass
class Served:
    service: Service
    rx: FlagReceiver
    seen: Seen


@asynccontextmanager
async def serve(
    bundle: Bundle,
    engine: Engine,
    *,
    shared_key: str | None = None,
    users: dict[str, str] | None = None,
) -> AsyncIterator[Served]:
    """The service (every verdict sent upstream) with a recording sink; stopped on exit,
    so the verdicts of the windows flushed at stop are in ``rx`` afterwards."""
    rx = FlagReceiver()
    await rx.start()
    cfg = settings(rx.port, every_verdict=True)
    server = replace(cfg.server, shared_key=shared_key, users=users or {})
    service = Service(replace(cfg, server=server), bundle, engine)
    seen = Seen([])
    service.server.sink = _Recording(service.pipeline, seen)  # read at each accept
    await service.start()
    try:
        yield Served(service, rx, seen)
    finally:
        await service.stop()
        await rx.stop()


async def send(node_client: Path, port: int, events: list[Any], **cfg: Any) -> dict[str, Any]:
    """Run send.js; its JSON report (emits resolved/rejected, socket errors)."""
    config = {"port": port, "mode": "default", "ack": False, "time": "eventtime", "security": None}
    config.update(cfg)
    proc = await asyncio.create_subprocess_exec(
        "node", str(node_client), json.dumps(config),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(events).encode()), 30.0)
    assert proc.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(out.decode())
    return report


def expected_records(events: list[Any], time: str) -> list[tuple[str, int, dict[str, Any]]]:
    """(tag, time_ns, record) as the server must decode them, in emit order."""
    if time == "int":  # the client sends floor(ms / 1000): whole seconds
        return [("node.hdfs", ms // 1000 * 10**9, rec) for ms, rec in events]
    return [("node.hdfs", ms * 10**6, rec) for ms, rec in events]  # EventTime: ns kept


async def windowed_reaches(service: Service, n: int, timeout: float = 5.0) -> float:
    """The pipeline's windowed-record count once it reaches ``n`` (or at timeout)."""
    windowed = service.pipeline_metrics.records.labels(outcome="windowed")
    for _ in range(int(timeout / 0.01)):
        if sample_value(windowed) >= n:
            break
        await asyncio.sleep(0.01)
    return sample_value(windowed)


def assert_delivered(s: Served, events: list[Any], mode: str, ack: bool, time: str) -> None:
    """Every record reached the pipeline, in order, with its exact time and content,
    through frames of the expected mode, acked iff the client asked."""
    n = len(events)
    m = s.service.metrics
    wire = WIRE_MODE[mode]
    assert s.seen.records() == expected_records(events, time)
    assert {b.mode for b in s.seen.batches} == {wire}
    assert sample_value(m.records_received, mode=wire) == n
    frames = sample_value(m.frames, mode=wire)
    assert frames == len(s.seen.batches) >= 1
    for other in ALL_WIRE_MODES:
        if other != wire:
            assert sample_value(m.frames, mode=other) == 0, other
    if wire == "message":
        assert frames == n  # one request per event
    if ack:
        assert all(b.chunk is not None for b in s.seen.batches)
        assert len({b.chunk for b in s.seen.batches}) == frames  # a fresh chunk id each
        assert sample_value(m.acks_sent) == frames
    else:
        assert all(b.chunk is None for b in s.seen.batches)
        assert sample_value(m.acks_sent) == 0
    assert sample_value(m.handshake_failures) == 0
    assert sample_value(m.connections_closed, reason="protocol") == 0  # no malformed frame


CASES = [
    pytest.param(mode, ack, time, id=f"{mode}-{'ack' if ack else 'noack'}-{time}")
    for mode in ("Message", "Forward", "PackedForward", "CompressedPackedForward")
    for ack in (False, True)
    for time in ("eventtime", "int")
] + [
    pytest.param("default", False, "eventtime", id="default-noack-eventtime"),
    pytest.param("default", True, "eventtime", id="default-ack-eventtime"),
    pytest.param("PackedForward", True, "millis", id="PackedForward-ack-millis"),
    pytest.param("Message", False, "millis", id="Message-noack-millis"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("mode", "ack", "time"), CASES)
async def test_node_client_event_modes_reach_the_pipeline(
    node_client: Path,
    tiny_bundle: Bundle,
    tiny_engine: Engine,
    hdfs: tuple[list[Any], set[str]],
    mode: str,
    ack: bool,
    time: str,
) -> None:
    events, blocks = hdfs
    async with serve(tiny_bundle, tiny_engine) as s:
        report = await send(node_client, s.service.port, events, mode=mode, ack=ack, time=time)
        assert report == {"resolved": len(events), "rejected": 0, "rejections": [],
                          "socketErrors": []}  # fmt: skip
        windowed = s.service.pipeline_metrics.records.labels(outcome="windowed")
        if ack:  # every emit was acked: the records are already in the pipeline
            assert sample_value(windowed) == len(events)
        assert await windowed_reaches(s.service, len(events)) == len(events)
        assert_delivered(s, events, mode, ack, time)
    # The windows, flushed at stop, were scored and their verdicts went upstream.
    assert {f["key"] for f in s.rx.flags()} == blocks


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["Message", "Forward", "PackedForward", "CompressedPackedForward"])
async def test_node_client_shared_key_right_key_delivers(
    node_client: Path,
    tiny_bundle: Bundle,
    tiny_engine: Engine,
    hdfs: tuple[list[Any], set[str]],
    mode: str,
) -> None:
    events, blocks = hdfs
    security = {"clientHostname": CLIENT_HOST, "sharedKey": KEY}
    async with serve(tiny_bundle, tiny_engine, shared_key=KEY) as s:
        report = await send(
            node_client, s.service.port, events, mode=mode, ack=True, security=security
        )
        assert report == {"resolved": len(events), "rejected": 0, "rejections": [],
                          "socketErrors": []}  # fmt: skip
        assert_delivered(s, events, mode, True, "eventtime")
        assert sample_value(s.service.metrics.connections_closed, reason="handshake") == 0
    assert {f["key"] for f in s.rx.flags()} == blocks


@pytest.mark.asyncio
async def test_node_client_user_auth_delivers(
    node_client: Path, tiny_bundle: Bundle, tiny_engine: Engine, hdfs: tuple[list[Any], set[str]]
) -> None:
    """Shared key plus username/password (the HELO carries an auth salt)."""
    events, _ = hdfs
    security = {"clientHostname": CLIENT_HOST, "sharedKey": KEY,
                "username": "alice", "password": "pä55 word"}  # fmt: skip
    async with serve(tiny_bundle, tiny_engine, shared_key=KEY, users={"alice": "pä55 word"}) as s:
        report = await send(
            node_client, s.service.port, events, mode="Forward", ack=True, security=security
        )
        assert report["resolved"] == len(events), report
        assert report["socketErrors"] == []
        assert_delivered(s, events, "Forward", True, "eventtime")


REFUSED = [
    pytest.param(
        {"clientHostname": CLIENT_HOST, "sharedKey": "not the key"},
        None,
        "AuthError: Authentication failed: shared_key mismatch",
        id="wrong-key",
    ),
    pytest.param(
        {"clientHostname": CLIENT_HOST, "sharedKey": KEY, "username": "alice", "password": "bad"},
        {"alice": "right"},
        "AuthError: Authentication failed: username/password mismatch",
        id="wrong-password",
    ),
]


async def handshake_failed(s: Served) -> None:
    """One failed handshake, counted and closed (the server logs it on close)."""
    m = s.service.metrics
    for _ in range(200):
        if sample_value(m.handshake_failures) and sample_value(
            m.connections_closed, reason="handshake"
        ):
            break
        await asyncio.sleep(0.01)
    assert sample_value(m.handshake_failures) == 1
    assert sample_value(m.connections_closed, reason="handshake") == 1


def assert_nothing_delivered(s: Served) -> None:
    m = s.service.metrics
    assert s.seen.batches == []
    assert sample_value(m.acks_sent) == 0
    assert sum(sample_value(m.frames, mode=w) for w in ALL_WIRE_MODES) == 0
    assert sum(sample_value(m.records_received, mode=w) for w in ALL_WIRE_MODES) == 0
    assert sample_value(s.service.pipeline_metrics.records, outcome="windowed") == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("ack", [False, True], ids=["noack", "ack"])
@pytest.mark.parametrize(("security", "users", "error"), REFUSED)
async def test_node_client_refused_with_wrong_credentials(
    node_client: Path,
    tiny_bundle: Bundle,
    tiny_engine: Engine,
    hdfs: tuple[list[Any], set[str]],
    security: dict[str, str],
    users: dict[str, str] | None,
    error: str,
    ack: bool,
) -> None:
    """The PING's digest is wrong: the server answers a failed PONG and closes; the
    client reports it as a fatal socket error and never sends data (it writes only once
    authenticated), so no emit resolves, with or without acks, and the pipeline stays
    empty."""
    events, _ = hdfs
    async with serve(tiny_bundle, tiny_engine, shared_key=KEY, users=users) as s:
        report = await send(
            node_client, s.service.port, events, mode="PackedForward", ack=ack,
            security=security, waitMs=5000,
        )  # fmt: skip
        assert report == {
            "resolved": 0,
            "rejected": len(events),  # by the client's shutdown: never left its queue
            "rejections": ["QueueShutdownError: Message dropped due to queue shutdown"],
            "socketErrors": [error],
        }
        await handshake_failed(s)
        assert_nothing_delivered(s)


@pytest.mark.asyncio
@pytest.mark.parametrize("ack", [False, True], ids=["noack", "ack"])
async def test_node_client_without_security_option_is_refused(
    node_client: Path,
    tiny_bundle: Bundle,
    tiny_engine: Engine,
    hdfs: tuple[list[Any], set[str]],
    ack: bool,
) -> None:
    """A client with no ``security`` option against a keyed server writes its data at
    once, without waiting for the HELO; the server takes that first frame as an
    invalid PING and closes, so nothing reaches the pipeline. With acks the client
    learns it (the HELO is a fatal AuthError, the acks never come); without acks its
    emits resolve on the socket write, as fire-and-forget does (a client limit)."""
    events, _ = hdfs
    expected_error = (
        "AuthError: Server expected authentication, but client didn't provide any, closing"
    )
    async with serve(tiny_bundle, tiny_engine, shared_key=KEY) as s:
        report = await send(
            node_client, s.service.port, events, mode="PackedForward", ack=ack, waitMs=5000
        )
        # Our failed PONG may be read too, after the HELO already closed the client.
        errors = report.pop("socketErrors")
        assert set(errors) <= {
            expected_error,
            "UnexpectedMessageError: Received unexpected message",
        }
        if ack:
            assert errors[0] == expected_error
            assert report == {
                "resolved": 0,
                "rejected": len(events),  # sent, then the ack wait was cut by shutdown
                "rejections": ["AckShutdownError: ack queue emptied"],
            }
        else:  # errors may be empty: shutdown can come before the HELO is read
            assert report["resolved"] == len(events), report
        await handshake_failed(s)
        assert_nothing_delivered(s)
