"""Settings of the streaming pipeline (records → windows → engine → flags), frozen and validated.

The windowing itself (key field or regex, session/sliding, timeouts, ``max_len``) is
*not* here: it comes from the bundle's log config, so serving cuts exactly the windows
the model was trained and calibrated on. Loaded once at the CLI edge from the
``[pipeline]`` table (:meth:`PipelineConfig.from_dict`, unknown keys are errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from logsieve.config import not_finite_number, not_int, reject_unknown
from logsieve.engine.base import BACKEND_CHOICES
from logsieve.errors import ConfigError

from .flags import DEFAULT_FLAG_TAG

__all__ = ["PipelineConfig"]

_SECTION = "pipeline"
_BACKENDS = BACKEND_CHOICES


@dataclass(frozen=True)
class PipelineConfig:
    """How records become flags.

    Attributes:
        text_fields: Record keys tried in order for the line text; None uses the
            bundle's (``log`` then ``message`` by default). A record with none of
            them (or an empty/non-string value) is counted as ``no_text``, not
            windowed, and still acknowledged (a resend could not fix it).
        host_fields: Record keys tried in order for the host of per-host (sliding)
            windows. Session windows take their key from the bundle's
            ``key_field``/``key_regex``.
        raw_lines: Apply the bundle's line format to each record's text (the default):
            a text that is a whole raw line (Fluent Bit ``tail`` without a parser) is
            split into time, host and content as in training; any other text is used
            as it is. False: every text is content already. A ``lines`` pattern
            without a ``time`` group cannot tell the two apart: set False when records
            arrive parsed.
        backend: Engine backend (``auto`` picks the fastest one here; on CPU that is
            ONNX Runtime, which does not import torch).
        engine_threads: Intra-op threads of the engine (None: cores - 1 in the engine
            process, the backend's default in a thread).
        engine_process: Run the engine in a child process (the default), so scoring
            never waits on the event loop for the GIL; False keeps it in a thread of
            the server process (one process, less memory, slower under load).
        engine_timeout: Seconds the engine process may take over one batch before it is
            taken as hung, killed and restarted (the batch is retried once).
        batch_size: Most windows per engine call.
        batch_windows: Most closed windows one batcher cycle takes. The verdict cache
            answers most of them without the engine; the rest go to it in calls of at
            most ``batch_size``. Larger cycles mean fewer round trips to the engine
            process per window (measured: ~8% less engine-process CPU per record than
            cycles of 256 at the same load); a cycle still never waits more than
            ``max_wait_ms`` to fill.
        verdict_cache_entries: Most windows whose engine result the verdict cache keeps
            per served model (:mod:`logsieve.engine.cache`): a window whose model input
            was scored before gets the stored score and per-line probabilities, the
            same numbers, without an engine call. 0 turns the cache off (identical
            windows inside one batch are still scored once). About 440 bytes per
            20-line window.
        verdict_cache_bytes: Most bytes (estimated) the verdict cache holds per served
            model; least recently used entries go first. 0 turns the cache off.
        max_wait_ms: Longest a closed window waits for its batch to fill. Under load
            the queue fills a cycle without waiting; at moderate rates this wait is
            most of a window's latency (measured at 37,500 records/s: close → verdict
            p99 45-73 ms at 5 ms, 110-113 ms at 20).
        queue_size: Closed windows queued for the engine. When full, ``put`` waits,
            so the connection stops reading its socket (backpressure, no dropping).
        advance_interval: Seconds between clock ticks that close idle windows
            (0 disables; windows then close only on later records and at shutdown).
            The tick's watermark is the largest event time seen plus the wall-clock
            time since it was seen: event time keeps moving while the input is
            quiet, and a replay faster than real time is windowed as offline.
        idle_close: Wall-clock seconds without a new line for its key after which a
            session window closes on the next clock tick (``closed_by="idle_wall"``),
            however long its event-time ``idle_timeout`` (a day for HDFS blocks); 0
            turns it off, leaving event time alone to close windows, as offline
            (``logsieve score``, training) always does: for replays that must
            reproduce offline windows. The default, 60 s, splits 7% of the HDFS blocks
            of ``HDFS_20000.log`` whose own lines pause longer (30 s: 62%, 120 s: 0.1%);
            the later lines of a closed key open a new window. Sliding windows ignore
            it (their watermark already follows the wall clock); needs
            ``advance_interval`` > 0.
        max_future_skew: Seconds an event time may be ahead of this host's wall clock
            and still be trusted. A later time (or one at or before 1970, or not
            finite) is windowed at the current event time instead, counted by reason
            in ``logsieve_pipeline_retimed_records_total`` (:mod:`.timecheck`), so a
            single record stamped years ahead cannot close every open window; the
            clock tick's watermark is capped at the wall clock plus this too. One
            record can still move the watermark this far ahead: keep it well under the
            bundle's window timings (a sliding window's ``size``, a session's
            ``idle_timeout``). The default, 60 s, is far above what NTP-synced hosts
            drift and below a one-minute sliding window; a host whose clock or time
            zone is off by more shows up in the counter (``reason="future"``).
        top_k: Evidence lines per flag.
        flag_tag: Tag of the flag records sent upstream.
        every_verdict: Also send a record for every normal window (``verdict:
            "normal"``), not only for anomalies.
        pass_through: Also send every record upstream, enriched with
            ``logsieve_verdict``/``logsieve_score``/``logsieve_flag_id``. A record is
            held until the first window containing it closes and is sent then, with
            that window's verdict (session windows: its only window). Records that
            join no window (no key, no text) are sent at once, unenriched.
        pass_through_tag: Tag of pass-through records; None keeps each record's tag.
        pattern_tag: Tag of new-pattern records: one per template training never saw,
            when a window holding it is first judged, and one more when it spread
            widely enough to be admitted as drift (``unseen_templates = "novelty"``).
        novelty_state: JSON file keeping the new patterns (and which are admitted)
            across restarts; None keeps them in memory only. Written at shutdown and
            every ``novelty_save_interval`` seconds while new patterns appear.
        drain_timeout: Seconds the server waits at shutdown for in-flight requests.
        flush_timeout: Seconds shutdown waits for upstream acks of the last flags
            before the rest is spooled (or counted as lost without a spool).
    """

    text_fields: tuple[str, ...] | None = None
    host_fields: tuple[str, ...] = ("host", "hostname")
    raw_lines: bool = True
    backend: str = "auto"
    engine_threads: int | None = None
    engine_process: bool = True
    engine_timeout: float = 120.0
    batch_size: int = 256
    batch_windows: int = 1024
    verdict_cache_entries: int = 100_000
    verdict_cache_bytes: int = 64 * 2**20
    max_wait_ms: float = 5.0
    queue_size: int = 2048
    advance_interval: float = 1.0
    idle_close: float = 60.0
    max_future_skew: float = 60.0
    top_k: int = 5
    flag_tag: str = DEFAULT_FLAG_TAG
    every_verdict: bool = False
    pass_through: bool = False
    pass_through_tag: str | None = "logsieve.record"
    pattern_tag: str = "logsieve.pattern"
    novelty_state: str | None = None
    novelty_save_interval: float = 60.0
    drain_timeout: float = 10.0
    flush_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("text_fields", "host_fields"):
            value = getattr(self, name)
            if value is None and name == "text_fields":
                continue
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            if (
                not isinstance(value, tuple)
                or not value
                or not all(isinstance(v, str) and v for v in value)
            ):
                raise ConfigError(f"{_SECTION}.{name}", value, "a non-empty list of field names")
        if self.backend not in _BACKENDS:
            raise ConfigError(f"{_SECTION}.backend", self.backend, f"one of {', '.join(_BACKENDS)}")
        if self.engine_threads is not None and (
            not_int(self.engine_threads) or self.engine_threads < 1
        ):
            raise ConfigError(f"{_SECTION}.engine_threads", self.engine_threads, "an integer >= 1")
        for name, low in (
            ("batch_size", 1),
            ("batch_windows", 1),
            ("queue_size", 1),
            ("top_k", 0),
            ("verdict_cache_entries", 0),
            ("verdict_cache_bytes", 0),
        ):
            value = getattr(self, name)
            if not_int(value) or value < low:
                raise ConfigError(f"{_SECTION}.{name}", value, f"an integer >= {low}")
        for name in ("max_wait_ms", "advance_interval", "idle_close"):
            value = getattr(self, name)
            if not_finite_number(value) or value < 0:
                raise ConfigError(f"{_SECTION}.{name}", value, "a number >= 0")
        for name in ("engine_timeout", "drain_timeout", "flush_timeout", "max_future_skew"):
            value = getattr(self, name)
            if not_finite_number(value) or value <= 0:
                raise ConfigError(f"{_SECTION}.{name}", value, "a positive number of seconds")
        for name in ("engine_process", "every_verdict", "pass_through", "raw_lines"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{_SECTION}.{name}", getattr(self, name), "true or false")
        for name in ("flag_tag", "pattern_tag"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{_SECTION}.{name}", getattr(self, name), "a non-empty tag")
        if self.novelty_state is not None and (
            not isinstance(self.novelty_state, str) or not self.novelty_state
        ):
            raise ConfigError(
                f"{_SECTION}.novelty_state", self.novelty_state, "a file path or null"
            )
        if not_finite_number(self.novelty_save_interval) or self.novelty_save_interval <= 0:
            raise ConfigError(
                f"{_SECTION}.novelty_save_interval", self.novelty_save_interval, "seconds > 0"
            )
        if self.pass_through_tag is not None and (
            not isinstance(self.pass_through_tag, str) or not self.pass_through_tag
        ):
            raise ConfigError(
                f"{_SECTION}.pass_through_tag", self.pass_through_tag, "a non-empty tag or null"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PipelineConfig:
        """Build from a TOML table; unknown keys are a :class:`ConfigError`."""
        reject_unknown(_SECTION, data, cls)
        return cls(**dict(data))
