"""Settings of the write-ahead log that makes an ack mean "on disk" (``[durability]``).

Loaded once at the CLI edge (``DurabilityConfig.from_dict(table)``); validated here,
so a typo is a :class:`~logsieve.errors.ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from logsieve.config import not_finite_number, not_int, reject_unknown
from logsieve.errors import ConfigError

__all__ = ["DurabilityConfig", "FsyncPolicy"]

FsyncPolicy = Literal["always", "batch", "off"]
_SECTION = "durability"
_MIB = 1024 * 1024


@dataclass(frozen=True)
class DurabilityConfig:
    """Where and how acked records are kept until their window's verdict is delivered.

    Attributes:
        dir: Directory of the write-ahead log (one server per directory). None (the
            default, like Fluent Bit without ``storage.path``) keeps accepted records in
            memory only: an ack then means "accepted", and a crash loses what was acked
            and not yet judged. Set it and an ack means "on disk".
        fsync: When appended records reach the disk itself, not only the OS:

            * ``batch`` (default): a frame is acked once its records are written to
              the OS (a ``SIGKILL`` or crash of logsieve loses nothing), and the log is
              fsynced every ``fsync_interval`` seconds: a power loss or kernel crash can
              lose the acked records of the last interval.
            * ``always``: a frame is acked only after an fsync that covers it (frames
              arriving together share one fsync: group commit). Nothing acked is lost
              even on power loss; each ack waits for the disk (about 1-10 ms on SSDs).
            * ``off``: written to the OS, never fsynced by us: as ``batch`` for process
              crashes, and the OS decides when a power loss stops losing data.
        fsync_interval: Seconds between fsyncs under ``batch``.
        segment_bytes: A log file is closed and a new one started past this size;
            whole files are deleted once every record in them has its verdict delivered.
        max_bytes: Most bytes the log may hold. At the limit (or when the disk is full
            or unwritable) new frames wait unacknowledged, so the agents buffer them,
            and ``/health`` says why, until delivered verdicts free space.
    """

    dir: Path | None = None
    fsync: FsyncPolicy = "batch"
    fsync_interval: float = 1.0
    segment_bytes: int = 64 * _MIB
    max_bytes: int = 4096 * _MIB

    def __post_init__(self) -> None:
        if self.dir is not None:
            if isinstance(self.dir, str) and self.dir:
                object.__setattr__(self, "dir", Path(self.dir))
            if not isinstance(self.dir, Path):
                raise ConfigError(f"{_SECTION}.dir", self.dir, "a directory path or null")
        if self.fsync not in ("always", "batch", "off"):
            raise ConfigError(f"{_SECTION}.fsync", self.fsync, "one of always, batch, off")
        if not_finite_number(self.fsync_interval) or self.fsync_interval <= 0:
            raise ConfigError(f"{_SECTION}.fsync_interval", self.fsync_interval, "seconds > 0")
        for name, low in (("segment_bytes", _MIB), ("max_bytes", 2 * _MIB)):
            value = getattr(self, name)
            if not_int(value) or value < low:
                raise ConfigError(f"{_SECTION}.{name}", value, f"an integer >= {low}")
        if self.max_bytes < 2 * self.segment_bytes:
            raise ConfigError(
                f"{_SECTION}.max_bytes", self.max_bytes, "at least twice segment_bytes"
            )

    @property
    def enabled(self) -> bool:
        return self.dir is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DurabilityConfig:
        """Build from a TOML table; unknown keys are a :class:`ConfigError`."""
        reject_unknown(_SECTION, data, cls)
        return cls(**dict(data))
