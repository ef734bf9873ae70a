"""Streaming text lines out of log files, with counters for everything odd.

Every dataset reader is built on :func:`iter_lines`: it reads the file in binary
line by line (never the whole file), so CRLF endings, stray non-UTF-8 bytes,
empty lines and absurdly long lines all get one defined outcome each, counted
on a :class:`ReadStats` the caller may pass in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from logsieve.errors import DataError

__all__ = ["DEFAULT_MAX_LINE_BYTES", "ReadStats", "iter_lines"]

# A log line over 64 KiB is a stack dump or a binary blob, not a message to
# template: keep its head (enough to template) and skip the rest unread.
DEFAULT_MAX_LINE_BYTES = 64 * 1024
_SKIP_CHUNK = 1 << 16
_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class ReadStats:
    """Counters a reader fills in while it streams a file.

    Pass one instance as ``stats=`` to any reader (or several, it accumulates).

    - ``lines``: physical lines read (including skipped ones).
    - ``records``: records or sequences yielded.
    - ``empty``: empty or whitespace-only lines, skipped.
    - ``decode_errors``: lines with bytes that are not UTF-8 (decoded with U+FFFD).
    - ``truncated``: lines longer than the byte limit, cut to the limit.
    - ``unparsed``: lines that did not match the format; yielded with the whole
      line as text and no time (raw readers) — see each reader.
    - ``bad_time``: lines whose time field matched but could not be converted.
    - ``paths``: files read, in order.
    - ``first_bad``: ``file:line: why: text`` of the first unparsed or bad-time line.
    """

    lines: int = 0
    records: int = 0
    empty: int = 0
    decode_errors: int = 0
    truncated: int = 0
    unparsed: int = 0
    bad_time: int = 0
    paths: list[str] = field(default_factory=list)
    first_bad: str | None = None

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for manifests and reports)."""
        return {
            "lines": self.lines,
            "records": self.records,
            "empty": self.empty,
            "decode_errors": self.decode_errors,
            "truncated": self.truncated,
            "unparsed": self.unparsed,
            "bad_time": self.bad_time,
        }


def _cut_at_char_boundary(raw: bytes, limit: int) -> bytes:
    """First ``limit`` bytes of ``raw``, backed off so no UTF-8 character is split."""
    cut = limit
    # A continuation byte (10xxxxxx) right after the cut means we are inside a
    # multi-byte character; at most 3 steps back reach its lead byte.
    while cut > 0 and cut > limit - 4 and (raw[cut] & 0xC0) == 0x80:
        cut -= 1
    return raw[:cut]


def iter_lines(
    path: str | Path,
    stats: ReadStats | None = None,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-empty line of ``path``.

    Line numbers are 1-based physical lines. ``\\n`` and ``\\r\\n`` endings are
    stripped (a lone ``\\r`` inside a line is kept), a UTF-8 byte-order mark at
    the start is dropped, undecodable bytes become U+FFFD (counted once per
    line), empty/whitespace-only lines are skipped (counted), and a line over
    ``max_line_bytes`` is cut to that many bytes (counted; the rest of the line
    is consumed in chunks and never held in memory).

    Raises :class:`DataError` naming the file when it cannot be opened.
    """
    st = stats if stats is not None else ReadStats()
    p = Path(path)
    st.paths.append(str(p))
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise DataError(f"{p}: cannot open: {exc.strerror or exc}") from exc
    with fh:
        lineno = 0
        while True:
            raw = fh.readline(max_line_bytes + 1)
            if not raw:
                return
            lineno += 1
            st.lines += 1
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                st.truncated += 1
                raw = _cut_at_char_boundary(raw, max_line_bytes)
                while True:
                    rest = fh.readline(_SKIP_CHUNK)
                    if not rest or rest.endswith(b"\n"):
                        break
            else:
                raw = raw.rstrip(b"\n").rstrip(b"\r")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                st.decode_errors += 1
                text = raw.decode("utf-8", errors="replace")
            if not text or text.isspace():
                st.empty += 1
                continue
            yield lineno, text
