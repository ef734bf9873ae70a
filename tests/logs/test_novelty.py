"""New templates: grouped into patterns, judged by spread (drift vs incident), persisted."""

from __future__ import annotations

import json

import pytest

from logsieve.config import LogConfig, NoveltyConfig
from logsieve.errors import BundleError, ConfigError
from logsieve.logs.novelty import NoveltyTracker, is_novel, judge_offline, novel_index
from logsieve.logs.templates import UNKNOWN


def tracker(**kw: object) -> NoveltyTracker:
    config = LogConfig(novelty=NoveltyConfig(**kw))  # type: ignore[arg-type]
    return NoveltyTracker.for_config(config)


def line(t: NoveltyTracker, text: str, key: str) -> int:
    t.touch([key])
    return t.observe(text, [key], None)


def test_lines_differing_in_values_share_one_pattern() -> None:
    t = tracker()
    a = line(t, "Deleting block blk_1 file /data/1/blk_1", "blk_1")
    b = line(t, "Deleting block blk_2 file /data/7/blk_2", "blk_2")
    c = line(t, "Deleting chunk 17 of volume vol9 now", "blk_3")  # another length
    assert is_novel(a) and a == b != c
    assert t.patterns[novel_index(a)].count == 2 and t.patterns[novel_index(a)].n_keys == 2


def test_widespread_new_template_is_drift_rare_one_flags() -> None:
    t = tracker()  # admit_fraction 0.5, admit_min_keys 10
    drift = rare = 0
    for i in range(40):
        key = f"blk_{i}"
        t.touch([key])
        t.observe(f"Receiving block blk_{i} src: /10.0.0.1:1", [key], None)  # context
        drift = line(t, f"Deleting block blk_{i} file /d/blk_{i}", key)
        if i % 13 == 0:
            rare = line(t, f"Unexpected error trying to delete block blk_{i}.", key)
    window = [drift, rare, drift]
    judged = t.judge(window)
    assert judged.rare == [False, True, False] and judged.known == []
    assert judged.patterns[1] is not None and "Unexpected error" in judged.patterns[1]
    assert t.judge([drift]).rare == [False]
    stats = t.stats()
    assert stats["admitted"] == 1 and stats["windows_rare"] == 1
    assert stats["windows_drift_only"] == 1 and stats["patterns_admitted"] == 1


def test_a_late_pattern_on_few_keys_stays_rare() -> None:
    # Shows up at the end, when only 4 keys are still active: 4 of 4 is not drift.
    t = tracker()
    for i in range(100):
        t.touch([f"blk_{i}"])
    ids = [line(t, f"addStoredBlock blk_{i} does not belong to any file", f"blk_{i}")
           for i in range(96, 100)]  # fmt: skip
    assert t.judge(ids[:1]).rare == [True]


def test_on_a_small_fleet_the_minimum_is_capped() -> None:
    t = tracker()
    hosts = ["h1", "h2", "h3", "h4"]
    tid = 0
    for h in hosts:
        tid = line(t, "new cron job ran ok", h)
    assert t.judge([tid]).rare == [False]  # on 4 of 4 hosts: drift, not 4 of 10


def test_known_lines_are_what_the_model_scores() -> None:
    t = tracker()
    new = line(t, "something never seen", "k")
    judged = t.judge([3, new, 0])
    assert judged.known == [0, 2] and judged.rare == [False, True, False]


def test_untracked_lines_past_the_cap_count_as_rare() -> None:
    t = tracker(max_patterns=1)
    assert is_novel(line(t, "first new thing", "a"))
    assert line(t, "a completely different second line here", "a") == UNKNOWN
    assert t.judge([UNKNOWN]).rare == [True] and t.counts["lines_untracked"] == 1


def test_reports_once_per_pattern_and_once_more_when_admitted() -> None:
    t = tracker(admit_min_keys=2)
    tid = line(t, "new thing happened", "a")
    t.judge([tid])
    first = t.reports()
    assert [r["status"] for r in first] == ["new"] and t.reports() == []
    assert first[0]["first_line"] == "new thing happened" and first[0]["keys"] == 1
    line(t, "new thing happened", "b")
    t.judge([tid])
    (again,) = t.reports()
    assert again["status"] == "admitted" and again["keys"] == 2
    json.dumps([*first, again], allow_nan=False)


def test_state_round_trip_keeps_admitted_patterns() -> None:
    t = tracker(admit_min_keys=2)
    tid = line(t, "new thing happened", "a")
    line(t, "new thing happened", "b")
    assert t.judge([tid]).rare == [False]
    state = json.loads(json.dumps(t.state()))
    restored = tracker(admit_min_keys=2)
    restored.load_state(state)
    again = line(restored, "new thing happened", "c")
    assert again == tid and restored.judge([again]).rare == [False]
    with pytest.raises(BundleError, match="novelty state"):
        restored.load_state({"kind": "other"})
    with pytest.raises(BundleError, match="malformed"):
        restored.load_state({**state, "patterns": [{"tokens": 5}]})


def test_offline_judgement_of_pre_parsed_windows() -> None:
    windows = [["E20"]] + [["E7"]] * 6 + [[]] * 3
    rare = judge_offline(windows, NoveltyConfig(admit_min_keys=3))
    assert rare == [1] + [0] * 6 + [0] * 3  # E7 in 6 of 10 windows: drift


@pytest.mark.parametrize(
    "kw", [{"admit_fraction": 0.0}, {"admit_fraction": 1.5}, {"admit_min_keys": 0},
           {"max_patterns": True}],
)  # fmt: skip
def test_novelty_config_is_validated(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="novelty"):
        NoveltyConfig(**kw)  # type: ignore[arg-type]


def test_novelty_table_round_trips_through_the_manifest_form() -> None:
    config = LogConfig.from_dict({"novelty": {"admit_fraction": 0.25}})
    assert config.novelty.admit_fraction == 0.25 and config.unseen_templates == "novelty"
    assert LogConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"novelty\.typo"):
        LogConfig.from_dict({"novelty": {"typo": 1}})
