"""From a Forward record to the line the pipeline windows: text, host, raw line, time.

``put`` (every record, hot) and the write-ahead log's replay (:mod:`.ledger`) read
records the same way::

    reader = RecordReader(config, bundle, metrics, watermark=lambda: windower.watermark)
    trusted_until = reader.trusted_until()           # once per frame
    text = reader.text(rec.record)                   # None: nothing to window
    line, parsed = reader.line(text, rec.record, rec.time, trusted_until)
    # put's form, per record: (time, host, text, parsed), or None without text
    got = reader.read(rec.record, rec.time, trusted_until)

* the text is the first non-empty of ``text_fields`` (``log``, ``message``), one line;
* a text that is a whole raw line of the bundle's format (Fluent Bit ``tail`` without a
  parser) is split by that format, so it templates and windows as in training; its own
  time and host win over the record's (the record's time is when the agent read it);
* an event time past wall clock + ``max_future_skew``, at or before 0, or not finite is
  not trusted (:mod:`.timecheck`): the line is windowed at the current event time and the
  record counted in ``logsieve_pipeline_retimed_records_total{reason}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from logsieve.bundle import Bundle
from logsieve.logs.lineformat import LineParser
from logsieve.logs.records import LogRecord

from .forward.eventtime import MAX_EVENT_SECONDS
from .pipeline_config import PipelineConfig
from .pipeline_metrics import PipelineMetrics
from .supervision import RateLimitedLog
from .timecheck import untrusted_time

__all__ = ["RecordReader"]


class RecordReader:
    """Reads records for one bundle's log settings (module docstring)."""

    def __init__(
        self,
        config: PipelineConfig,
        bundle: Bundle,
        metrics: PipelineMetrics,
        *,
        watermark: Callable[[], float | None],
        wall_clock: Callable[[], float] = time.time,
        log: RateLimitedLog | None = None,
    ) -> None:
        log_config = bundle.log_config
        self.text_fields = config.text_fields or log_config.text_fields
        self.host_fields = config.host_fields
        self.max_future_skew = config.max_future_skew
        # Only per-host (sliding) windows read a record's host; session keys never do.
        self.needs_host = log_config.windows.kind == "sliding"
        line_format = bundle.line_format if config.raw_lines else None
        self.raw_parser = LineParser(line_format) if line_format is not None else None
        self._parse_raw = self.raw_parser.whole_line if self.raw_parser is not None else None
        self.raw_counts = {"parsed": 0, "as_is": 0}
        self.metrics = metrics
        self._watermark = watermark
        self._wall = wall_clock
        self._log = log or RateLimitedLog(logging.getLogger(__name__))

    def trusted_until(self) -> float:
        """The latest event time trusted now; never past 2106 either, since a window's
        flag must re-encode its times as an EventTime."""
        return min(self._wall() + self.max_future_skew, MAX_EVENT_SECONDS - 1)

    def text(self, record: Mapping[Any, Any]) -> str | None:
        """The record's line text, or None when it has none."""
        for name in self.text_fields:
            value = record.get(name)
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            if isinstance(value, str) and value:
                # One line per record: a trailing newline from tail inputs is not content.
                return value.rstrip("\r\n") or None
        return None

    def host(self, record: Mapping[Any, Any]) -> str | None:
        """The record's host field, if any."""
        for name in self.host_fields:
            value = record.get(name)
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            if isinstance(value, str) and value:
                return value
        return None

    def line(
        self, text: str, record: Mapping[Any, Any], time: float, trusted_until: float
    ) -> tuple[LogRecord, bool]:
        """The line to window for ``text`` (the record's map and time beside it), and
        whether the text was a whole raw line split by the bundle's format."""
        when, host, text, raw = self.split(text, record, time, trusted_until)
        return LogRecord(when, host, text), raw

    def read(
        self, record: Mapping[Any, Any], time: float, trusted_until: float
    ) -> tuple[float | None, str | None, str, bool] | None:
        """:meth:`text` then :meth:`split` in one call (``put``'s, per record): None
        when the record has no text."""
        for name in self.text_fields:  # text(), inlined: one call less per record
            value = record.get(name)
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            if isinstance(value, str) and value:
                text = value.rstrip("\r\n")
                return self.split(text, record, time, trusted_until) if text else None
        return None

    def split(
        self, text: str, record: Mapping[Any, Any], time: float, trusted_until: float
    ) -> tuple[float | None, str | None, str, bool]:
        """:meth:`line` as ``(time, host, text, raw)``, without building a record."""
        host = self.host(record) if self.needs_host else None
        raw = self._parse_raw(text) if self._parse_raw is not None else None
        when: float | None
        if raw is None:
            when = time
        elif raw.time is not None and (raw.host is not None or host is None):
            when, host, text = raw.time, raw.host, raw.text
        else:
            when = raw.time if raw.time is not None else time
            host, text = raw.host or host, raw.text
        if when is not None and not 0 < when <= trusted_until:
            when = self._retime(when, trusted_until)
        return when, host, text, raw is not None

    def count_raw(self, parsed: int, windowed: int) -> None:
        """Count one frame's texts that were whole raw lines (``parsed``) or content."""
        if self.raw_parser is None:
            return
        m = self.metrics
        m.raw_lines.labels(outcome="parsed").inc(parsed)
        m.raw_lines.labels(outcome="as_is").inc(windowed - parsed)
        self.raw_counts["parsed"] += parsed
        self.raw_counts["as_is"] += windowed - parsed

    def _retime(self, when: float, trusted_until: float) -> float | None:
        """The time to window a record whose event time ``when`` is not trusted: none
        (the windower places it at the current event time, as any record without
        one; see :mod:`.timecheck` for why), or before the windower has any, now."""
        reason = untrusted_time(when, trusted_until) or "future"
        self.metrics.retimed.labels(reason=reason).inc()
        self._log.warn(
            f"time:{reason}",
            "event time %r not trusted (%s; trusted until %.0f): windowed at the current "
            "event time",
            when,
            reason,
            trusted_until,
        )
        return None if self._watermark() is not None else self._wall()
