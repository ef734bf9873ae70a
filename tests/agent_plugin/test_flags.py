"""Flag records: fields, evidence ordering, stable ids, pass-through enrichment."""

from __future__ import annotations

import copy
import json
from typing import Any

import msgpack
import pytest

from logsieve.agent_plugin.flags import DEFAULT_FLAG_TAG, FlagBuilder, build_flag, enrich
from logsieve.verdict import ScoredWindow, Verdict, make_flag_id, verdict_of


def window(score: float = 0.9, threshold: float = 0.5, **kw: Any) -> ScoredWindow:
    base: dict[str, Any] = {
        "key": "blk_-1608999687919862906",
        "start": 1226218519.0,
        "end": 1226218583.5,
        "lines": ["recv blk A", "served blk A", "EXCEPTION blk A", "deleted blk A"],
        "template_ids": [3, 7, 42, 9],
        "templates": ["recv <BLK>", "served <BLK>", "EXCEPTION <BLK>", "deleted <BLK>"],
        "score": score,
        "threshold": threshold,
        "token_probs": [0.10, 0.40, 0.95, 0.40],
    }
    base.update(kw)
    return ScoredWindow(**base)


def test_a_rare_new_template_flags_the_window_and_leads_the_evidence() -> None:
    w = window(score=0.1, rare_new=[False, False, False, True])
    assert w.anomaly and w.reasons == ["rare_new_template"]
    rec = build_flag(w, model_id="m", detector="fastlogad", top_k=2)
    assert rec["verdict"] == "anomaly" and rec["reasons"] == ["rare_new_template"]
    assert rec["evidence"][0]["line"] == w.lines[3]
    assert not window(score=0.1, rare_new=[False] * 4).anomaly


def test_flag_record_fields() -> None:
    w = window()
    rec = build_flag(w, model_id="hdfs-fastlogad-1", detector="fastlogad", top_k=2)
    assert set(rec) == {
        "flag_id", "key", "window_start", "window_end", "lines", "score", "threshold",
        "model_id", "detector", "verdict", "reasons", "evidence",
    }  # fmt: skip
    assert rec["reasons"] == ["score"]
    assert rec["key"] == w.key
    assert (rec["window_start"], rec["window_end"]) == (1226218519.0, 1226218583.5)
    assert rec["lines"] == 4
    assert (rec["score"], rec["threshold"]) == (0.9, 0.5)
    assert (rec["model_id"], rec["detector"], rec["verdict"]) == (
        "hdfs-fastlogad-1",
        "fastlogad",
        "anomaly",
    )
    assert rec["flag_id"] == make_flag_id("hdfs-fastlogad-1", w.key, w.start, w.end, w.lines)
    assert rec["evidence"][0] == {
        "line": "EXCEPTION blk A",
        "template": "EXCEPTION <BLK>",
        "template_id": 42,
        "prob": 0.95,
    }
    # every value is plain msgpack material (str keys, python scalars)
    assert msgpack.unpackb(msgpack.packb(rec, use_bin_type=True), raw=False) == rec


def test_evidence_is_top_k_by_probability_ties_in_window_order() -> None:
    rec = build_flag(window(), model_id="m", detector="d", top_k=3)
    assert [e["template_id"] for e in rec["evidence"]] == [42, 7, 9]  # 0.40 tie: earlier first
    assert [e["prob"] for e in rec["evidence"]] == [0.95, 0.40, 0.40]
    everything = build_flag(window(), model_id="m", detector="d", top_k=10)
    assert len(everything["evidence"]) == 4
    assert [e["template_id"] for e in everything["evidence"]][-1] == 3
    assert build_flag(window(), model_id="m", detector="d", top_k=0)["evidence"] == []


def test_flag_id_is_stable_and_distinguishes_windows() -> None:
    a = make_flag_id("m1", "host-a", 100.25, 160.5)
    assert a == make_flag_id("m1", "host-a", 100.25, 160.5)
    assert len(a) == 32 and int(a, 16) >= 0
    # a resend of the same window (a fresh object, same identity) has the same id
    again = build_flag(window(score=0.99), model_id="m1", detector="d")
    assert build_flag(window(), model_id="m1", detector="d")["flag_id"] == again["flag_id"]
    others = {
        make_flag_id("m2", "host-a", 100.25, 160.5),
        make_flag_id("m1", "host-b", 100.25, 160.5),
        make_flag_id("m1", "host-a", 100.26, 160.5),
        make_flag_id("m1", "host-a", 100.25, 160.0),
        make_flag_id("m1", "host-a1", 00.25, 160.5),
    }
    assert a not in others and len(others) == 5


