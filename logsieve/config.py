"""Frozen configuration dataclasses, validated on construction.

Configs are loaded once at the CLI edge (:func:`load_log_config`) and passed
down; no constructor reads files implicitly. Every ``__post_init__`` raises
:class:`~logsieve.errors.ConfigError` naming the field, the value and what is
allowed. ``to_dict``/``from_dict`` give the JSON form stored in bundle
manifests, so training and serving run the same log settings.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from logsieve.config_file import LOG_TABLES, deep_merge, read_tables
from logsieve.errors import ConfigError

__all__ = [
    "DEFAULT_MASK_RULES",
    "LINE_FORMATS",
    "TIME_FORMATS",
    "LineFormat",
    "LogConfig",
    "MaskRule",
    "MaskingConfig",
    "NoveltyConfig",
    "TemplateConfig",
    "WindowConfig",
    "load_log_config",
    "not_finite_number",
    "not_int",
    "reject_unknown",
]

WindowKind = Literal["session", "sliding"]
TruncatePolicy = Literal["split", "recent"]
UnseenPolicy = Literal["novelty", "flag", "score"]


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
            raise ConfigError(
                f"mask_rule[{self.name}].pattern", self.pattern, f"a valid regex ({exc})"
            ) from None

    @property
    def token(self) -> str:
        return f"<{self.name}>"


# Applied one after another, in this order (each rule sees the previous rules' tokens):
# the most specific shapes go first so that e.g. a block id is not eaten by the number
# rule, a MAC by the IPv6 rule, nor an IP:port by the path rule. Checked on real
# HDFS/BGL/Thunderbird lines (tests/logs/test_masking.py). Every pattern is linear-time
# (bounded repeats, anchored by look-behinds) so a hostile 1 MB line cannot make it
# backtrack catastrophically; MaskingConfig.max_line_chars bounds the work anyway.
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_H4 = "[0-9a-fA-F]{1,4}"
# Eight groups, 'a:b::c' / 'fe80::' compressed forms, or '::1'; never a bare '::'.
_IPV6 = (
    rf"(?:{_H4}(?::{_H4}){{7}}"
    rf"|{_H4}(?::{_H4}){{0,6}}::(?:{_H4}(?::{_H4}){{0,6}})?"
    rf"|::{_H4}(?::{_H4}){{0,6}})"
)
DEFAULT_MASK_RULES: tuple[MaskRule, ...] = (
    MaskRule(
        "TS",
        r"(?<![\w.:])(?:"
        # ISO 8601 / RFC 3339: 2008-11-09T20:35:18.123+01:00
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
        # BGL: 2005-06-03-15.42.50.675872
        r"|\d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}(?:\.\d+)?"
        # dotted dates, optionally with a time: 2005.06.03, 2005.09.20-18.06.05
        r"|\d{4}\.\d{2}\.\d{2}(?:[-_ ]\d{2}[.:]\d{2}[.:]\d{2})?"
        # syslog: Nov 9 12:01:01
        rf"|(?:{_MONTHS}) +\d{{1,2}} \d{{2}}:\d{{2}}:\d{{2}}"
        # a bare time of day: 12:01:01, 12:01:01.345
        r"|\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?"
        r")(?![\w:])",
    ),
    MaskRule("BLK", r"blk_-?\d+"),
    MaskRule(
        "UUID", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    ),
    # MACs and longer colon/dash-separated hex byte ids (BGL "FF:F2:9F:16:E2:..."); before
    # the IPv6 rule, which would otherwise take a MAC.
    MaskRule("MAC", r"(?<![\w:-])[0-9a-fA-F]{2}(?:[:-][0-9a-fA-F]{2}){5,}(?![\w:-])"),
    # IPv4, optional port; a trailing sentence full stop is allowed, a fifth octet is not.
    MaskRule("IP", r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?!\.?\w)"),
    # IPv6: eight groups or a '::' compressed form; a port only in the [addr]:port form.
    MaskRule("IP", rf"\[{_IPV6}\](?::\d{{1,5}})?|(?<![\w:]){_IPV6}(?![\w:])"),
    # '0x1f' and bare hex runs of 8+ with a digit and a letter. '\d[xX]' rather than '0[xX]'
    # keeps every rule blind to which digit it sees, which the matcher's digit-folding
    # cache relies on for its hit rate ('4x4' becomes <HEX> too, harmlessly).
    MaskRule(
        "HEX",
        r"\b\d[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b",
    ),
    # '/a/b', '//a', '/a/b/' (not a URL's host part: 'http:' stays, the rest is a path).
    MaskRule("PATH", r"(?<![\w/])(?:/+[\w.\-]+)+/?"),
    # Signed integers and decimals, also after a '.' that follows a letter or a run of
    # dots ('core.4505', 'enable......0'), optionally with a size unit ('2048K', '16KB').
    MaskRule(
        "NUM",
        r"(?:(?<![\w.])|(?<=[^\W\d_]\.)|(?<=\.\.))[-+]?\d+(?:\.\d+)?(?:[kKMGT]i?B?|B)?(?!\w|\.\w)",
    ),
)


@dataclass(frozen=True)
class MaskingConfig:
    """Ordered masking rules, applied one after another to each line.

    ``max_line_chars`` bounds the work per line: a longer line is cut to that many
    characters and ends with the token ``<TRUNC>`` (the masker counts such lines), so
    one pathological record costs no more than a long normal one. ``None`` disables the
    cut (not recommended for untrusted input).
    """

    rules: tuple[MaskRule, ...] = DEFAULT_MASK_RULES
    max_line_chars: int | None = 8192

    def __post_init__(self) -> None:
        if not all(isinstance(r, MaskRule) for r in self.rules):
            raise ConfigError("masking.rules", self.rules, "a sequence of MaskRule")
        if self.max_line_chars is not None and (
            isinstance(self.max_line_chars, bool)
            or not isinstance(self.max_line_chars, int)
            or self.max_line_chars < 16
        ):
            raise ConfigError(
                "masking.max_line_chars", self.max_line_chars, "None or an integer >= 16"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"rules": [{"name", "pattern"}, ...], "max_line_chars": n}``."""
        return {
            "rules": [{"name": r.name, "pattern": r.pattern} for r in self.rules],
            "max_line_chars": self.max_line_chars,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MaskingConfig:
        """Inverse of :meth:`to_dict`; a missing key takes its default, an unknown key or
        a malformed rule is a :class:`ConfigError`."""
        reject_unknown("masking", data, cls)
        kwargs: dict[str, Any] = {}
        if data.get("rules") is not None:
            rules = data["rules"]
            if not isinstance(rules, (list, tuple)) or not all(
                isinstance(r, Mapping)
                and isinstance(r.get("name"), str)
                and isinstance(r.get("pattern"), str)
                for r in rules
            ):
                raise ConfigError("masking.rules", rules, "a list of {name, pattern} tables")
            kwargs["rules"] = tuple(MaskRule(r["name"], r["pattern"]) for r in rules)
        if "max_line_chars" in data:
            kwargs["max_line_chars"] = data["max_line_chars"]
        return cls(**kwargs)


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
            raise ConfigError(
                "templates.max_clusters", self.max_clusters, "None or an integer >= 1"
            )


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

    ``max_open_windows`` caps the windows held open at once (all keys together)
    so a high-cardinality key stream cannot exhaust memory: past the cap the
    oldest open window is closed early as ``evicted`` (counted). Presets for the
    public datasets live in :data:`logsieve.logs.windows.WINDOW_PRESETS`.
    """

    kind: WindowKind = "session"
    key_field: str | None = None
    key_regex: str | None = r"blk_-?\d+"
    idle_timeout: float = 300.0
    max_lines: int = 10_000
    size: float = 300.0
    step: float = 60.0
    allowed_lateness: float = 10.0
    max_open_windows: int = 100_000

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "size", "step", "allowed_lateness"):
            value = getattr(self, name)
            # NaN slips through every comparison below, and infinity has no
            # standard JSON form for the bundle manifest.
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)
            ):
                raise ConfigError(f"windows.{name}", value, "a finite number of seconds")
        if self.kind not in ("session", "sliding"):
            raise ConfigError("windows.kind", self.kind, "'session' or 'sliding'")
        if self.kind == "session" and self.key_field is None and self.key_regex is None:
            raise ConfigError(
                "windows.key_regex", None, "session windows need key_field or key_regex"
            )
        if self.key_regex is not None:
            try:
                re.compile(self.key_regex)
            except re.error as exc:
                raise ConfigError(
                    "windows.key_regex", self.key_regex, f"a valid regex ({exc})"
                ) from None
        if self.idle_timeout <= 0:
            raise ConfigError("windows.idle_timeout", self.idle_timeout, "seconds > 0")
        if self.max_lines < 1:
            raise ConfigError("windows.max_lines", self.max_lines, "an integer >= 1")
        if self.size <= 0:
            raise ConfigError("windows.size", self.size, "seconds > 0")
        if not 0 < self.step <= self.size:
            raise ConfigError("windows.step", self.step, f"seconds in (0, size={self.size}]")
        if self.kind == "sliding" and self.size / self.step > 1000:
            # Every event joins size/step windows: bound the work and memory per event.
            raise ConfigError("windows.step", self.step, f">= size/1000 = {self.size / 1000}")
        if self.allowed_lateness < 0:
            raise ConfigError("windows.allowed_lateness", self.allowed_lateness, "seconds >= 0")
        if (
            not isinstance(self.max_open_windows, int)
            or isinstance(self.max_open_windows, bool)
            or self.max_open_windows < 1
        ):
            raise ConfigError("windows.max_open_windows", self.max_open_windows, "an integer >= 1")


LINE_FORMATS = ("hdfs", "bgl", "thunderbird", "lines")
# Named time formats (``auto`` detects one of the others from the first lines); any
# other ``time_format`` is a strptime format and must hold a '%' directive.
TIME_FORMATS = ("auto", "epoch", "epoch_ms", "iso8601", "syslog", "hdfs", "bgl")


@dataclass(frozen=True)
class LineFormat:
    """How one raw log line splits into time, host and text (the bundle keeps it).

    ``name``: ``hdfs``, ``bgl``, ``thunderbird`` (fixed layouts) or ``lines``: a regex
    ``pattern`` matched at the start of the line whose optional named groups ``time``,
    ``host`` and ``text`` fill the record (no ``text`` group: the whole line).
    ``time_format`` (``lines`` only) reads the ``time`` group: one of
    :data:`TIME_FORMATS` or a ``strptime`` format such as ``%d/%b/%Y:%H:%M:%S %z``;
    ``None`` is ``auto``. Training stores the detected format here, so serving reads
    the time exactly as training did. ``timezone`` is the zone of times that carry
    none (an IANA name such as ``Europe/Paris``, or ``UTC``).
    """

    name: str = "hdfs"
    pattern: str | None = None
    time_format: str | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.name not in LINE_FORMATS:
            raise ConfigError("line_format.name", self.name, f"one of {', '.join(LINE_FORMATS)}")
        if self.name != "lines":
            for key in ("pattern", "time_format"):
                if getattr(self, key) is not None:
                    raise ConfigError(
                        f"line_format.{key}", getattr(self, key), "only with name = 'lines'"
                    )
        elif not isinstance(self.pattern, str) or not self.pattern:
            raise ConfigError(
                "line_format.pattern", self.pattern, "a regex with named groups time/host/text"
            )
        else:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ConfigError(
                    "line_format.pattern", self.pattern, f"a valid regular expression ({exc})"
                ) from None
        tf = self.time_format
        if tf is not None and (
            not isinstance(tf, str) or (tf not in TIME_FORMATS and "%" not in tf)
        ):
            raise ConfigError(
                "line_format.time_format",
                tf,
                f"one of {', '.join(TIME_FORMATS)} or a strptime format ('%Y-%m-%d %H:%M:%S')",
            )
        if not isinstance(self.timezone, str) or not _known_zone(self.timezone):
            raise ConfigError("line_format.timezone", self.timezone, "UTC or an IANA zone name")


def _known_zone(name: str) -> bool:
    if name == "UTC":
        return True
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class NoveltyConfig:
    """How new templates (lines no training template matches) are judged under
    ``unseen_templates = "novelty"`` (see :mod:`logsieve.logs.novelty`).

    A new pattern is *admitted* as drift once it was seen in at least
    ``admit_min_keys`` window keys (capped at ``admit_fraction`` of all keys known, for
    small fleets) and in at least ``admit_fraction`` of the keys active since it first
    appeared; before that it is *rare* and a window holding it is an anomaly.
    ``max_patterns`` bounds the patterns tracked (later unseen lines count as rare),
    ``max_keys`` the keys remembered for the spread.
    """

    admit_fraction: float = 0.5
    admit_min_keys: int = 10
    max_patterns: int = 10_000
    max_keys: int = 200_000

    def __post_init__(self) -> None:
        if not_finite_number(self.admit_fraction) or not 0.0 < self.admit_fraction <= 1.0:
            raise ConfigError("novelty.admit_fraction", self.admit_fraction, "a fraction in (0, 1]")
        for name in ("admit_min_keys", "max_patterns", "max_keys"):
            value = getattr(self, name)
            if not_int(value) or value < 1:
                raise ConfigError(f"novelty.{name}", value, "an integer >= 1")


@dataclass(frozen=True)
class LogConfig:
    """Everything that turns raw log lines into model input.

    Stored in the bundle manifest so serving uses exactly the training settings.
    ``max_len`` counts the [CLS] token. ``truncate`` says what happens to a window
    longer than ``max_len - 1`` events: ``split`` into consecutive chunks (none
    dropped), or keep the ``recent`` tail.

    ``unseen_templates`` says what a line no training template matches does to its
    window: ``novelty`` (default) groups such lines into new patterns judged by their
    spread (``novelty``; :mod:`logsieve.logs.novelty`): a rare one makes the window an
    anomaly, a widespread one is drift and ignored; the model scores the known lines.
    ``flag`` makes any window holding one an anomaly with score ``+inf`` (floods when
    logs drift); ``score`` lets the model score ``[UNK]`` (its embedding is never
    trained: measured on HDFS, one seed missed 493 such sessions). Either way the line
    comes first in the evidence.

    ``line_format`` is how a raw line of the training data splits into time, host and
    text (:class:`LineFormat`); serving applies it to a record whose text is a whole
    raw line. ``None``: not known (data given as template ids, or an older bundle).
    """

    text_fields: tuple[str, ...] = ("log", "message")
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    templates: TemplateConfig = field(default_factory=TemplateConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    max_len: int = 512
    truncate: TruncatePolicy = "split"
    unseen_templates: UnseenPolicy = "novelty"
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    line_format: LineFormat | None = None

    def __post_init__(self) -> None:
        if not self.text_fields or not all(isinstance(f, str) and f for f in self.text_fields):
            raise ConfigError("text_fields", self.text_fields, "a non-empty list of field names")
        if not 2 <= self.max_len <= 4096:
            raise ConfigError("max_len", self.max_len, "an integer in 2..4096")
        if self.truncate not in ("split", "recent"):
            raise ConfigError("truncate", self.truncate, "'split' or 'recent'")
        if self.unseen_templates not in ("novelty", "flag", "score"):
            raise ConfigError(
                "unseen_templates", self.unseen_templates, "'novelty', 'flag' or 'score'"
            )
        if self.line_format is not None and not isinstance(self.line_format, LineFormat):
            raise ConfigError("line_format", self.line_format, "a LineFormat")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        out: dict[str, Any] = _jsonable(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        data = dict(data)
        reject_unknown("log", data, cls)
        masking = data.pop("masking", None)
        templates = data.pop("templates", None)
        windows = data.pop("windows", None)
        novelty = data.pop("novelty", None)
        line_format = data.pop("line_format", None)
        kwargs: dict[str, Any] = {}
        if novelty is not None:
            reject_unknown("novelty", novelty, NoveltyConfig)
            kwargs["novelty"] = NoveltyConfig(**novelty)
        if line_format is not None:
            reject_unknown("line_format", line_format, LineFormat)
            kwargs["line_format"] = LineFormat(**line_format)
        if masking is not None:
            kwargs["masking"] = MaskingConfig.from_dict(masking)
        if templates is not None:
            reject_unknown("templates", templates, TemplateConfig)
            t = dict(templates)
            if "extra_delimiters" in t:
                t["extra_delimiters"] = tuple(t["extra_delimiters"])
            kwargs["templates"] = TemplateConfig(**t)
        if windows is not None:
            reject_unknown("windows", windows, WindowConfig)
            kwargs["windows"] = WindowConfig(**windows)
        if "text_fields" in data:
            data["text_fields"] = tuple(data["text_fields"])
        return cls(**data, **kwargs)


def reject_unknown(section: str, data: Mapping[str, Any], cls: type) -> None:
    """:class:`ConfigError` unless ``data`` is a table whose keys are fields of ``cls``
    (every ``from_dict`` of a config dataclass checks its table with this)."""
    if not isinstance(data, Mapping):
        raise ConfigError(section, data, "a table of settings")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            allowed = f"a known setting ({', '.join(sorted(known))})"
            raise ConfigError(f"{section}.{key}", data[key], allowed)


def not_int(value: object) -> bool:
    """True unless ``value`` is an int (``bool`` is not: ``true`` as a count is a typo)."""
    return isinstance(value, bool) or not isinstance(value, int)


def not_finite_number(value: object) -> bool:
    """True unless ``value`` is a finite int or float (not a ``bool``)."""
    return (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(float(value))
    )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def load_log_config(path: Path, base: LogConfig | None = None) -> LogConfig:
    """Read the ``[log]`` table of a TOML file and lay it over ``base``.

    ``base`` is the preset the command would use without a file (the dataset's
    :func:`~logsieve.export.data.formats.default_log_config`); ``None`` means
    :class:`LogConfig`'s defaults. The table overrides only the keys it names:
    sub-tables (``[log.windows]``, ``[log.templates]``, ``[log.masking]``) merge key by
    key, lists (``text_fields``, ``[[log.masking.rules]]``) replace the base's
    (:func:`~logsieve.config_file.deep_merge`). A missing file, a file without
    ``[log]``, any other top-level table and any unknown key are
    :class:`ConfigError` naming the file.
    """
    table = read_tables(path, LOG_TABLES, required=("log",))["log"]
    merged = deep_merge((base or LogConfig()).to_dict(), table)
    try:
        return LogConfig.from_dict(merged)
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.value, f"{exc.allowed} (in {path})") from None
    except TypeError as exc:
        raise ConfigError("log", table, f"valid settings in {path} ({exc})") from None
