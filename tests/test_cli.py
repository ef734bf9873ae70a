"""The CLI surface: --version, and every command documents itself with an example."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from logsieve import __version__
from logsieve.cli.main import main


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_group_help_lists_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in main.commands:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_with_an_example(name: str) -> None:
    command = main.commands[name]
    assert isinstance(command, click.Command)
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`logsieve {name} --help` shows no example"
    assert f"logsieve {name}" in result.output


def test_synth_templates_windows_on_generated_logs(tmp_path: Path) -> None:
    runner = CliRunner()
    log = tmp_path / "hdfs.log"
    labels = tmp_path / "labels.csv"
    result = runner.invoke(
        main, ["synth", "hdfs", str(log), "--size", "60", "--labels", str(labels)]
    )
    assert result.exit_code == 0, result.output
    assert log.stat().st_size > 0 and labels.read_text().startswith("BlockId,Label")

    state = tmp_path / "state.json"
    result = runner.invoke(main, ["templates", "--format", "hdfs", str(log), "--out", str(state)])
    assert result.exit_code == 0, result.output
    assert "Receiving block <BLK> src: /<IP> dest: /<IP>" in result.output
    assert json.loads(state.read_text())["schema_version"] == 1

    result = runner.invoke(main, ["windows", "--format", "hdfs", str(log), "--limit", "0"])
    assert result.exit_code == 0, result.output
    keys = {line.split("\t")[0] for line in result.stdout.splitlines()}
    assert keys == {row.split(",")[0] for row in labels.read_text().splitlines()[1:]}
    assert "windows (all lines parsed)" in result.stderr

    # Times the format cannot read are said on stderr, not silently windowed at 0.
    apache = tmp_path / "access.log"
    apache.write_text(
        "".join(f"web{i % 2} [01/Mar/2026:10:00:{i:02d} +0000] GET /\n" for i in range(8))
    )
    pattern = r"(?P<host>\S+) \[(?P<time>[^\]]+)\] (?P<text>.*)"
    result = runner.invoke(
        main, ["windows", "--format", "lines", "--pattern", pattern, str(apache)]
    )
    assert result.exit_code == 0, result.output
    assert "bad_time=8" in result.stderr


def test_demo_trains_once_then_flags_injected_anomalies(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["demo", "--cache", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "training the demo model" in result.output
    assert "FLAG blk_" in result.output
    # The summary counts what was printed: each flag once, plus the new-pattern records.
    summary = re.search(
        r"(\d+) records acked upstream \((\d+) flags, (\d+) new-pattern records\)",
        result.output,
    )
    assert summary is not None, result.output
    acked, flags, patterns = map(int, summary.groups())
    assert flags == result.output.count("FLAG blk_") and acked == flags + patterns
    rows = {
        line.rsplit(None, 2)[0].strip(): (int(line.split()[-2]), int(line.split()[-1]))
        for line in result.output.splitlines()
        if line.startswith("  ") and line.split()[-1].isdigit() and line.split()[-2].isdigit()
    }
    normal_n, normal_flagged = rows.pop("normal (false flags)")
    injected = sum(n for n, _ in rows.values())
    caught = sum(f for _, f in rows.values())
    assert injected > 0 and normal_n > 0
    # The model must separate: a far higher share of injected blocks is flagged.
    assert caught / injected > 2 * normal_flagged / normal_n
    again = runner.invoke(main, ["demo", "--cache", str(tmp_path)])
    assert again.exit_code == 0 and "training the demo model" not in again.output


def test_domain_errors_become_clean_messages(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("hello\n")
    result = CliRunner().invoke(main, ["templates", "--format", "lines", str(log)])
    assert result.exit_code == 1
    assert "Error: pattern=None" in result.output
    assert "Traceback" not in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[log.windows]\nkind = 'tumbling'\n")
    result = CliRunner().invoke(main, ["windows", str(log), "--config", str(bad)])
    assert result.exit_code == 1
    assert "Error: windows.kind='tumbling'" in result.output
