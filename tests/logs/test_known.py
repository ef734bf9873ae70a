"""Windows the training data held verbatim are normal whatever the model scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from logsieve.config import LogConfig
from logsieve.errors import BundleError
from logsieve.logs.known import KnownWindows, chunk_key
from logsieve.logs.vocab import Vocab
from logsieve.verdict import ScoredWindow


def test_a_window_is_known_only_when_every_chunk_is() -> None:
    vocab = Vocab(5)
    config = LogConfig(max_len=4)  # [CLS] + 3 ids per chunk
    train = [[0, 1, 2], [3, 4]]
    known = KnownWindows.of_chunks(
        c for w in train for c in vocab.encode(w, config.max_len, config.truncate)
    )
    assert known.holds_ids([0, 1, 2], vocab, config)
    assert not known.holds_ids([0, 2, 1], vocab, config)  # same lines, other order
    assert not known.holds_ids([0, 1], vocab, config)  # a prefix is another window
    assert not known.holds_ids([], vocab, config)
    # A long window is split as the engine splits it: [0, 1, 2] + [3, 4], both seen.
    assert known.holds_ids([0, 1, 2, 3, 4], vocab, config)
    assert not known.holds_ids([0, 1, 2, 4, 3], vocab, config)


def test_chunk_key_is_stable_and_dtype_blind() -> None:
    a = chunk_key(np.array([1, 4, 5], dtype=np.int64))
    assert a == chunk_key([1, 4, 5]) == chunk_key(np.array([1, 4, 5], dtype=np.int32))
    assert a != chunk_key([1, 5, 4]) and len(a) == 16


def test_round_trip_and_corrupt_forms() -> None:
    known = KnownWindows.of_chunks([[1, 4], [1, 5, 6]])
    again = KnownWindows.from_json(json.loads(json.dumps(known.to_json())))
    assert again.keys == known.keys and len(again) == 2
    for bad in ({"kind": "x"}, {**known.to_json(), "schema_version": 9},
                {**known.to_json(), "keys": [1, 2]}):  # fmt: skip
        with pytest.raises(BundleError, match="known windows"):
            KnownWindows.from_json(bad)


def test_seen_in_training_overrides_the_score_not_a_rare_new_template() -> None:
    base = {
        "key": "blk_1", "start": 0.0, "end": 1.0, "lines": ["a", "b"],
        "template_ids": [0, 1], "templates": ["a", "b"], "score": 2.0, "threshold": 1.0,
        "token_probs": [0.1, 0.2],
    }  # fmt: skip
    assert ScoredWindow(**base).reasons == ["score"]  # type: ignore[arg-type]
    seen = ScoredWindow(**base, seen_in_training=True)  # type: ignore[arg-type]
    assert not seen.anomaly and seen.reasons == []
    rare = ScoredWindow(**base, seen_in_training=True, rare_new=[False, True])  # type: ignore[arg-type]
    assert rare.anomaly and rare.reasons == ["rare_new_template"]
