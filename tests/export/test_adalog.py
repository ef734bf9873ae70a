"""ADALog: preprocessing, the WordPiece tokenizer, the MLM detector, its bundle and export.

One tiny model (d 32, 1 layer) is trained once per module on generated BGL-like lines;
real BGL/Thunderbird lines are used where ``../shared/data`` exists (``-m data``).
"""

from __future__ import annotations

import inspect
import random
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from logsieve.bundle import Bundle, open_bundle
from logsieve.errors import BundleError, ConfigError
from logsieve.export.adalog.bundle import (
    AdaLogConfig,
    TextConfig,
    export_adalog_bundle,
    load_adalog,
    read_line_texts,
    score_lines,
    train_adalog_bundle,
)
from logsieve.export.adalog.model import AdaLogScorer, train_mlm
from logsieve.export.adalog.text import (
    CLS,
    SEP,
    UNK,
    Preprocessor,
    WordPieceTokenizer,
    pad_ids,
)
from logsieve.export.calibrate import threshold_from_normal
from logsieve.export.data.synth import generate_bgl, write_synth
from logsieve.export.evaluation.bundle_eval import evaluate_adalog

TINY = AdaLogConfig(
    d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=32, epochs=4, batch_size=64, seed=0
)
TINY_TEXT = TextConfig(vocab_size=200)


def _texts(tmp: Path, name: str, *, seed: int, rate: float = 0.0) -> tuple[list[str], np.ndarray]:
    path = tmp / name
    write_synth(generate_bgl(6, 900, seed=seed, anomaly_rate=rate), path)
    return read_line_texts(path, "bgl")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    tmp = tmp_path_factory.mktemp("adalog_data")
    normal, labels = _texts(tmp, "normal.log", seed=1)
    assert not labels.any()
    mixed, mixed_labels = _texts(tmp, "mixed.log", seed=2, rate=0.4)
    return {
        "train": normal[:1000],
        "val": normal[1000:1300],
        "anomalous": [t for t, y in zip(mixed, mixed_labels, strict=True) if y],
    }


