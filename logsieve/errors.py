"""One exception tree for logsieve.

Every error a user can cause (bad config, bad input file, corrupt bundle, a bad
peer on the wire, a missing toolkit) is a :class:`LogsieveError`. The CLI turns
these into clean one-line messages in one place; anything else is a bug.
Messages name the offending value and the limit or the allowed choices.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "BundleError",
    "CompressionError",
    "ConfigError",
    "DataError",
    "HandshakeError",
    "LimitExceeded",
    "LogsieveError",
    "MalformedMsgpack",
    "ProtocolError",
]


class LogsieveError(Exception):
    """Root of every error logsieve raises on purpose."""


class ConfigError(LogsieveError, ValueError):
    """A setting has a value that is not allowed.

    Built with the field name, the value and what is allowed, so the message
    always reads ``<field>=<value!r>: <what is allowed>``.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r}: {allowed}")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, object, str]]:
        # Picklable, so an engine process can hand it to the server unchanged.
        return type(self), (self.field, self.value, self.allowed)


class DataError(LogsieveError, ValueError):
    """An input file or record cannot be read as the format it claims to be."""


class BundleError(LogsieveError):
    """A model bundle is missing, corrupt, truncated or does not match."""


class ProtocolError(LogsieveError, ValueError):
    """A Forward-protocol peer sent something malformed (the connection closes).

    ``reason`` is the stable label the server counts it under
    (``logsieve_forward_malformed_frames_total{reason=...}``); each failure kind is its
    own subclass, so nothing has to read the message to sort errors.
    """

    reason = "invalid"


class LimitExceeded(ProtocolError):
    """A request is larger or deeper than a configured bound allows."""

    reason = "limit"


class MalformedMsgpack(ProtocolError):
    """Bytes that are not msgpack."""

    reason = "msgpack"


class CompressionError(ProtocolError):
    """A compressed payload is corrupt, truncated, or uses an unsupported codec."""

    reason = "compression"


class HandshakeError(ProtocolError):
    """The shared-key handshake failed (wrong key, user, nonce or digest)."""


class BackendUnavailable(LogsieveError, RuntimeError):
    """An engine backend cannot run here: the toolkit or device is missing."""
