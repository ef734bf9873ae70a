"""Turning ``raw=True`` msgpack values into what a log pipeline expects.

The codec unpacks with ``raw=True`` (see :mod:`.codec`), so every string is
``bytes``. Records are converted with one documented rule: bytes that are valid
UTF-8 become ``str``, anything else stays ``bytes``, at any depth, keys and
values alike. That is lossless (no replacement characters, no surrogates that
would later fail to encode), and it makes the common case, text logs, plain
``str``. The cost of the rule: a msgpack *bin* value that happens to be valid
UTF-8 also becomes ``str``; raw unpacking cannot tell it from a str.
"""

from __future__ import annotations

from typing import Any

from logsieve.errors import LimitExceeded, ProtocolError

__all__ = ["decode_text", "decode_tree", "require_map"]


def decode_text(value: bytes, what: str) -> str:
    """Decode a field that the protocol defines as a string (tag, option keys).

    Raises ProtocolError naming ``what`` and the offending bytes when it is
    not UTF-8.
    """
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} is not valid UTF-8: {value[:64]!r} ({exc.reason})") from None


def _maybe_text(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def decode_tree(value: Any, max_depth: int, what: str = "record") -> Any:
    """Apply the UTF-8 rule to ``value`` recursively (maps, arrays, bytes).

    Other scalars (int, float, bool, None, ext) pass through. Nesting deeper
    than ``max_depth`` raises ProtocolError rather than recursing further.
    """
    return _decode(value, max_depth, max_depth, what)


def _decode(value: Any, left: int, limit: int, what: str) -> Any:
    if isinstance(value, bytes):
        return _maybe_text(value)
    if isinstance(value, (dict, list)):
        if left <= 0:
            raise LimitExceeded(
                f"{what} nests maps/arrays more than max_nesting_depth={limit} deep"
            )
        if isinstance(value, dict):
            # Keys are scalars (the unpacker rejects unhashable ones), so no depth cost.
            return {
                (_maybe_text(k) if isinstance(k, bytes) else k): _decode(v, left - 1, limit, what)
                for k, v in value.items()
            }
        return [_decode(v, left - 1, limit, what) for v in value]
    return value


def require_map(value: Any, what: str) -> dict[Any, Any]:
    """Return ``value`` if it is a map, else raise ProtocolError naming ``what``."""
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a map, got {type(value).__name__} ({value!r:.60})")
    return value
