"""Config dataclasses: validation names the field, JSON round trip, TOML loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from logsieve.config import LogConfig, MaskRule, TemplateConfig, WindowConfig, load_log_config
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
