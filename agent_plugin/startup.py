"""Start-up faults as one-line errors naming the setting, not tracebacks.

Binding the Forward listener or the metrics endpoint fails with an ``OSError`` whose
text is asyncio's (``error while attempting to bind on address ...``) or the
resolver's (``[Errno -2] Name or service not known``), and escaped ``logsieve serve``
as a traceback. :func:`bind_error` turns it into a
:class:`~logsieve.errors.ConfigError` on the ``host`` or ``port`` setting at fault,
which the CLI prints as one ``Error:`` line (exit status 1). Errors are sorted by
their type and ``errno``, never by their message.
"""

from __future__ import annotations

import errno
import os
import socket

from logsieve.errors import ConfigError

__all__ = ["bind_error"]


def bind_error(exc: OSError, prefix: str, host: str, port: int) -> ConfigError:
    """The :class:`ConfigError` for a failed bind of ``host:port``.

    ``prefix`` names the settings: ``"server."`` (``server.host``/``server.port``) or
    ``"server.metrics_"`` (``server.metrics_host``/``server.metrics_port``).
    """
    where = f"{host}:{port}"
    # asyncio wraps the bind error in a sentence of its own; the errno says it all.
    detail = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror):
        return ConfigError(
            f"{prefix}host", host, f"a host name that resolves or an IP address ({detail})"
        )
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"{prefix}port", port, f"a port no other process listens on ({where}: {detail})"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(
            f"{prefix}host",
            host,
            f"an address of this host, or 0.0.0.0 for all of them ({where}: {detail})",
        )
    if exc.errno == errno.EACCES:
        return ConfigError(
            f"{prefix}port",
            port,
            f"a port this user may bind (below 1024 needs privileges; {where}: {detail})",
        )
    return ConfigError(f"{prefix}host", where, f"an address to listen on ({exc})")