@pytest.fixture(scope="module")
def bundle(synth: dict[str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("adalog") / "bundle"
    return train_adalog_bundle(synth["train"], synth["val"], out, TINY, text_cfg=TINY_TEXT)


def _random_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        " ".join("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(8))
        for _ in range(n)
    ]


# -- preprocessing and tokenizer ---------------------------------------------------------


@pytest.mark.data
def test_preprocessing_on_real_bgl_and_thunderbird_lines(shared_data: Path) -> None:
    texts, labels = read_line_texts(shared_data / "bgl" / "raw" / "BGL_2k.log", "bgl")
    assert len(texts) == 2000 and int(labels.sum()) == 143
    pre = Preprocessor(TextConfig())
    # Label, epoch, date and timestamp are gone; the rack location is one placeholder.
    assert pre.words(texts[0]) == [
        *("<NODE>", "<NODE>", "ras", "kernel", "info"),
        *("instruction", "cache", "parity", "error", "corrected"),
    ]
    words = [w for t in texts for w in pre.words(t)]
    assert "<TS>" not in words and texts[0][0] != "-"
    assert not [w for w in words if re.fullmatch(r"\d+", w)], "a number escaped masking"
    socket = next(t for t in texts if "ciostream socket to" in t.lower())
    assert "<IP>" in pre.words(socket)
    program = next(t for t in texts if "/p/gb" in t)
    assert "<PATH>" in pre.words(program)
    tok = WordPieceTokenizer.train([t for t, y in zip(texts, labels, strict=True) if not y])
    ids = [i for t in texts for i in tok.encode(t, 128)]
    assert ids.count(UNK) / len(ids) < 0.01
    tb, _ = read_line_texts(
        shared_data / "thunderbird" / "raw" / "Thunderbird_2k.log", "thunderbird"
    )
    first = pre.words(tb[0])
    assert first[:1] == ["dn228"] and "<TS>" not in first and "<NUM>" in first
    assert "nov" not in first  # the syslog "Nov 9 12:01:01" timestamp was removed


def test_preprocessing_on_generated_bgl_lines(synth: dict[str, list[str]]) -> None:
    pre = Preprocessor(TextConfig())
    for text in synth["train"][:300] + synth["anomalous"][:100]:
        words = pre.words(text)
        assert words[:2] == ["<NODE>", "<NODE>"], text
        assert not [w for w in words if re.fullmatch(r"\d+|0x[0-9a-f]+", w)], text
    ce = next(t for t in synth["train"] if " CE sym " in t)
    assert {"<HEX>", "<NUM>"} <= set(pre.words(ce))


def test_wordpiece_is_greedy_longest_match_first() -> None:
    tok = WordPieceTokenizer(TextConfig(), ["u", "un", "##n", "##a", "##able", "##b", "able"])
    assert tok.pieces(tok.encode("unable Able", 16)) == [
        "[CLS]", "un", "##able", "able", "[SEP]"]  # fmt: skip
    # No piece covers "x": the whole word is [UNK], not a partial match.
    assert tok.pieces(tok.encode("unx", 16)) == ["[CLS]", "[UNK]", "[SEP]"]
    assert tok.encode("0x1f 2005.06.03 12", 16) == [CLS, tok.tokens.index("<HEX>"),
                                                    tok.tokens.index("<NUM>"), SEP]  # fmt: skip


def test_encode_truncates_to_max_len_keeping_cls_and_sep() -> None:
    tok = WordPieceTokenizer.train(["alpha beta gamma"] * 3, TextConfig(vocab_size=64))
    ids = tok.encode(" ".join(["alpha beta gamma"] * 20), 10)
    assert len(ids) == 10 and ids[0] == CLS and ids[-1] == SEP
    assert tok.encode("", 10) == [CLS, SEP]
    with pytest.raises(ConfigError, match="max_len"):
        tok.encode("alpha", 1)


def test_tokenizer_training_is_deterministic_and_round_trips(
    synth: dict[str, list[str]],
) -> None:
    a = WordPieceTokenizer.train(synth["train"], TINY_TEXT)
    b = WordPieceTokenizer.train(list(synth["train"]), TINY_TEXT)
    assert a.tokens == b.tokens and a.size <= TINY_TEXT.vocab_size
    assert any(t.startswith("##") for t in a.tokens) and "instruction" in a.tokens
    back = WordPieceTokenizer.from_json(a.to_json())
    assert back.tokens == a.tokens and back.cfg == a.cfg
    lines = synth["val"][:50] + _random_lines(5)
    assert [back.encode(t, 32) for t in lines] == [a.encode(t, 32) for t in lines]
    with pytest.raises(BundleError, match="not valid JSON"):
        WordPieceTokenizer.from_json("{")
    with pytest.raises(BundleError, match=r"not a logsieve\.adalog\.wordpiece"):
        WordPieceTokenizer.from_json('{"format": "other"}')


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"adalog\.n_heads"):
        AdaLogConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match=r"adalog\.quantile"):
        AdaLogConfig(quantile=1.5)
    with pytest.raises(ConfigError, match=r"text\.vocab_size"):
        TextConfig(vocab_size=3)
    with pytest.raises(ConfigError, match="format"):
        read_line_texts("x.log", "hdfs")


# -- the detector ------------------------------------------------------------------------


def test_training_is_seeded_and_deterministic(synth: dict[str, list[str]]) -> None:
    tok = WordPieceTokenizer.train(synth["train"][:100], TINY_TEXT)
    ids = [tok.encode(t, 16) for t in synth["train"][:100]]
    cfg = AdaLogConfig(d_model=16, n_layers=1, n_heads=2, d_ff=16, max_len=16, epochs=1)
    runs = [train_mlm(ids, ids[:20], tok.size, tok.first_piece, cfg) for _ in range(2)]
    other = train_mlm(ids, ids[:20], tok.size, tok.first_piece, replace(cfg, seed=1))
    (a, sa), (b, sb) = runs
    assert sa["history"] == sb["history"] and sa["history"] != other[1]["history"]
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name


def test_scores_are_deterministic_across_loads_and_batches(
    bundle: Bundle, synth: dict[str, list[str]]
) -> None:
    lines = [*synth["val"][:40], synth["val"][0]]
    first, _ = score_lines(bundle, lines)
    again, _ = score_lines(open_bundle(bundle.path), lines)
    np.testing.assert_array_equal(first, again)
    assert first[0] == first[-1]  # the same line twice in one batch
    alone, _ = score_lines(bundle, [lines[5]])
    assert alone[0] == pytest.approx(first[5], rel=1e-5)  # padding/batch do not matter


