"""Frozen configuration dataclasses, validated on construction.

Configs are loaded once at the CLI edge (:func:`load_log_config`) and passed
down; no constructor reads files implicitly. Every ``__post_init__`` raises
:class:`~logsieve.errors.ConfigError` naming the field, the value and what is
allowed. ``to_dict``/``from_dict`` give the JSON form stored in bundle
manifests, so training and serving run the same log settings.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from logsieve.errors import ConfigError

__all__ = [
    "DEFAULT_MASK_RULES",
    "LogConfig",
    "MaskRule",
    "MaskingConfig",
    "TemplateConfig",
    "WindowConfig",
    "load_log_config",
]

WindowKind = Literal["session", "sliding"]
TruncatePolicy = Literal["split", "recent"]


@dataclass(frozen=True)
class MaskRule:
    """One masking rule: every match of ``pattern`` becomes ``<NAME>``.

    ``name`` is upper-case letters/digits/underscore; the replacement token is
    ``<`` + name + ``>`` so masked tokens never collide with real text.
    """

    name: str
    pattern: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", self.name):
            raise ConfigError("mask_rule.name", self.name, "upper-case letters, digits, '_'")
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ConfigError(f"mask_rule[{self.name}].pattern", self.pattern, f"a valid regex ({exc})") from None

    @property
    def token(self) -> str:
        return f"<{self.name}>"


# Order matters: the most specific shapes go first so that e.g. a block id is
# not eaten by the number rule, nor an IP:port by the path rule.
DEFAULT_MASK_RULES: tuple[MaskRule, ...] = (
    MaskRule("TS", r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b"),
    MaskRule("BLK", r"blk_-?\d+"),
    MaskRule("UUID", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    MaskRule("IP", r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])"),
    MaskRule("IP", r"(?<![\w:])\[?(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\]?(?::\d{1,5})?(?![\w:])"),
    MaskRule("HEX", r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"),
    MaskRule("PATH", r"(?<![\w/])(?:/[\w.\-]+)+/?"),
    MaskRule("NUM", r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])"),
)


@dataclass(frozen=True)
class MaskingConfig:
    """Ordered masking rules, applied one after another to each line."""

    rules: tuple[MaskRule, ...] = DEFAULT_MASK_RULES

    def __post_init__(self) -> None:
        if not all(isinstance(r, MaskRule) for r in self.rules):
            raise ConfigError("masking.rules", self.rules, "a sequence of MaskRule")


@dataclass(frozen=True)
class TemplateConfig:
    """Drain template-miner settings (used at training time only)."""

    depth: int = 4
    sim_th: float = 0.4
    max_children: int = 100
    max_clusters: int | None = None
    extra_delimiters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 3 <= self.depth <= 16:
            raise ConfigError("templates.depth", self.depth, "an integer in 3..16")
        if not 0.0 < self.sim_th <= 1.0:
            raise ConfigError("templates.sim_th", self.sim_th, "a float in (0, 1]")
        if self.max_children < 1:
            raise ConfigError("templates.max_children", self.max_children, "an integer >= 1")
        if self.max_clusters is not None and self.max_clusters < 1:
            raise ConfigError("templates.max_clusters", self.max_clusters, "None or an integer >= 1")


@dataclass(frozen=True)
class WindowConfig:
    """How lines are grouped into windows.

    ``session``: one window per key (a record field ``key_field`` or every
    match of ``key_regex`` over the line; a line naming two keys joins both),
    closed after ``idle_timeout`` seconds of event time without a line, at
    ``max_lines`` lines (the key then starts a new window) or on flush.

    ``sliding``: per-host time windows of ``size`` seconds every ``step``
    seconds on event time; a window closes once the watermark (largest event
    time seen) passes its end plus ``allowed_lateness``.
    """

    kind: WindowKind = "session"
    key_field: str | None = None
    key_regex: str | None = r"blk_-?\d+"
    idle_timeout: float = 300.0
    max_lines: int = 10_000
    size: float = 300.0
    step: float = 60.0
    allowed_lateness: float = 10.0

    def __post_init__(self) -> None:
        if self.kind not in ("session", "sliding"):
            raise ConfigError("windows.kind", self.kind, "'session' or 'sliding'")
        if self.kind == "session" and self.key_field is None and self.key_regex is None:
            raise ConfigError("windows.key_regex", None, "session windows need key_field or key_regex")
        if self.key_regex is not None:
            try:
                re.compile(self.key_regex)
            except re.error as exc:
                raise ConfigError("windows.key_regex", self.key_regex, f"a valid regex ({exc})") from None
        if self.idle_timeout <= 0:
            raise ConfigError("windows.idle_timeout", self.idle_timeout, "seconds > 0")
        if self.max_lines < 1:
            raise ConfigError("windows.max_lines", self.max_lines, "an integer >= 1")
        if self.size <= 0:
            raise ConfigError("windows.size", self.size, "seconds > 0")
        if not 0 < self.step <= self.size:
            raise ConfigError("windows.step", self.step, f"seconds in (0, size={self.size}]")
        if self.allowed_lateness < 0:
            raise ConfigError("windows.allowed_lateness", self.allowed_lateness, "seconds >= 0")


@dataclass(frozen=True)
class LogConfig:
    """Everything that turns raw log lines into model input.

    Stored in the bundle manifest so serving uses exactly the training settings.
    ``max_len`` counts the [CLS] token. ``truncate`` says what happens to a window
    longer than ``max_len - 1`` events: ``split`` into consecutive chunks (none
    dropped), or keep the ``recent`` tail.
    """

    text_fields: tuple[str, ...] = ("log", "message")
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    templates: TemplateConfig = field(default_factory=TemplateConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    max_len: int = 512
    truncate: TruncatePolicy = "split"

    def __post_init__(self) -> None:
        if not self.text_fields or not all(isinstance(f, str) and f for f in self.text_fields):
            raise ConfigError("text_fields", self.text_fields, "a non-empty list of field names")
        if not 2 <= self.max_len <= 4096:
            raise ConfigError("max_len", self.max_len, "an integer in 2..4096")
        if self.truncate not in ("split", "recent"):
            raise ConfigError("truncate", self.truncate, "'split' or 'recent'")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        data = dict(data)
        _reject_unknown("log", data, cls)
        masking = data.pop("masking", None)
        templates = data.pop("templates", None)
        windows = data.pop("windows", None)
        kwargs: dict[str, Any] = {}
        if masking is not None:
            _reject_unknown("masking", masking, MaskingConfig)
            rules = masking.get("rules", None)
            if rules is not None:
                kwargs["masking"] = MaskingConfig(
                    rules=tuple(MaskRule(r["name"], r["pattern"]) for r in rules)
                )
        if templates is not None:
            _reject_unknown("templates", templates, TemplateConfig)
            t = dict(templates)
            if "extra_delimiters" in t:
                t["extra_delimiters"] = tuple(t["extra_delimiters"])
            kwargs["templates"] = TemplateConfig(**t)
        if windows is not None:
            _reject_unknown("windows", windows, WindowConfig)
            kwargs["windows"] = WindowConfig(**windows)
        if "text_fields" in data:
            data["text_fields"] = tuple(data["text_fields"])
        return cls(**data, **kwargs)


def _reject_unknown(section: str, data: Mapping[str, Any], cls: type) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(section, data, "a table of settings")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{section}.{key}", data[key], f"a known setting ({', '.join(sorted(known))})")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def load_log_config(path: Path) -> LogConfig:
    """Read a TOML file with a ``[log]`` table (and its sub-tables).

    A missing file is an error, never a silent default.
    """
    if not path.is_file():
        raise ConfigError("config", str(path), "an existing TOML file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("config", str(path), f"valid TOML ({exc})") from None
    try:
        return LogConfig.from_dict(data.get("log", {}))
    except TypeError as exc:
        raise ConfigError("log", data.get("log"), f"valid settings ({exc})") from None
