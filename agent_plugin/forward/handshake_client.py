"""Shared-key handshake, client side, sans-IO (for an upstream Forward client).

Usage (the socket code is the caller's)::

    hs = ClientHandshake("logsieve-host", shared_key="secret")
    ping = hs.receive_helo(first_frame.obj)     # frames from a FrameDecoder
    write(ping)                                 # then wait: send no data yet
    hs.receive_pong(second_frame.obj)           # raises HandshakeError on failure

The PING's elements are all msgpack str, as FORWARD.md §6.2 requires (Fluent
Bit's in_forward rejects a bin salt); the default salt is 32 hex characters,
like Fluentd's ``SecureRandom.hex(16)``.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import msgpack

from logsieve.errors import HandshakeError, ProtocolError

from .handshake import Helo, password_digest, ping_digest, pong_digest

__all__ = ["ClientHandshake", "Pong", "parse_helo", "parse_pong"]


@dataclass(frozen=True, slots=True)
class Pong:
    """A parsed PONG; the string fields are the raw bytes from the wire."""

    auth_result: bool
    reason: bytes
    server_hostname: bytes
    digest: bytes


def parse_helo(obj: Any) -> Helo:
    """Parse ``["HELO", {"nonce": ..., "auth": ..., "keepalive": ...}]``.

    ``nonce`` and ``auth`` may be str or bin (both arrive as bytes);
    ``keepalive`` is optional and defaults to True, since Fluent Bit omits it.
    """
    if not (isinstance(obj, list) and len(obj) == 2 and obj[0] == b"HELO"):
        raise HandshakeError(f'expected ["HELO", options], got {obj!r:.80}')
    options = obj[1]
    if not isinstance(options, dict):
        raise HandshakeError(f"HELO options must be a map, got {type(options).__name__}")
    nonce = options.get(b"nonce")
    auth = options.get(b"auth", b"")
    if not isinstance(nonce, bytes) or not nonce:
        raise HandshakeError(f"HELO has no usable nonce: {nonce!r:.60}")
    if not isinstance(auth, bytes):
        raise HandshakeError(f"HELO auth must be a string, got {type(auth).__name__}")
    keepalive = options.get(b"keepalive", True)
    return Helo(nonce, auth, bool(keepalive))


def parse_pong(obj: Any) -> Pong:
    """Parse ``["PONG", bool, reason, server_hostname, digest]`` (exactly 5)."""
    if not (isinstance(obj, list) and len(obj) == 5 and obj[0] == b"PONG"):
        raise HandshakeError(f"expected a 5-element PONG, got {obj!r:.80}")
    _, result, reason, hostname, digest = obj
    if not isinstance(result, bool):
        raise HandshakeError(f"PONG auth_result must be a bool, got {type(result).__name__}")
    for name, value in (("reason", reason), ("server_hostname", hostname), ("digest", digest)):
        if not isinstance(value, bytes):
            raise HandshakeError(f"PONG {name} must be a string, got {type(value).__name__}")
    return Pong(result, reason, hostname, digest)


class ClientHandshake:
    """The client half: read HELO, write PING, verify PONG.

    Args:
        self_hostname: Our name, sent in the PING; must differ from the server's.
        shared_key: The shared key.
        username, password: Sent only when the HELO asks for user auth.
        salt: The shared-key salt; random 32 hex characters by default.
    """

    def __init__(
        self,
        self_hostname: str,
        shared_key: str,
        username: str = "",
        password: str = "",
        *,
        salt: bytes | None = None,
    ) -> None:
        self.self_hostname = self_hostname.encode("utf-8")
        self._shared_key = shared_key.encode("utf-8")
        self._username = username.encode("utf-8")
        self._password = password.encode("utf-8")
        self.salt = salt if salt is not None else secrets.token_hex(16).encode("ascii")
        self._helo: Helo | None = None
        self._done = False

    def receive_helo(self, obj: Any) -> bytes:
        """Take the server's HELO frame; return the PING bytes to send."""
        if self._helo is not None:
            raise ProtocolError("HELO already received")
        helo = parse_helo(obj)
        self._helo = helo
        user = pw_digest = b""
        if helo.auth:
            user = self._username
            pw_digest = password_digest(helo.auth, user, self._password).encode("ascii")
        digest = ping_digest(self.salt, self.self_hostname, helo.nonce, self._shared_key)
        fields = [self.self_hostname, self.salt, digest.encode("ascii"), user, pw_digest]
        # use_bin_type=False packs bytes as msgpack str (raw), which is what we want
        # for every element, including a salt that is not UTF-8.
        return bytes(msgpack.packb([b"PING", *fields], use_bin_type=False))

    def receive_pong(self, obj: Any) -> Pong:
        """Verify the server's PONG; raise HandshakeError unless it authenticates.

        Checks, like Fluentd's client: ``auth_result`` is true, the server's
        hostname differs from ours, and the digest proves the server knows the
        shared key for our salt and its nonce.
        """
        if self._helo is None:
            raise ProtocolError("PONG received before HELO")
        if self._done:
            raise ProtocolError("PONG already received")
        self._done = True
        pong = parse_pong(obj)
        if not pong.auth_result:
            raise HandshakeError(f"server refused the handshake: {pong.reason!r:.120}")
        if pong.server_hostname == self.self_hostname:
            raise HandshakeError(
                f"server hostname {pong.server_hostname!r} equals ours: invalid configuration"
            )
        expected = pong_digest(self.salt, pong.server_hostname, self._helo.nonce, self._shared_key)
        if not hmac.compare_digest(pong.digest.lower(), expected.encode("ascii")):
            raise HandshakeError(
                f"PONG digest from {pong.server_hostname!r:.80} does not match "
                "(server does not know the shared key)"
            )
        return pong
