"""Baselines (DeepLog, LogBERT, IsolationForest) on a small synthetic task, and their rules.

Normal windows are four fixed key patterns whose middle block repeats 1-3 times (one
pattern is shorter than DeepLog's history); anomalies are windows with a key never
seen in training, reversed patterns and mixtures of patterns. Models are tiny so the
file runs in well under a minute on one core.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from logsieve.errors import BundleError, ConfigError
from logsieve.export.baselines import (
    Baseline,
    DeepLog,
    DeepLogConfig,
    IForest,
    IForestConfig,
    LogBERT,
    LogBERTConfig,
    oracle_threshold,
    score_chunked,
    select_threshold,
)
from logsieve.export.baselines.deeplog import next_key_scores
from logsieve.export.baselines.logbert import miss_fraction
from logsieve.export.calibrate import threshold_from_normal
from logsieve.export.evaluation.metrics import metrics
from logsieve.logs.vocab import CLS

V = 48  # 44 templates; normal windows use tokens 4..29, 40+ are never seen in training
PATTERNS = [
    ([4, 5, 6], [7, 8], [9, 10, 11]),
    ([12, 13], [14], [15, 16, 17, 18]),
    ([19, 20, 21, 22], [23, 24, 25], [26]),
    ([27], [28], [29]),  # 3-5 keys: shorter than DeepLog's history + 1
]
DEEPLOG = DeepLogConfig(V, embed_dim=16, hidden=32, epochs=60, batch_size=256, lr=1e-2)
LOGBERT = LogBERTConfig(
    V, d_model=32, n_layers=1, n_heads=2, d_ff=64, dropout=0.0, epochs=40, lr=3e-3
)
IFOREST = IForestConfig(V)


def window(keys: list[int]) -> np.ndarray:
    return np.array([CLS, *keys], dtype=np.int64)


def normal(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pre, loop, post = PATTERNS[rng.integers(len(PATTERNS))]
        out.append(window(pre + loop * int(rng.integers(1, 4)) + post))
    return out


def sequence_anomalies() -> list[np.ndarray]:
    """Per pattern: one key replaced by a never-seen key, and the pattern reversed."""
    rng = np.random.default_rng(4)
    out = []
    for i, (pre, loop, post) in enumerate(PATTERNS):
        keys = pre + loop * 2 + post
        unseen = list(keys)
        unseen[int(rng.integers(len(keys)))] = 40 + i
        out += [window(unseen), window(keys[::-1])]
    return out


def mixed_anomalies() -> list[np.ndarray]:
    """Two different patterns in one window: template counts no normal window has."""
    return [
        window(a[0] + a[1] + a[2] + b[0] + b[1] + b[2])
        for a in PATTERNS
        for b in PATTERNS
        if a is not b
    ]


TRAIN, VAL, TEST = normal(200, 1), normal(60, 2), normal(200, 3)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def deeplog() -> DeepLog:
    b = DeepLog(DEEPLOG)
    b.fit(TRAIN, VAL)
    return b


@pytest.fixture(scope="module")
def logbert() -> LogBERT:
    b = LogBERT(LOGBERT)
    b.fit(TRAIN, VAL)
    return b


@pytest.fixture(scope="module")
def iforest() -> IForest:
    b = IForest(IFOREST)
    b.fit(TRAIN, VAL)
    return b


# --- (a) normal data passes, (b) obvious anomalies are flagged -------------------------


@pytest.mark.parametrize("name", ["deeplog", "logbert"])
def test_sequence_models_pass_normal_and_flag_anomalies(
    name: str, request: pytest.FixtureRequest
) -> None:
    b: Baseline = request.getfixturevalue(name)
    assert b.predict(TEST).mean() <= 0.01
    flagged = b.predict(sequence_anomalies())
    assert flagged.mean() >= 0.85, flagged
    # Short windows (fewer keys than DeepLog's history) are scored, not always flagged.
    short_normal = [window([27, 28, 29]), window([27, 28, 28, 28, 29])]
    assert not b.predict(short_normal).any()
    assert b.predict([window([27, 41, 29])]).all()
    # Continuous scores: every anomaly it can see scores above every held-out normal window.
    # DeepLog sees every key. LogBERT judges only the keys it masks (a fixed ~65% of the
    # positions of a window of that length): a never-seen key left unmasked, or a reversed
    # pattern whose masked keys all stay in the top g, scores 0 like every normal window
    # (with seed 0: the reversed [29, 28, 28, 27]). A never-seen key at a masked position
    # cannot be among the top g, so those windows must rank above every normal one
    # (2-4 of the 4 over seeds 0-2; all 4 with seed 0).
    visible = sequence_anomalies()
    if isinstance(b, LogBERT):
        visible = [w for w in visible if (w >= 40)[b.masked_positions(len(w))].any()]
        assert len(visible) >= 2
    assert b.score(visible).min() > b.score(TEST).max()
    m = metrics(
        np.r_[b.score(TEST), b.score(sequence_anomalies())],
        np.r_[np.zeros(len(TEST)), np.ones(len(sequence_anomalies()))],
        b.threshold,
    )
    assert m.roc_auc >= 0.9


def test_iforest_passes_normal_and_flags_count_outliers(iforest: IForest) -> None:
    assert iforest.predict(TEST).mean() <= 0.05
    # Every pattern at once, loops at their longest: counts no normal window comes near.
    everything = window([k for p in PATTERNS for k in p[0] + p[1] * 3 + p[2]])
    assert iforest.predict([everything]).all()
    # Pairs of patterns rank above normal windows, though most stay under the threshold:
    # isolation needs sparse regions, and these sit near the patterns they mix.
    mixed = mixed_anomalies()
    labels = np.r_[np.zeros(len(TEST)), np.ones(len(mixed))]
    m = metrics(np.r_[iforest.score(TEST), iforest.score(mixed)], labels, iforest.threshold)
    assert m.roc_auc >= 0.75


def test_chunked_windows_score_as_their_worst_chunk(deeplog: DeepLog) -> None:
    chunks = [[TEST[0]], [TEST[1], sequence_anomalies()[0]]]
    s = score_chunked(deeplog, chunks)
    single = deeplog.score([TEST[0], TEST[1], sequence_anomalies()[0]])
    assert s[0] == single[0] and s[1] == max(single[1], single[2])


# --- (c) thresholding rules ------------------------------------------------------------


def test_deeplog_key_score_crosses_g_exactly_at_rank_g_plus_one() -> None:
    logits = -torch.arange(20, dtype=torch.float32).repeat(3, 1)  # key k has rank k + 1
    logits[2, 5] = logits[2, 4]  # a tie counts in the true key's favour
    g = 9
    s = next_key_scores(logits, torch.tensor([g - 1, g, 5]))  # ranks g, g + 1, 5
    assert s[0] <= g < s[1]
    assert 4.0 < s[2] <= 5.0  # keys 0-3 rank above; key 4 ties, so key 5 ranks 5th, not 6th


class FixedLogits(nn.Module):
    """Stands in for a network head: every input gets logits ``-arange(V)``."""

    def forward(self, x: Tensor) -> Tensor:
        return -torch.arange(V, dtype=torch.float32).expand(x.shape[0], V)


def test_deeplog_flags_a_window_iff_some_key_ranks_below_g() -> None:
    b = DeepLog(DeepLogConfig(V, epochs=1, threshold_rule="paper"))
    b.fit(TRAIN[:20], VAL[:5])
    assert b.threshold == 9.0
    b.model = FixedLogits()  # the LSTM's logits, whatever the history
    # Token k ranks k + 1: token 8 is the 9th candidate (kept), token 9 the 10th (missed).
    ok, bad = window([4, 8, 5]), window([4, 9, 5])
    assert b.predict([ok, bad]).tolist() == [False, True]
    assert b.score([ok])[0] <= 9.0 < b.score([bad])[0]


def test_logbert_miss_fraction_counts_keys_outside_top_g() -> None:
    logits = -torch.arange(20, dtype=torch.float32).repeat(4, 1)
    # Row 0: ranks 6 and 7 (g = 6: one miss of two); row 1: rank 1, 2 (no miss).
    frac = miss_fraction(logits, torch.tensor([5, 6, 0, 1]), torch.tensor([0, 0, 1, 1]), 2, 6)
    assert frac.tolist() == [0.5, 0.0]


def test_logbert_flags_more_than_r_misses_not_exactly_r() -> None:
    b = LogBERT(LogBERTConfig(V, d_model=16, n_layers=1, n_heads=2, d_ff=16, epochs=1, r=0.5,
                              threshold_rule="fixed"))  # fmt: skip
    b.fit(TRAIN[:20], VAL[:5])
    assert b.threshold == 0.5
    b.model.mlm_head = FixedLogits()  # token k ranks k + 1: misses the top 6 iff k >= 6
    n = 12
    masked = np.nonzero(b.masked_positions(n))[0]
    assert len(masked) >= 2
    half = len(masked) // 2 if len(masked) % 2 == 0 else (len(masked) - 1) // 2
    for n_miss, expect in [(half, False), (half + 1, True)]:
        keys = np.full(n, 4, dtype=np.int64)
        keys[0] = CLS
        keys[masked[:n_miss]] = 30  # rank 31 > 6
        s = b.score([keys])[0]
        assert s == n_miss / len(masked)
        assert b.predict([keys])[0] == expect == (s > 0.5)


def test_validation_thresholds_are_the_smallest_with_fpr_at_most_1pct(
    deeplog: DeepLog, logbert: LogBERT
) -> None:
    g = deeplog.thresholds["validation"]
    val = deeplog.score(VAL)
    assert g == int(g) and np.mean(val > g) <= 0.01
    assert g == 1 or np.mean(val > g - 1) > 0.01
    assert deeplog.thresholds["paper"] == 9.0
    r = logbert.thresholds["validation"]
    assert r == select_threshold(logbert.score(VAL), 0.01, np.r_[0.0, logbert.score(VAL)])
    assert select_threshold([0, 1, 2, 3], 0.25, [0, 1, 2, 3]) == 2.0
    assert select_threshold([0, 1, 2, 3], 0.0, [0, 1, 2, 3]) == 3.0


def test_iforest_threshold_is_the_validation_quantile(iforest: IForest) -> None:
    assert iforest.threshold == threshold_from_normal(iforest.score(VAL), 0.99)
    assert np.mean(iforest.score(VAL) > iforest.threshold) <= 0.01


# --- (d) determinism and save/load -----------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "cfg"), [(DeepLog, DEEPLOG), (LogBERT, LOGBERT), (IForest, IFOREST)]
)
def test_fixed_seed_is_repeatable_and_save_load_round_trips(
    cls: type[DeepLog | LogBERT | IForest], cfg: object, tmp_path: Path
) -> None:
    small = {"epochs": 5} if cls is not IForest else {}
    cfg = type(cfg)(**{**cfg.__dict__, **small})
    probe = sequence_anomalies() + TEST[:20]
    before = torch.get_rng_state()
    a, b = cls(cfg), cls(cfg)
    a.fit(TRAIN[:80], VAL)
    b.fit(TRAIN[:80], VAL)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    assert np.array_equal(a.score(probe), b.score(probe))
    other = cls(type(cfg)(**{**cfg.__dict__, "seed": 1}))
    other.fit(TRAIN[:80], VAL)
    assert not np.array_equal(a.score(probe), other.score(probe))
    a.save(tmp_path / "b.pt")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["kind"] == cls.name
    loaded = cls.load(tmp_path / "b.pt")
    assert np.array_equal(loaded.score(probe), a.score(probe))
    assert loaded.thresholds == a.thresholds and loaded.threshold == a.threshold


def test_load_rejects_another_baseline_or_junk(deeplog: DeepLog, tmp_path: Path) -> None:
    deeplog.save(tmp_path / "d.pt")
    with pytest.raises(BundleError, match="not 'logbert'"):
        LogBERT.load(tmp_path / "d.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BundleError):
        DeepLog.load(tmp_path / "junk.pt")


# --- (e) the oracle is separate, labelled, and never the default -----------------------


def test_oracle_is_labelled_and_never_the_default(
    deeplog: DeepLog, logbert: LogBERT, iforest: IForest
) -> None:
    anomalies = sequence_anomalies()
    labels = np.r_[np.zeros(len(TEST)), np.ones(len(anomalies))]
    for b in (deeplog, logbert, iforest):
        # fit() takes no labels; every stored threshold is label-free.
        assert list(inspect.signature(b.fit).parameters) == ["train", "validation"]
        assert b.threshold_rule == "validation" and "oracle" not in b.thresholds
        before = dict(b.thresholds)
        scores = np.r_[b.score(TEST), b.score(anomalies)]
        choice = oracle_threshold(scores, labels, b.threshold_candidates(scores))
        assert choice.oracle and "oracle" in choice.label
        assert b.thresholds == before  # asking the oracle changes nothing
        assert choice.f1 == pytest.approx(metrics(scores, labels, choice.threshold).f1)
        assert choice.f1 >= metrics(scores, labels, b.threshold).f1
    # DeepLog's oracle picks an integer g.
    s = np.r_[deeplog.score(TEST), deeplog.score(anomalies)]
    assert oracle_threshold(s, labels, deeplog.threshold_candidates(s)).threshold % 1 == 0


def test_oracle_picks_the_best_f1_threshold() -> None:
    choice = oracle_threshold([0.1, 0.2, 0.3, 0.9, 0.8, 0.35], [0, 0, 0, 1, 1, 1])
    assert choice.threshold == 0.3 and choice.f1 == 1.0
    assert choice.precision == 1.0 and choice.recall == 1.0


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: DeepLogConfig(V, g=0), "deeplog.g"),
        (lambda: DeepLogConfig(V, threshold_rule="oracle"), "deeplog.threshold_rule"),
        (lambda: DeepLogConfig(V, max_fpr=1.5), "deeplog.max_fpr"),
        (lambda: LogBERTConfig(V, mask_ratio=0.0), "logbert.mask_ratio"),
        (lambda: LogBERTConfig(V, threshold_rule="fixed"), "logbert.r"),
        (lambda: LogBERTConfig(V, d_model=30), "model.n_heads"),
        (lambda: IForestConfig(V, quantile=2.0), "iforest.quantile"),
        (lambda: IForestConfig(2), "iforest.vocab_size"),
    ],
)
def test_configs_are_validated(build: object, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        build()  # type: ignore[operator]
    assert err.value.field == field


# --- real data (opt-in) ----------------------------------------------------------------


@pytest.mark.data
def test_deeplog_on_real_hdfs_sessions(shared_data: Path) -> None:
    """A short DeepLog run on HDFS: the label-free g keeps false alarms rare.

    Recall stays well below the published figures: DeepLog has no end-of-session
    prediction, so anomalous sessions that merely stop early (common in HDFS) look
    normal key by key; the popular implementation "catches" many of them only through
    its quirk of flagging every session of <= 10 keys.
    """
    from logsieve.export.data.prepare import prepare

    path = shared_data / "hdfs" / "sessions"
    if not path.is_dir():
        pytest.skip(f"HDFS sessions not found at {path}")
    data = prepare("hdfs-sessions", path)
    b = DeepLog(DeepLogConfig(data.vocab.size, epochs=8, lr=1e-2))
    b.fit(data.train, data.validation)
    m = metrics(score_chunked(b, data.test), data.test_labels, b.threshold)
    assert m.fpr <= 0.02 and m.precision >= 0.95 and m.recall >= 0.5, m
