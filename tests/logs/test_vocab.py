"""Vocabulary: id mapping, JSON round trip, window encoding and batch padding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logsieve.errors import BundleError, ConfigError
from logsieve.logs.vocab import CLS, MASK, N_SPECIAL, PAD, UNK, Vocab, pad_batch


def test_special_ids_then_one_per_template() -> None:
    assert (PAD, CLS, MASK, UNK, N_SPECIAL) == (0, 1, 2, 3, 4)
    vocab = Vocab(3, ["a <NUM>", "b", "c"])
    assert vocab.size == len(vocab) == 7
    assert [vocab.token_id(t) for t in (0, 1, 2)] == [4, 5, 6]
    assert [vocab.template_id(i) for i in (CLS, 4, 6, 7)] == [None, 0, 2, None]


def test_unknown_template_ids_map_to_unk_and_are_counted() -> None:
    vocab = Vocab(3)
    assert vocab.token_id(-1) == UNK and vocab.token_id(3) == UNK
    ids = vocab.token_ids([0, -1, 2, 3, 99])
    assert ids.dtype == np.int64
    assert ids.tolist() == [4, UNK, 6, UNK, UNK]
    assert vocab.count_unknown([0, -1, 2, 3, 99]) == 3


@pytest.mark.parametrize("templates", [None, ["x", "y <IP>", "ünïcode"]])
def test_json_round_trip(templates: list[str] | None) -> None:
    vocab = Vocab(3, templates)
    text = vocab.to_json()
    assert json.loads(text)["schema_version"] == 1
    assert Vocab.from_json(text) == vocab
    assert Vocab.from_json(text.encode("utf-8")) == vocab


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected an object"),
        ('{"schema_version": 2}', "schema_version=2"),
        (
            '{"schema_version": 1, "special_tokens": ["[PAD]"], "n_templates": 1}',
            "special_tokens",
        ),
        (
            '{"schema_version": 1, "special_tokens": ["[PAD]", "[CLS]", "[MASK]", "[UNK]"],'
            ' "n_templates": -1}',
            "n_templates=-1",
        ),
        (
            '{"schema_version": 1, "special_tokens": ["[PAD]", "[CLS]", "[MASK]", "[UNK]"],'
            ' "n_templates": 2, "templates": ["only one"]}',
            "templates",
        ),
    ],
)
def test_bad_vocab_json_is_a_bundle_error(doc: str, needle: str) -> None:
    with pytest.raises(BundleError, match=needle):
        Vocab.from_json(doc)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ConfigError):
        Vocab(-1)
    with pytest.raises(ConfigError):
        Vocab(2, ["one"])


def test_encode_short_window_starts_with_cls() -> None:
    vocab = Vocab(10)
    (seq,) = vocab.encode([0, 5, -1], max_len=8)
    assert seq.dtype == np.int64
    assert seq.tolist() == [CLS, 4, 9, UNK]
    assert [s.tolist() for s in vocab.encode([], max_len=8)] == [[CLS]]


def test_encode_split_keeps_everything_in_balanced_chunks() -> None:
    vocab = Vocab(100)
    chunks = vocab.encode(list(range(10)), max_len=5, truncate="split")  # room 4: 3 chunks
    assert [c.tolist() for c in chunks] == [[CLS, 4, 5, 6, 7], [CLS, 8, 9, 10], [CLS, 11, 12, 13]]


def test_encode_recent_keeps_the_tail() -> None:
    vocab = Vocab(100)
    (seq,) = vocab.encode(list(range(10)), max_len=4, truncate="recent")
    assert seq.tolist() == [CLS, 11, 12, 13]
    (seq,) = vocab.encode([1, 2], max_len=2, truncate="recent")
    assert seq.tolist() == [CLS, 6]


def test_encode_rejects_bad_settings() -> None:
    vocab = Vocab(3)
    with pytest.raises(ConfigError):
        vocab.encode([0], max_len=1)
    with pytest.raises(ConfigError):
        vocab.encode([0], max_len=8, truncate="drop")  # type: ignore[arg-type]


@given(st.lists(st.integers(-2, 30), max_size=200), st.integers(2, 40))
def test_split_chunks_partition_the_window(ids: list[int], max_len: int) -> None:
    vocab = Vocab(25)
    chunks = vocab.encode(ids, max_len=max_len, truncate="split")
    assert all(c[0] == CLS and 2 <= len(c) <= max_len for c in chunks) or not ids
    body = np.concatenate([c[1:] for c in chunks]) if chunks else np.array([], np.int64)
    assert body.tolist() == vocab.token_ids(ids).tolist()
    sizes = [len(c) for c in chunks]
    assert max(sizes) - min(sizes) <= 1
    assert len(chunks) == max(1, -(-len(ids) // (max_len - 1)))


def test_pad_batch_pads_to_the_longest() -> None:
    seqs = [np.array([CLS, 4, 5], np.int64), np.array([CLS], np.int64)]
    batch, lengths = pad_batch(seqs)
    assert batch.dtype == np.int64 and lengths.dtype == np.int64
    assert batch.tolist() == [[CLS, 4, 5], [CLS, PAD, PAD]]
    assert lengths.tolist() == [3, 1]
    empty, no_lengths = pad_batch([])
    assert empty.shape == (0, 0) and no_lengths.shape == (0,)
