"""Config dataclasses: validation names the field, JSON round trip, TOML loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from logsieve.config import LogConfig, MaskRule, TemplateConfig, WindowConfig, load_log_config
from logsieve.config_file import SERVE_TABLES, deep_merge
from logsieve.errors import ConfigError, LogsieveError


def test_defaults_round_trip_through_json_form() -> None:
    cfg = LogConfig()
    assert LogConfig.from_dict(cfg.to_dict()) == cfg


def test_custom_config_round_trips() -> None:
    cfg = LogConfig(
        text_fields=("msg",),
        windows=WindowConfig(kind="sliding", key_field="host", key_regex=None, size=60, step=30),
        templates=TemplateConfig(depth=5, sim_th=0.5),
        max_len=128,
        truncate="recent",
    )
    assert LogConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: WindowConfig(kind="tumbling"), "windows.kind"),  # type: ignore[arg-type]
        (lambda: WindowConfig(step=600, size=300), "windows.step"),
        (lambda: WindowConfig(idle_timeout=0), "windows.idle_timeout"),
        (lambda: WindowConfig(key_field=None, key_regex=None), "windows.key_regex"),
        (lambda: WindowConfig(key_regex="blk_(("), "windows.key_regex"),
        (lambda: TemplateConfig(sim_th=1.5), "templates.sim_th"),
        (lambda: LogConfig(max_len=1), "max_len"),
        (lambda: LogConfig(truncate="drop"), "truncate"),  # type: ignore[arg-type]
        (lambda: LogConfig(text_fields=()), "text_fields"),
        (lambda: MaskRule("num", r"\d+"), "mask_rule.name"),
        (lambda: MaskRule("NUM", r"(\d+"), "mask_rule[NUM].pattern"),
    ],
)
def test_bad_values_name_the_field(make: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()  # type: ignore[operator]
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}=")
    assert isinstance(info.value, LogsieveError)


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"windows\.sise"):
        LogConfig.from_dict({"windows": {"sise": 3}})


def test_toml_loading(tmp_path: Path) -> None:
    path = tmp_path / "log.toml"
    path.write_text(
        '[log]\ntext_fields = ["message"]\nmax_len = 256\n'
        '[log.windows]\nkind = "sliding"\nkey_field = "host"\nsize = 60.0\nstep = 30.0\n'
        '[[log.masking.rules]]\nname = "NUM"\npattern = "\\\\d+"\n'
    )
    cfg = load_log_config(path)
    assert cfg.text_fields == ("message",)
    assert cfg.windows.kind == "sliding" and cfg.windows.step == 30.0
    assert [r.name for r in cfg.masking.rules] == ["NUM"]


def test_missing_or_broken_toml_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="an existing TOML file"):
        load_log_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[log\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_log_config(bad)


def test_masking_settings_survive_the_round_trip() -> None:
    from logsieve.config import MaskingConfig

    cfg = LogConfig(masking=MaskingConfig(rules=(MaskRule("NUM", r"\d+"),), max_line_chars=100))
    assert LogConfig.from_dict(cfg.to_dict()) == cfg


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "log.toml"
    path.write_text(text)
    return path


def test_a_log_table_overrides_only_the_keys_it_names(tmp_path: Path) -> None:
    """The issue's case: only ``unseen_templates`` given, over the HDFS preset."""
    from logsieve.export.data.formats import default_log_config

    preset = default_log_config("hdfs")
    assert preset.windows.idle_timeout == 86_400.0 and preset.templates.depth == 5
    cfg = load_log_config(_toml(tmp_path, '[log]\nunseen_templates = "score"\n'), preset)
    assert cfg.unseen_templates == "score"
    assert cfg == dataclasses.replace(preset, unseen_templates="score")


