"""Shared-key handshake (HELO / PING / PONG), server side, sans-IO.

Flow (SPEC1 §Handshake Messages, Fluentd ``in_forward.rb``; FORWARD.md §1.6,
§5.4)::

    server -> ["HELO", {"nonce": <16 bytes>, "auth": <16 bytes or "">, "keepalive": bool}]
    client -> ["PING", client_hostname, shared_key_salt,
               sha512_hex(salt + client_hostname + nonce + shared_key),
               username | "", sha512_hex(auth_salt + username + password) | ""]
    server -> ["PONG", true, "", server_hostname,
               sha512_hex(salt + server_hostname + nonce + shared_key)]
           or ["PONG", false, reason, "", ""]  and close

Every digest is computed over the bytes exactly as they were on the wire:
Fluent Bit's client sends a salt of 16 random bytes packed as msgpack str, so
it is not UTF-8, and decoding then re-encoding would change the digest.
The PONG's elements are all msgpack str: Fluent Bit >= 5.0.9 requires that.

:class:`ServerHandshake` holds the per-connection nonce and salt; the
connection (:mod:`.connection`) routes the first frame to it. The client side
is in :mod:`.handshake_client`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import msgpack

from logsieve.errors import ConfigError, HandshakeError, ProtocolError

from .events import HandshakeFailed, HandshakeSucceeded

__all__ = [
    "Helo",
    "Ping",
    "SecurityConfig",
    "ServerHandshake",
    "parse_ping",
    "password_digest",
    "ping_digest",
    "pong_digest",
    "sha512_hex",
]

# Fluentd's failure reasons, reused so logs on both sides read the same.
REASON_INVALID_PING = "invalid ping message"
REASON_SHARED_KEY = "shared_key mismatch"
REASON_USER = "username/password mismatch"

_NONCE_BYTES = 16


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sha512_hex(*parts: bytes | str) -> str:
    """Lowercase hex SHA-512 of the concatenated parts (str parts as UTF-8)."""
    digest = hashlib.sha512()
    for part in parts:
        digest.update(_as_bytes(part))
    return digest.hexdigest()


def ping_digest(
    salt: bytes | str, client_hostname: bytes | str, nonce: bytes, shared_key: bytes | str
) -> str:
    """The PING's shared-key digest: ``sha512_hex(salt + hostname + nonce + key)``."""
    return sha512_hex(salt, client_hostname, nonce, shared_key)


def pong_digest(
    salt: bytes | str, server_hostname: bytes | str, nonce: bytes, shared_key: bytes | str
) -> str:
    """The PONG's digest; the same formula with the *server's* hostname."""
    return sha512_hex(salt, server_hostname, nonce, shared_key)


def password_digest(auth_salt: bytes, username: bytes | str, password: bytes | str) -> str:
    """User-auth digest: ``sha512_hex(auth_salt + username + password)``."""
    return sha512_hex(auth_salt, username, password)


@dataclass(frozen=True)
class SecurityConfig:
    """Server-side handshake settings (Fluentd's ``<security>`` section).

    Attributes:
        self_hostname: Sent in the PONG. Must differ from every client's own
            hostname: Fluentd's client rejects a PONG carrying its own name.
        shared_key: The key both sides know. May be empty (Fluent Bit's
            ``empty_shared_key``).
        users: username -> password. Non-empty turns user auth on: the HELO
            carries an auth salt and the PING must carry a matching
            username and password digest.
        keepalive: Value advertised in the HELO (False mirrors Fluentd's
            ``deny_keepalive``; closing after one request is the server's job).
    """

    self_hostname: str
    shared_key: str
    users: Mapping[str, str] = field(default_factory=dict)
    keepalive: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.self_hostname, str) or not self.self_hostname:
            raise ConfigError("security.self_hostname", self.self_hostname, "a non-empty string")
        if not isinstance(self.shared_key, str):
            raise ConfigError("security.shared_key", "<hidden>", "a string")
        for name, password in self.users.items():
            if not isinstance(name, str) or not name:
                raise ConfigError("security.users", name, "non-empty string user names")
            if not isinstance(password, str):
                raise ConfigError(f"security.users[{name}]", "<hidden>", "a string password")
        # Freeze the mapping too, so the dataclass really is immutable.
        object.__setattr__(self, "users", MappingProxyType(dict(self.users)))

    @property
    def user_auth(self) -> bool:
        """True when user names and passwords are checked."""
        return bool(self.users)


@dataclass(frozen=True, slots=True)
class Helo:
    """The server's greeting, as sent or as received (raw bytes)."""

    nonce: bytes
    auth: bytes = b""
    keepalive: bool = True

    def encode(self) -> bytes:
        """msgpack bytes of the HELO frame.

        The nonce and a non-empty auth salt are bin (Fluentd does the same; both
        reference clients accept str or bin); an empty auth is ``""`` (str), as
        Fluentd sends when user auth is off.
        """
        auth: bytes | str = self.auth if self.auth else ""
        return bytes(
            msgpack.packb(
                ["HELO", {"nonce": self.nonce, "auth": auth, "keepalive": self.keepalive}],
                use_bin_type=True,
            )
        )


