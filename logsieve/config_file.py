"""TOML config files: read one, check its top-level tables, layer a table over a base.

Every command that takes ``--config`` reads its file through :func:`read_tables`, so a
missing file, broken TOML, a misspelt table (``[lgo]``) or a table meant for another
command is the same kind of :class:`~logsieve.errors.ConfigError` everywhere, naming
the file. Two kinds of file exist and each command reads one:

* a **log config** (``logsieve train``, ``templates``, ``windows``): one ``[log]``
  table and its sub-tables, layered over the dataset's preset (:func:`deep_merge`);
* a **serve config** (``logsieve serve``): ``[server]``, ``[upstream]``, ``[pipeline]``.

A file holding both kinds is refused by both commands: serving takes its log settings
from the bundle (the ones it was trained with), so a ``[log]`` table beside
``[server]`` would look applied and not be.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from logsieve.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["LOG_TABLES", "SERVE_TABLES", "deep_merge", "read_tables"]

# Which command reads which top-level table: named in the error for a misplaced one.
LOG_TABLES = ("log",)
SERVE_TABLES = ("server", "upstream", "pipeline", "durability", "cluster")
_OWNER = {
    **dict.fromkeys(LOG_TABLES, "a log config (logsieve train/templates/windows --config)"),
    **dict.fromkeys(SERVE_TABLES, "a serve config (logsieve serve --config)"),
}


def read_tables(
    path: Path, allowed: tuple[str, ...], *, required: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """The top-level tables of the TOML file at ``path``.

    :class:`ConfigError` naming the file when it is missing or not TOML, when a
    top-level key is not one of ``allowed`` or not a table, and when a ``required``
    table is absent; the error's field is the table's name. A missing file is never a
    silent default.
    """
    if not path.is_file():
        raise ConfigError("config", str(path), "an existing TOML file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("config", str(path), f"valid TOML ({exc})") from None
    tables = ", ".join(f"[{t}]" for t in allowed)
    for key, value in data.items():
        if key not in allowed:
            where = f"; [{key}] belongs in {_OWNER[key]}" if key in _OWNER else ""
            raise ConfigError(key, value, f"only {tables} in {path}{where}")
        if not isinstance(value, dict):
            raise ConfigError(key, value, f"a table ({tables}) in {path}")
    for name in required:
        if name not in data:
            raise ConfigError(name, None, f"a [{name}] table in {path} (it has none)")
    return {str(k): dict(v) for k, v in data.items()}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it: tables merge key by key (recursively),
    anything else (numbers, strings, lists) in ``override`` replaces ``base``'s value.

    Generic on purpose: it knows no setting names, so a new config field layers
    without a change here. Unknown keys pass through for the config's ``from_dict``
    to reject.
    """
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = deep_merge(old, value)
        else:
            out[key] = value
    return out
