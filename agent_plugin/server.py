"""The Forward server: a TCP (optionally TLS) listener plus the UDP heartbeat on one port.

Usage::

    sink = QueueSink(maxsize=1024)
    server = ForwardServer(ServerConfig(port=24224), sink, Metrics())
    await server.start()            # server.port holds the bound port
    ...                             # the pipeline consumes sink.get()
    await server.stop(drain_timeout=10.0)

Each accepted connection is a :class:`~.connection.ForwardProtocol`. Shutdown
follows STYLE.md §4 for the network part: stop accepting (listener and UDP
closed) -> stop reading every connection -> let in-flight puts finish and
write their acks, and hand over frames already received -> close the
connections (aborting, without an ack, whatever is still pending after
``drain_timeout``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from typing import Any, cast

from logsieve.errors import ConfigError

from .connection import ForwardProtocol
from .forward import UDP_HEARTBEAT_REPLY
from .guards import BufferBudget
from .malloc_policy import pin_mmap_threshold
from .metrics import Metrics
from .server_config import ServerConfig
from .sink import RecordSink

__all__ = ["ForwardServer", "build_ssl_context"]

log = logging.getLogger(__name__)

# Fluentd reads at most 128 bytes of a heartbeat datagram; anything is a heartbeat.
_UDP_MAX = 128
# After draining, closing connections flush their last replies; bound that wait.
_CLOSE_GRACE = 2.0


def build_ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context, or None without ``tls_cert``.

    With ``tls_ca`` the context requires a client certificate signed by that
    CA (mutual TLS). Unreadable or mismatched files are a ConfigError naming
    the setting.
    """
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "server.tls_cert", str(config.tls_cert), f"a readable PEM cert matching tls_key ({exc})"
        ) from None
    if config.tls_ca is not None:
        try:
            context.load_verify_locations(cafile=config.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "server.tls_ca", str(config.tls_ca), f"a readable PEM CA bundle ({exc})"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class _HeartbeatProtocol(asyncio.DatagramProtocol):
    """Answers every UDP datagram with ``\\x00`` (Fluentd's ``heartbeat_type udp``)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: on Python 3.11 the selector datagram transport
        # does not inherit from asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # One byte back per datagram, whatever it held: no amplification, and
        # the content (normally b"\x00", at most _UDP_MAX bytes) is not used.
        self._metrics.heartbeats.labels(kind="udp").inc()
        if self._transport is not None:
            self._transport.sendto(UDP_HEARTBEAT_REPLY, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port-unreachable from a client that left; nothing to do.
        log.debug("forward udp heartbeat: %s", exc)


class ForwardServer:
    """Fluent Forward protocol server feeding a :class:`~.sink.RecordSink`.

    Attributes:
        port: The bound TCP (and UDP) port, valid after :meth:`start`.
        connections: Live connections (for introspection and tests).
    """

    def __init__(self, config: ServerConfig, sink: RecordSink, metrics: Metrics | None = None):
        self.config = config
        self.sink = sink
        self.metrics = metrics if metrics is not None else Metrics()
        self.port = config.port
        self.connections: set[ForwardProtocol] = set()
        self._peers: Counter[str] = Counter()  # registered connections per remote address
        self._budget = BufferBudget(config.max_buffered_bytes)
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self.metrics.buffered_bytes.set_function(self._buffered_bytes)

    @property
    def is_serving(self) -> bool:
        """True between a successful start() and stop() (for /health)."""
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        """Bind the TCP listener (and the UDP heartbeat) and start accepting."""
        if self._server is not None:
            raise RuntimeError("ForwardServer already started")
        loop = asyncio.get_running_loop()
        context = build_ssl_context(self.config)
        # Buffers of hostile (or just large) requests go back to the OS once freed.
        pin_mmap_threshold()
        self._server = await loop.create_server(
            lambda: ForwardProtocol(
                self.config, self.sink, self.metrics, self.connections, self._peers, self._budget
            ),
            self.config.host,
            self.config.port,
            ssl=context,
            reuse_address=True,
            backlog=min(1024, max(100, self.config.max_connections)),
            ssl_handshake_timeout=self.config.handshake_timeout if context else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.config.udp_heartbeat:
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _HeartbeatProtocol(self.metrics),
                    local_addr=(self.config.host, self.port),
                    family=self._server.sockets[0].family,
                )
            except OSError:
                await self._close_listener()
                raise
        log.info(
            "forward server on %s:%d (%s%s%s)",
            self.config.host,
            self.port,
            "tls" if context else "tcp",
            ", mtls" if self.config.tls_ca else "",
            ", shared key" if self.config.shared_key is not None else "",
        )

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Shut down in order; see the module docstring. Safe to call twice."""
        if self._server is None:
            return
        # 1. Stop accepting: new TCP connections and heartbeats are refused.
        server, self._server = self._server, None
        server.close()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        # Connections accepted just before close() get their connection_made
        # callback on the next loop iteration; let them register.
        await asyncio.sleep(0)
        conns = list(self.connections)
        # 2+3. Stop reading; wait for in-flight puts and buffered frames, with acks.
        waiters = [c.drain() for c in conns]
        if waiters:
            _, pending = await asyncio.wait(waiters, timeout=drain_timeout)
            if pending:
                log.warning(
                    "forward server: %d connection(s) still waiting on the sink after %.1f s; "
                    "closing them without ack (clients will resend)",
                    len(pending),
                    drain_timeout,
                )
        # 4. Close: flush written acks, abort whatever is still pending.
        for conn in conns:
            if conn.drain().done():
                conn.close("shutdown")
            else:
                conn.abort("shutdown")
        done = [c.done for c in conns]
        if done:
            _, lingering = await asyncio.wait(done, timeout=_CLOSE_GRACE)
            for conn in conns:
                if not conn.done.done():
                    conn.abort("shutdown")
            if lingering:
                await asyncio.wait(done, timeout=_CLOSE_GRACE)
        # Stragglers (e.g. a TLS handshake that finished during the drain).
        for conn in list(self.connections):
            if conn not in conns:
                conn.abort("shutdown")
        # Only now: since Python 3.12 wait_closed() also waits for every connection.
        await server.wait_closed()
        log.info("forward server stopped")

    async def _close_listener(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    def _buffered_bytes(self) -> float:
        return float(sum(c.buffered for c in self.connections))

    async def __aenter__(self) -> ForwardServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