@dataclass(frozen=True, slots=True)
class Ping:
    """A parsed PING; every field is the raw bytes from the wire."""

    client_hostname: bytes
    salt: bytes
    digest: bytes
    username: bytes
    password_digest: bytes


def parse_ping(obj: Any) -> Ping:
    """Check a frame's shape is ``["PING", 5 strings]``; HandshakeError if not."""
    if not (isinstance(obj, list) and len(obj) == 6 and obj[0] == b"PING"):
        raise HandshakeError(f"{REASON_INVALID_PING}: expected a 6-element PING, got {_shape(obj)}")
    fields = obj[1:]
    for index, value in enumerate(fields, start=1):
        if not isinstance(value, bytes):
            raise HandshakeError(
                f"{REASON_INVALID_PING}: element {index} is {type(value).__name__}, not a string"
            )
    return Ping(*fields)


class ServerHandshake:
    """One connection's handshake: HELO out, one PING in, PONG out.

    Usage::

        hs = ServerHandshake(config)
        write(hs.helo())                  # right after accept, before reading
        result = hs.receive_ping(frame.obj)
        write(result.reply)               # PONG, success or failure
        if isinstance(result, HandshakeFailed):
            close()

    ``random_bytes`` is injectable for tests; the default is ``os.urandom``.
    """

    def __init__(
        self, config: SecurityConfig, *, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.config = config
        self.nonce = random_bytes(_NONCE_BYTES)
        self.auth_salt = random_bytes(_NONCE_BYTES) if config.user_auth else b""
        self._shared_key = config.shared_key.encode("utf-8")
        self._users = {
            name.encode("utf-8"): pw.encode("utf-8") for name, pw in config.users.items()
        }
        self._done = False

    def helo(self) -> bytes:
        """The HELO frame to send as soon as the connection is accepted."""
        return Helo(self.nonce, self.auth_salt, self.config.keepalive).encode()

    def receive_ping(self, obj: Any) -> HandshakeSucceeded | HandshakeFailed:
        """Verify the client's first frame and build the PONG.

        Any frame that is not a valid PING (including a data request sent by a
        client that has no shared key configured) fails the handshake. Calling
        this twice is a protocol error: there is one PING per connection.
        """
        if self._done:
            raise ProtocolError("handshake already completed; a second PING is not allowed")
        self._done = True
        try:
            ping = parse_ping(obj)
        except HandshakeError as exc:
            return self._fail(REASON_INVALID_PING, exc)
        expected = ping_digest(ping.salt, ping.client_hostname, self.nonce, self._shared_key)
        if not _digest_equal(ping.digest, expected):
            return self._fail(
                REASON_SHARED_KEY,
                HandshakeError(
                    f"{REASON_SHARED_KEY}: PING digest from {ping.client_hostname!r:.80} "
                    "does not match (wrong shared key, nonce or salt)"
                ),
            )
        if self.config.user_auth and not self._user_ok(ping):
            return self._fail(
                REASON_USER,
                HandshakeError(
                    f"{REASON_USER}: user {ping.username!r:.80} from {ping.client_hostname!r:.80}"
                ),
            )
        hostname = self.config.self_hostname
        digest = pong_digest(ping.salt, hostname, self.nonce, self._shared_key)
        reply = msgpack.packb(["PONG", True, "", hostname, digest], use_bin_type=True)
        return HandshakeSucceeded(
            bytes(reply),
            ping.client_hostname,
            ping.username if self.config.user_auth else b"",
        )

    def refuse(self, error: ProtocolError) -> HandshakeFailed:
        """Fail the handshake for a first frame that cannot even be read as a PING
        (e.g. larger than ``max_handshake_bytes``: a data request from a client that
        has no shared key configured, cut off before it is whole)."""
        self._done = True
        return self._fail(REASON_INVALID_PING, HandshakeError(f"{REASON_INVALID_PING}: {error}"))

    def _user_ok(self, ping: Ping) -> bool:
        password = self._users.get(ping.username)
        if password is None:
            return False
        expected = password_digest(self.auth_salt, ping.username, password)
        return _digest_equal(ping.password_digest, expected)

    @staticmethod
    def _fail(reason: str, error: HandshakeError) -> HandshakeFailed:
        reply = msgpack.packb(["PONG", False, reason, "", ""], use_bin_type=True)
        return HandshakeFailed(bytes(reply), error)


def _digest_equal(received: bytes, expected: str) -> bool:
    # Constant-time compare; accept upper-case hex from lenient clients.
    return hmac.compare_digest(received.lower(), expected.encode("ascii"))


def _shape(obj: Any) -> str:
    if isinstance(obj, list):
        head = obj[0] if obj else None
        return f"an array of {len(obj)} starting with {head!r:.40}"
    return f"{type(obj).__name__} ({obj!r:.40})"
