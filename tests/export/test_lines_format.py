"""``--dataset lines`` on a user's own logs: time formats, the format stored in the
bundle, training refusing a file it cannot parse, and the BGL walkthrough giving the
same windows with epoch and with ISO timestamps."""

from __future__ import annotations

import calendar
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from logsieve.bundle import open_bundle
from logsieve.cli.main import main
from logsieve.config import LineFormat
from logsieve.errors import ConfigError, DataError
from logsieve.export.data.formats import default_log_config
from logsieve.export.data.offline import mine_file, window_file
from logsieve.export.data.prepare import prepare
from logsieve.logs.templates import TemplateMatcher

APP = r"(?P<time>\S+ \S+) (?P<host>\S+) (?P<text>.*)"
START = calendar.timegm((2024, 1, 2, 3, 0, 0))
# The BGL layout as a `lines` pattern: label, time, date, node, timestamp, node, type,
# component, level, content (what `--format bgl` reads, written as a user would).
BGL_PATTERN = r"\S+ (?P<time>{t}) \S+ (?P<host>\S+) \S+ \S+ \S+ \S+ \S+ (?P<text>.*)"


def app_log(path: Path, n: int = 600, bad: tuple[int, ...] = ()) -> Path:
    """An app log with Hadoop-style times (``2024-01-02 03:00:00,250``) on two hosts."""
    lines = []
    for i in range(n):
        t = datetime.fromtimestamp(START + 2 * i + 0.25, timezone.utc)
        stamp = t.strftime("%Y-%m-%d %H:%M:%S,") + f"{t.microsecond // 1000:03d}"
        msg = "GET /items/%d 200 in %d ms" if i % 3 else "cache miss for key k%d after %d ms"
        lines.append(f"{stamp} web{i % 2} {msg % (i, i % 50)}")
    for i in bad:
        lines[i] = f"garbled line {i} without a time"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_lines_training_detects_the_time_format_and_dates_windows_really(
    tmp_path: Path,
) -> None:
    data = prepare("lines", app_log(tmp_path / "app.log"), pattern=APP)
    assert data.log_config.line_format == LineFormat("lines", APP, "iso8601")
    assert data.summary["read"]["bad_time"] == 0
    config = default_log_config("lines")
    windows = list(window_file(tmp_path / "app.log", "lines", config, pattern=APP))
    assert windows and {w.key for w in windows} == {"web0", "web1"}
    assert min(w.start for w in windows) >= START - 300  # 2024, not 1970
    assert max(w.end for w in windows) <= START + 1200 + 300


def test_training_refuses_a_file_most_of_whose_lines_do_not_parse(tmp_path: Path) -> None:
    path = app_log(tmp_path / "app.log")
    # The pattern does not fit: the first line is named, with its text.
    with pytest.raises(DataError, match=r"app\.log:1: does not match .*'2024-01-02 03:00:00,250"):
        prepare("lines", path, pattern=r"(?P<host>\S+) \[(?P<time>[^]]+)\] (?P<text>.*)")
    # The pattern fits but the time group holds no time.
    with pytest.raises(
        DataError, match=r"600 of 600 lines did not parse .*bad_time=600.*app\.log:1"
    ):
        prepare("lines", path, pattern=r"\S+ (?P<time>\S+) (?P<host>\S+) (?P<text>.*)")
    # A given time format that does not fit the lines is the same error.
    with pytest.raises(DataError, match=r"app\.log:1: time does not read \(format epoch\)"):
        prepare("lines", path, pattern=APP, time_format="epoch")


def test_sliding_windows_need_a_time_group(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="time"):
        prepare("lines", app_log(tmp_path / "app.log"), pattern=r"\S+ \S+ (?P<host>\S+) ")


def test_a_few_bad_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    data = prepare("lines", app_log(tmp_path / "app.log", bad=(5, 7)), pattern=APP)
    # They match the pattern, but "garbled line" is no time.
    assert (data.summary["read"]["unparsed"], data.summary["read"]["bad_time"]) == (0, 2)


def test_bundle_keeps_the_format_and_score_needs_no_pattern(tmp_path: Path) -> None:
    path = app_log(tmp_path / "app.log")
    bundle_dir = tmp_path / "bundle"
    common = ["--d-model", "32", "--layers", "1", "--rtd-epochs", "1", "--hst-epochs", "1"]
    result = CliRunner().invoke(
        main,
        ["train", "--dataset", "lines", "--data", str(path), "--pattern", APP,
         "--out", str(bundle_dir), "--no-export", "--threads", "1", *common],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    bundle = open_bundle(bundle_dir)
    assert bundle.line_format == LineFormat("lines", APP, "iso8601")
    scored = CliRunner().invoke(main, ["score", "--bundle", str(bundle_dir), str(path), "--all"])
    assert scored.exit_code == 0, scored.output
    verdicts = [ln for ln in scored.output.splitlines() if ln.startswith(("ok ", "FLAG "))]
    assert verdicts and all(" web" in ln for ln in verdicts)


def _iso_copy(src: Path, dst: Path, style: str) -> None:
    with src.open(encoding="utf-8") as f, dst.open("w", encoding="utf-8") as out:
        for line in f:
            label, epoch, rest = line.split(" ", 2)
            t = datetime.fromtimestamp(int(epoch), timezone.utc)
            stamp = (
                t.strftime("%Y-%m-%dT%H:%M:%S.000Z") if style == "T"
                else t.strftime("%Y-%m-%d %H:%M:%S,000")
            )  # fmt: skip
            out.write(f"{label} {stamp} {rest}")


@pytest.mark.data
@pytest.mark.parametrize(("style", "time_group"), [("T", r"\S+"), ("space", r"\S+ \S+")])
def test_bgl_walkthrough_gives_the_same_windows_with_iso_timestamps(
    shared_data: Path, tmp_path: Path, style: str, time_group: str
) -> None:
    src = shared_data / "bgl/raw/BGL_5000.log"
    iso = tmp_path / "BGL_5000_iso.log"
    _iso_copy(src, iso, style)
    epoch_pattern = BGL_PATTERN.format(t=r"\d+")
    iso_pattern = BGL_PATTERN.format(t=time_group)
    config = default_log_config("lines")
    matcher = TemplateMatcher.from_state(
        mine_file(src, "lines", config, pattern=epoch_pattern).state()
    )

    def windows(path: Path, pattern: str) -> list[tuple[str, float, float, list[str]]]:
        got = window_file(path, "lines", config, pattern=pattern, matcher=matcher)
        return [(w.key, w.start, w.end, [e.text for e in w.items]) for w in got]

    by_epoch = windows(src, epoch_pattern)
    by_iso = windows(iso, iso_pattern)
    assert len(by_epoch) > 100
    assert by_iso == by_epoch
    assert min(start for _, start, _, _ in by_epoch) > 1.1e9  # 2005, not 1970
    # Training reads both the same way and stores each file's own time format.
    a = prepare("lines", src, pattern=epoch_pattern)
    b = prepare("lines", iso, pattern=iso_pattern)
    assert a.log_config.line_format is not None and b.log_config.line_format is not None
    assert (a.log_config.line_format.time_format, b.log_config.line_format.time_format) == (
        "epoch", "iso8601",
    )  # fmt: skip
    assert a.summary["read"] == b.summary["read"]
    assert (a.summary["train_windows"], a.summary["test_windows"]) == (
        b.summary["train_windows"], b.summary["test_windows"],
    )  # fmt: skip
    assert a.vocab == b.vocab