def test_threshold_comes_from_normal_validation_scores_only(
    bundle: Bundle, synth: dict[str, list[str]]
) -> None:
    assert not [p for p in inspect.signature(train_adalog_bundle).parameters if "label" in p]
    t = bundle.manifest["threshold"]
    assert t["quantile"] == 0.9 and t["n_validation"] == len(synth["val"])
    val_scores, _ = score_lines(bundle, synth["val"])
    assert bundle.threshold == pytest.approx(threshold_from_normal(val_scores, 0.9), rel=1e-6)
    # Anomalies in the calibration set would have moved it: the check above can fail.
    bad, _ = score_lines(bundle, synth["anomalous"][: len(synth["val"])])
    mixed = threshold_from_normal(np.r_[val_scores, bad], 0.9)
    assert mixed > bundle.threshold * 1.01
    assert np.mean(val_scores > bundle.threshold) <= 0.1


def test_unseen_lines_score_above_normal_lines(bundle: Bundle, synth: dict[str, list[str]]) -> None:
    normal, _ = score_lines(bundle, synth["val"])
    unseen, evidence = score_lines(bundle, _random_lines(20))
    assert unseen.min() > bundle.threshold
    assert unseen.min() > np.quantile(normal, 0.99)
    assert len(evidence) == 20 and len(evidence[0].tokens) == len(evidence[0].nll) > 0
    top = evidence[0].top(2)
    assert top[0][1] >= top[1][1] >= 0.0
    report = evaluate_adalog(bundle, synth["val"] + _random_lines(20), [0] * 300 + [1] * 20)
    assert report["metrics"]["recall"] == 1.0 and report["metrics"]["roc_auc"] > 0.99


def test_bundle_round_trip_and_init_from(
    bundle: Bundle, synth: dict[str, list[str]], tmp_path: Path
) -> None:
    b = open_bundle(bundle.path)
    assert b.detector == "adalog" and {"model.pt", "tokenizer.json"} <= set(b.manifest["files"])
    assert b.manifest["model_args"]["encoder"]["d_model"] == 32
    assert b.manifest["preprocessing"]["masking"]["rules"][0]["name"] == "TS"
    assert b.log_config.max_len == TINY.max_len
    model, tok = load_adalog(b)
    assert tok.size == model.cfg.vocab_size == b.manifest["tokenizer"]["size"]
    # Zero epochs from the bundle's own checkpoint: same tokenizer, same weights, same scores.
    cfg = AdaLogConfig(epochs=0, init_from=str(b.path))
    again = train_adalog_bundle(synth["train"][:10], synth["val"], tmp_path / "b2", cfg)
    assert again.manifest["train"]["pretrained"] is True
    lines = synth["val"][:20]
    np.testing.assert_array_equal(score_lines(again, lines)[0], score_lines(b, lines)[0])
    assert again.threshold == b.threshold
    (tmp_path / "b2" / "tokenizer.json").write_text("{}")
    with pytest.raises(BundleError, match=r"tokenizer\.json"):
        open_bundle(tmp_path / "b2")


def test_exported_program_and_onnx_match_eager(
    bundle: Bundle, synth: dict[str, list[str]], tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "exported"
    shutil.copytree(bundle.path, path)
    exported = export_adalog_bundle(path, max_batch=64)
    assert exported.manifest["onnx"]["outputs"] == ["scores", "token_probs"]
    model, tok = load_adalog(exported)
    program = torch.export.load(exported.file("program.pt2")).module()
    session = ort.InferenceSession(
        str(exported.file("model.onnx")), providers=["CPUExecutionProvider"]
    )
    lines = synth["val"][:40] + synth["anomalous"][:10] + _random_lines(3)
    for part in (lines, lines[7:8], ["generating core.1"]):  # dynamic batch and length
        ids, lengths = pad_ids([tok.encode(t, model.cfg.max_len) for t in part])
        ti, tl = torch.from_numpy(ids), torch.from_numpy(lengths)
        with torch.no_grad():
            ref_s, ref_p = (x.numpy() for x in AdaLogScorer(model)(ti, tl))
            _, nll = model.score_nll(ti, tl)
            got = [tuple(x.numpy() for x in program(ti, tl))]
        got.append(tuple(session.run(["scores", "token_probs"], {"ids": ids, "lengths": lengths})))
        np.testing.assert_allclose(ref_p, 1.0 - np.exp(-nll.numpy()), atol=1e-6)
        assert (ref_p[np.arange(ref_p.shape[1]) >= lengths[:, None]] == 0).all()
        for scores, probs in got:
            assert scores.dtype == probs.dtype == np.float32 and probs.shape == ids.shape
            assert np.max(np.abs(scores - ref_s) / np.abs(ref_s)) <= 1e-4
            assert np.abs(probs - ref_p).max() <= 1e-4
