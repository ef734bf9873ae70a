"""The metrics HTTP endpoint: ``GET /metrics`` (Prometheus text 0.0.4) and ``GET /health``.

The exposition is prometheus_client's (:func:`~prometheus_client.generate_latest`); only
the HTTP layer is ours: two routes over plain HTTP/1.1, one request per connection, on
the service's event loop. Usage::

    server = MetricsServer(metrics.registry, "127.0.0.1", 2021, health=lambda: None)
    await server.start(); ...; await server.stop()

Why not prometheus_client's own servers (``start_http_server``, its WSGI app in a
thread): they have no /health route, and they collect in a thread of their own, while
our scrape-time gauges (``set_function``) read state the event loop owns and mutates:
``logsieve_forward_buffered_bytes`` sums over the server's set of connections, which a
scrape in a second thread could see change mid-iteration (a RuntimeError). They also
have no async stop for the service's ordered shutdown. Serving on the loop avoids all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import generate_latest

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["CONTENT_TYPE", "MetricsServer"]

log = logging.getLogger(__name__)

# What generate_latest() writes (prometheus_client's own constant for it moved across versions).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsServer:
    """``GET /metrics`` and ``GET /health`` over plain HTTP/1.1, one request per connection.

    ``health`` returns None when the service is healthy (200 ``ok``), else why it is
    not (503 ``unhealthy: <why>``); without one, /health always answers 200. ``port``
    holds the bound port
    after :meth:`start` (pass 0 to let the OS choose).
    """

    _MAX_REQUEST = 8192
    _READ_TIMEOUT = 5.0

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 2021,
        health: Callable[[], str | None] | None = None,
    ) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._health = health
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await asyncio.start_server(
            self._spawn, self.host, self.port, limit=self._MAX_REQUEST
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics endpoint on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and finish (or cancel) open requests."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    def _spawn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Own each handler task so stop() can cancel scrapers that hang.
        task = asyncio.get_running_loop().create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._READ_TIMEOUT)
                status, body, ctype = self._route(head.split(b"\r\n", 1)[0])
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
                status, body, ctype = "400 Bad Request", b"bad request\n", "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii")
                + body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _route(self, request_line: bytes) -> tuple[str, bytes, str]:
        parts = request_line.decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", b"bad request\n", "text/plain"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if target not in ("/metrics", "/health"):
            return "404 Not Found", b"not found\n", "text/plain"
        if method != "GET":
            return "405 Method Not Allowed", b"only GET\n", "text/plain"
        if target == "/metrics":
            return "200 OK", generate_latest(self.registry), CONTENT_TYPE
        why = self._health() if self._health is not None else None
        if why is None:
            return "200 OK", b"ok\n", "text/plain"
        one_line = " ".join(why.split())  # an error's text may span lines
        body = f"unhealthy: {one_line}\n".encode("utf-8", "replace")
        return "503 Service Unavailable", body, "text/plain; charset=utf-8"
