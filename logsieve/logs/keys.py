"""Which window(s) a record belongs to, and the window presets of the public datasets."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from logsieve.config import WindowConfig
from logsieve.errors import ConfigError
from logsieve.logs.records import LogRecord

__all__ = ["UNKEYED_HOST", "WINDOW_PRESETS", "KeyExtractor", "window_preset"]

#: Key given to sliding-window events whose record names no host.
UNKEYED_HOST = "-"

#: Window settings for the public datasets (FastLogAD's choices). HDFS blocks are
#: written within minutes but verified, served and deleted hours later; the published
#: sessions group a block's lines over the whole log, so the idle timeout is a day.
WINDOW_PRESETS: Mapping[str, WindowConfig] = MappingProxyType(
    {
        "hdfs": WindowConfig(kind="session", key_regex=r"blk_-?\d+", idle_timeout=86_400.0),
        "bgl": WindowConfig(kind="sliding", key_regex=None, size=300.0, step=60.0),
        "thunderbird": WindowConfig(kind="sliding", key_regex=None, size=60.0, step=30.0),
    }
)


def window_preset(name: str, **overrides: Any) -> WindowConfig:
    """The preset ``name`` (see :data:`WINDOW_PRESETS`) with some fields replaced."""
    try:
        base = WINDOW_PRESETS[name]
    except KeyError:
        raise ConfigError("windows.preset", name, f"one of {sorted(WINDOW_PRESETS)}") from None
    return dataclasses.replace(base, **overrides)


class KeyExtractor:
    """Finds the window keys of a record, as the :class:`WindowConfig` says.

    Session windows: the value of ``key_field`` in the record's fields when set and
    present (str, bytes or int, as text), otherwise every distinct match of
    ``key_regex`` over the record text in order of appearance (group 1 if the pattern
    has a group, else the whole match); a line naming two blocks belongs to both. No
    key gives ``()``.

    Sliding windows: ``fields[key_field]`` when set and present, else the record's
    host, else :data:`UNKEYED_HOST`. ``key_regex`` is not used.

    ``unkeyed`` counts records for which no key was found (including sliding-window
    records put under :data:`UNKEYED_HOST`).
    """

    __slots__ = ("_field", "_findall", "_sliding", "unkeyed")

    def __init__(self, config: WindowConfig) -> None:
        self._sliding = config.kind == "sliding"
        self._field = config.key_field
        regex = (
            re.compile(config.key_regex)
            if config.key_regex is not None and not self._sliding
            else None
        )
        self._findall: Callable[[str], list[str]] | None = None
        if regex is not None:
            # findall returns group 1 (or the whole match) as plain strings, in C; with
            # more groups it returns tuples, so that rare case takes finditer.
            self._findall = (
                regex.findall
                if regex.groups <= 1
                else lambda text: [m.group(1) for m in regex.finditer(text)]
            )
        self.unkeyed = 0

    def keys(self, record: LogRecord, fields: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """The keys of ``record`` (``fields``: the raw record map, if any)."""
        return self.keys_of(record.text, record.host, fields)

    def keys_of(
        self, text: str, host: str | None, fields: Mapping[str, Any] | None = None
    ) -> tuple[str, ...]:
        """:meth:`keys` of a record given by its text and host."""
        if self._field is not None and fields is not None:
            key = _as_key(fields.get(self._field))
            if key is not None:
                return (key,)
        if self._sliding:
            if host:
                return (host,)
            self.unkeyed += 1
            return (UNKEYED_HOST,)
        if self._findall is not None:
            found = self._findall(text)
            if len(found) == 1 and found[0]:  # the usual case: one block id per line
                return (found[0],)
            keys = tuple(dict.fromkeys(k for k in found if k))
            if keys:
                return keys
        self.unkeyed += 1
        return ()


def _as_key(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace") or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
