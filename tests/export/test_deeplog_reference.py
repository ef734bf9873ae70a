"""DeepLog as wuyifan18/DeepLog runs it (``DeepLogConfig.reference``, issue 18).

Normal sessions walk a cycle of ten keys from its first key for 12-20 steps, so every
one is longer than the history (10) and each key is fixed by the one before it. The
anomaly is a *prefix*: the first three keys of a normal session, then nothing. Key by
key it is perfectly normal, so our variant (``short_windows="score"``) cannot flag it;
the reference pads it with a key the model never predicts, so it is flagged at every g.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from logsieve.errors import ConfigError
from logsieve.export.baselines import DeepLog, DeepLogConfig
from logsieve.logs.vocab import CLS, N_SPECIAL

CYCLE = list(range(N_SPECIAL, N_SPECIAL + 10))  # token ids 4..13
V = N_SPECIAL + 12  # two templates never seen in training


def session(n: int) -> np.ndarray:
    return np.array([CLS, *(CYCLE[i % 10] for i in range(n))], dtype=np.int64)


def normal(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [session(int(rng.integers(12, 21))) for _ in range(count)]


TRAIN, VAL, TEST = normal(120, 1), normal(30, 2), normal(60, 3)
PREFIX = session(3)  # a normal start that ends early
# g = 2 of 16 ids: passing normal sessions needs a trained model, not a lenient g.
SMALL = {"hidden": 32, "batch_size": 64, "lr": 1e-2, "epochs": 25, "g": 2}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference() -> DeepLog:
    b = DeepLog(DeepLogConfig.reference(V, **SMALL))
    b.fit(TRAIN, VAL)
    return b


@pytest.fixture(scope="module")
def ours() -> DeepLog:
    cfg = DeepLogConfig(V, embed_dim=16, threshold_rule="paper", **SMALL)
    b = DeepLog(cfg)
    b.fit(TRAIN, VAL)
    return b


def test_reference_settings_are_the_public_codes() -> None:
    cfg = DeepLogConfig.reference(V)
    assert (cfg.history, cfg.g, cfg.n_layers, cfg.hidden) == (10, 9, 2, 64)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.patience) == (300, 2048, 1e-3, 0)
    assert (cfg.short_windows, cfg.key_input, cfg.merge_pairs) == ("pad", "scalar", False)
    assert cfg.threshold_rule == "paper"


def test_padding_flags_a_prefix_session_the_unpadded_variant_passes(
    reference: DeepLog, ours: DeepLog
) -> None:
    # Both pass normal sessions and both catch a wrong key after a full history.
    for b in (reference, ours):
        assert not b.predict(TEST).any(), b.cfg.short_windows
        broken = session(15)
        broken[12] = CYCLE[(11 + 5) % 10]  # key 12 jumps ahead in the cycle
        assert b.predict([broken]).all(), b.cfg.short_windows
    assert not ours.predict([PREFIX]).any()
    assert reference.predict([PREFIX]).all()
    # Flagged at every g: the padding key is never a candidate.
    assert reference.score([PREFIX])[0] > V
    # The rule is the session's length: 10 keys are padded, 11 are judged by the model.
    assert reference.predict([session(10)]).all()
    assert not reference.predict([session(11)]).any()


def test_reference_trains_only_full_histories_on_the_full_pair_list(reference: DeepLog) -> None:
    rows, _ = reference._pairs(TRAIN)
    assert len(rows) == sum(len(w) - 1 - 10 for w in TRAIN)  # duplicates kept
    assert not np.isin(rows, [CLS, 0]).any()  # no [CLS], no [PAD]
    assert not hasattr(reference.model, "emb")  # the key id is the LSTM's one feature


def test_reference_config_round_trips(reference: DeepLog, tmp_path: Path) -> None:
    reference.save(tmp_path / "ref.pt")
    back = DeepLog.load(tmp_path / "ref.pt")
    assert back.cfg == reference.cfg
    windows = [*TEST[:5], PREFIX]
    np.testing.assert_array_equal(back.score(windows), reference.score(windows))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"short_windows": "drop"}, "deeplog.short_windows"),
        ({"key_input": "onehot"}, "deeplog.key_input"),
        ({"merge_pairs": 1}, "deeplog.merge_pairs"),
    ],
)
def test_reference_fields_are_validated(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        DeepLogConfig.reference(V, **overrides)
    assert err.value.field == field