def test_nested_tables_merge_key_by_key_and_lists_replace(tmp_path: Path) -> None:
    from logsieve.export.data.prepare import dataset_log_config

    preset = dataset_log_config("hdfs-sessions")
    path = _toml(
        tmp_path,
        '[log]\ntext_fields = ["msg"]\n[log.windows]\nmax_lines = 50\n'
        "[log.templates]\nsim_th = 0.7\n[log.masking]\nmax_line_chars = 100\n",
    )
    cfg = load_log_config(path, preset)
    assert cfg.text_fields == ("msg",)  # a list replaces the preset's
    assert cfg.windows == dataclasses.replace(preset.windows, max_lines=50)
    assert cfg.templates == dataclasses.replace(preset.templates, sim_th=0.7)
    assert cfg.masking.rules == preset.masking.rules and cfg.masking.max_line_chars == 100
    # A table the merge has no code for (any config field) layers the same way.
    novelty = load_log_config(_toml(tmp_path, "[log.novelty]\nadmit_min_keys = 5\n"), preset)
    assert novelty.novelty == dataclasses.replace(preset.novelty, admit_min_keys=5)
    assert novelty.windows == preset.windows
    rules = load_log_config(
        _toml(tmp_path, '[[log.masking.rules]]\nname = "NUM"\npattern = "\\\\d+"\n'), preset
    )
    assert [r.name for r in rules.masking.rules] == ["NUM"]  # the rule list replaces
    assert rules.masking.max_line_chars == preset.masking.max_line_chars


def test_deep_merge_is_generic() -> None:
    base = {"a": 1, "t": {"x": 1, "y": [1, 2], "u": {"p": 1}}, "l": [1]}
    over = {"t": {"y": [3], "u": {"q": 2}, "new": True}, "l": [], "b": None}
    assert deep_merge(base, over) == {
        "a": 1, "t": {"x": 1, "y": [3], "u": {"p": 1, "q": 2}, "new": True}, "l": [], "b": None,
    }  # fmt: skip
    assert base["t"] == {"x": 1, "y": [1, 2], "u": {"p": 1}}  # inputs untouched


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        ('[lgo]\nunseen_templates = "score"\n', "lgo", "only [log] in "),
        ("[server]\nport = 1\n[log]\nmax_len = 64\n", "server", "belongs in a serve config"),
        ('unseen_templates = "score"\n', "unseen_templates", "only [log] in "),
        ('[log]\nunseen_template = "score"\n', "log.unseen_template", "a known setting"),
        ("[log.windows]\nidle_timout = 5\n", "windows.idle_timout", "a known setting"),
        ("[log.templates]\ndepht = 5\n", "templates.depht", "a known setting"),
        ("[log.windows]\nidle_timeout = -1\n", "windows.idle_timeout", "seconds > 0"),
        ("", "log", "a [log] table in "),
        ("# only a comment\n", "log", "(it has none)"),
    ],
)
def test_a_bad_log_config_file_is_an_error_naming_file_and_table(
    tmp_path: Path, text: str, field: str, says: str
) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_log_config(path, LogConfig())
    assert info.value.field == field
    assert says in str(info.value) and str(path) in str(info.value)


def test_a_serve_config_refuses_a_log_table(tmp_path: Path) -> None:
    from logsieve.agent_plugin.serve_config import _TABLES, load_serve_settings

    assert tuple(_TABLES) == SERVE_TABLES
    path = _toml(tmp_path, "[server]\nport = 25000\n[log]\nmax_len = 64\n")
    with pytest.raises(ConfigError, match=r"\[log\] belongs in a log config") as info:
        load_serve_settings(path)
    assert info.value.field == "log" and str(path) in str(info.value)


@pytest.mark.parametrize("command", ["train", "templates", "windows"])
def test_every_log_config_command_rejects_a_misspelt_table(tmp_path: Path, command: str) -> None:
    from click.testing import CliRunner

    from logsieve.cli.main import main

    log = tmp_path / "x.log"
    log.write_text("081109 203615 148 INFO dfs.DataNode$PacketResponder: blk_1 terminating\n")
    path = _toml(tmp_path, '[lgo]\nunseen_templates = "score"\n')
    args = {
        "train": ["train", "--dataset", "hdfs", "--data", str(log), "--out", str(tmp_path / "b")],
        "templates": ["templates", str(log)],
        "windows": ["windows", str(log)],
    }[command]
    result = CliRunner().invoke(main, [*args, "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert "Error: lgo=" in result.output and "only [log] in" in result.output
    assert not (tmp_path / "b").exists()