def test_flag_id_tells_apart_windows_of_one_block_with_the_same_bounds() -> None:
    # Issue 16: two windows of one block, 3 and 10 lines, records out of order over two
    # connections, share first and last times; they got one id and a consumer that
    # drops repeats by it lost a verdict.
    lines = [f"Receiving block blk_1 src: /10.0.0.{i}:1" for i in range(10)]
    short = make_flag_id("m", "blk_1", 100.0, 160.0, [lines[0], lines[5], lines[9]])
    long = make_flag_id("m", "blk_1", 100.0, 160.0, lines)
    assert short != long
    # The same lines in another order (a replay) keep the id.
    assert long == make_flag_id("m", "blk_1", 100.0, 160.0, list(reversed(lines)))


def test_builder_emits_normal_windows_only_with_every_verdict() -> None:
    normal = window(score=0.5, threshold=0.5)  # not above the threshold
    assert FlagBuilder("m", "d").build(normal) is None
    rec = FlagBuilder("m", "d", every_verdict=True).build(normal)
    assert rec is not None and rec["verdict"] == "normal"
    flagged = FlagBuilder("m", "d").build(window())
    assert flagged is not None and flagged["verdict"] == "anomaly"
    assert FlagBuilder("m", "d").tag == DEFAULT_FLAG_TAG == "logsieve.flag"


def test_enrich_adds_verdict_keys_without_mutating_input() -> None:
    record = {"log": "EXCEPTION blk A", "kubernetes": {"pod": "dn-1"}}
    before = copy.deepcopy(record)
    verdict = verdict_of(window(), "m")
    out = enrich(record, verdict)
    assert record == before and "logsieve_verdict" not in record
    assert out["logsieve_verdict"] == "anomaly"
    assert out["logsieve_score"] == 0.9
    assert out["logsieve_flag_id"] == make_flag_id(
        "m", window().key, 1226218519.0, 1226218583.5, window().lines
    )
    assert out["log"] == record["log"] and out["kubernetes"] == {"pod": "dn-1"}
    assert out is not record
    assert enrich({b"raw": b"\xff"}, Verdict("normal", 0.1, "x"))[b"raw"] == b"\xff"


@pytest.mark.parametrize(
    "kw",
    [
        {"template_ids": [1, 2]},
        {"templates": ["a"]},
        {"token_probs": [0.1, 0.2, 0.3]},
        {"start": 10.0, "end": 5.0},
        {"start": float("nan")},
    ],
)
def test_scored_window_rejects_misaligned_or_bad_input(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="ScoredWindow"):
        window(**kw)


def test_negative_top_k_is_rejected() -> None:
    with pytest.raises(ValueError, match="top_k"):
        FlagBuilder("m", "d", top_k=-1)
    with pytest.raises(ValueError, match="top_k"):
        build_flag(window(), model_id="m", detector="d", top_k=-1)


def test_unseen_lines_lead_the_evidence() -> None:
    # The line no training template matched (-1) explains the flag best, even with a
    # lower replaced-token probability than a known line.
    w = window(template_ids=[3, -1, 42, 9], token_probs=[0.10, 0.20, 0.95, 0.40])
    rec = build_flag(w, model_id="m", detector="fastlogad", top_k=2)
    assert [e["template_id"] for e in rec["evidence"]] == [-1, 42]


def test_records_are_valid_json_when_the_score_is_not_finite() -> None:
    unseen = window(score=float("inf"), template_ids=[3, -1, 42, 9])
    record = build_flag(unseen, model_id="m", detector="fastlogad")
    assert record["score"] is None and record["score_reason"] == "unseen_template"
    assert record["verdict"] == "anomaly"
    json.dumps(record, allow_nan=False)
    nan = build_flag(window(score=float("nan"), token_probs=[0.1, float("nan"), 0.2, 0.3]),
                     model_id="m", detector="fastlogad")  # fmt: skip
    assert nan["score"] is None and nan["score_reason"] == "not_finite"
    assert nan["verdict"] == "normal"  # NaN is never above a threshold
    json.dumps(nan, allow_nan=False)
    assert enrich({"log": "x"}, verdict_of(unseen, "m"))["logsieve_score"] is None
