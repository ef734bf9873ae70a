"""FastLogAD training and calibration: losses, HST behaviour, determinism, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from logsieve.errors import ConfigError, DataError
from logsieve.export.calibrate import threshold_from_normal
from logsieve.export.evaluation.metrics import (
    average_precision,
    metrics,
    project_metrics,
    roc_auc,
)
from logsieve.export.fastlogad.model import Discriminator, ModelConfig
from logsieve.export.fastlogad.pseudo import random_replace
from logsieve.export.fastlogad.scoring import score_sequences
from logsieve.export.fastlogad.train import (
    TrainConfig,
    dedupe,
    hst_loss,
    log1m_exp_neg,
    rtd_loss,
    train,
)
from logsieve.logs.vocab import CLS, pad_batch

V = 12


def tiny() -> ModelConfig:
    return ModelConfig(vocab_size=V, d_model=16, n_layers=1, n_heads=2, d_ff=16, max_len=16,
                       dropout=0.0)  # fmt: skip


def normal_seqs(n: int, seed: int = 0) -> list[np.ndarray]:
    """Synthetic 'normal' sessions: one of three fixed shapes, with a repeated middle."""
    rng = np.random.default_rng(seed)
    shapes = [[4, 5, 6], [7, 8], [9, 10, 11]]
    out = []
    for _ in range(n):
        shape = shapes[int(rng.integers(3))]
        reps = int(rng.integers(1, 4))
        out.append(np.array([CLS, *shape[:1], *(shape[1:] * reps)], dtype=np.int64))
    return out


# --- losses ------------------------------------------------------------------------------


def test_hst_loss_matches_hand_computation() -> None:
    norms = torch.tensor([2.0, 0.5])
    y = torch.tensor([0.0, 1.0])
    # normal: 0.1·2 = 0.2; anomalous: -log(1 - e^-0.5) = 0.932752; mean 0.566376
    assert hst_loss(norms, y).item() == pytest.approx(0.566376, abs=1e-5)
    # paper form (s = 1), λ = 2: (2 + 2·0.932752) / 2
    assert hst_loss(norms, y, lambda_=2.0, normal_scale=1.0).item() == pytest.approx(
        1.932752, abs=1e-5
    )


def test_hst_anomaly_term_is_finite_near_zero() -> None:
    x = torch.tensor([0.0, 1e-12, 1e-3, 50.0], requires_grad=True)
    out = log1m_exp_neg(x)
    assert torch.all(torch.isfinite(out))
    assert out[2].item() == pytest.approx(math.log(1 - math.exp(-1e-3)), rel=1e-4)
    assert out[3].item() == pytest.approx(0.0, abs=1e-12)
    out.sum().backward()
    assert x.grad is not None and torch.all(torch.isfinite(x.grad))


def test_rtd_loss_matches_hand_computation() -> None:
    logits = torch.tensor([[0.0, 2.0, -1.0, 5.0]])
    replaced = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[False, True, True, False]])  # [CLS] and padding left out
    # (log(1 + e^-2) + log(1 + e^-1)) / 2
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2
    assert rtd_loss(logits, replaced, mask).item() == pytest.approx(expected, abs=1e-6)


# --- training ----------------------------------------------------------------------------


def test_train_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError) as err:
        TrainConfig(generator="gan")  # type: ignore[arg-type]
    assert err.value.field == "train.generator"
    with pytest.raises(ConfigError):
        TrainConfig(mask_ratio=0.0)
    with pytest.raises(ConfigError):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError):
        TrainConfig(device="tpu")


def test_dedupe_keeps_first_occurrences_in_order() -> None:
    a, b = np.array([CLS, 4, 5]), np.array([CLS, 6])
    assert [s.tolist() for s in dedupe([a, b, a.copy(), b, a])] == [a.tolist(), b.tolist()]


def test_train_rejects_bad_sequences() -> None:
    with pytest.raises(DataError, match=r"\[CLS\]"):
        train([np.array([4, 5])], [], V, tiny(), TrainConfig(rtd_epochs=0, hst_epochs=0))
    with pytest.raises(DataError, match="outside"):
        train([np.array([CLS, V])], [], V, tiny(), TrainConfig(rtd_epochs=0, hst_epochs=0))
    with pytest.raises(DataError, match="max_len"):
        train([np.array([CLS] + [4] * 20)], [], V, tiny(), TrainConfig(hst_epochs=0))


def test_hst_separates_normal_from_pseudo_anomalies() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=2, d_ff=32, max_len=16,
                      dropout=0.0)  # fmt: skip
    model = Discriminator(cfg).train()
    with torch.no_grad():  # start every [CLS] norm near 2, as after RTD, not near 0
        model.encoder.tok_emb.weight[CLS] *= 2.0 / model.encoder.tok_emb.weight[CLS].norm()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids, lengths = (torch.from_numpy(a) for a in pad_batch(normal_seqs(64)))
    g = torch.Generator().manual_seed(0)

    def mean_norms() -> tuple[float, float]:
        with torch.no_grad():
            corrupted, _ = random_replace(ids, V, 0.5, torch.Generator().manual_seed(99))
            clean = model.cls_norm(ids, lengths).mean().item()
            return clean, model.cls_norm(corrupted, lengths).mean().item()

    clean0, corrupt0 = mean_norms()
    for _ in range(40):
        corrupted, _ = random_replace(ids, V, 0.5, g)
        both = model.cls_norm(torch.cat([ids, corrupted]), torch.cat([lengths, lengths]))
        y = torch.cat([torch.zeros(len(ids)), torch.ones(len(ids))])
        loss = hst_loss(both, y, normal_scale=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    clean1, corrupt1 = mean_norms()
    assert clean1 < clean0
    assert corrupt1 > corrupt0
    assert corrupt1 > 3 * clean1


@pytest.mark.parametrize("generator", ["random", "mlm"])
def test_training_is_deterministic(generator: str) -> None:
    seqs, val = normal_seqs(40, seed=1), normal_seqs(10, seed=2)
    cfg = TrainConfig(generator=generator, rtd_epochs=1, hst_epochs=2, batch_size=8, seed=3,
                      num_threads=1)  # type: ignore[arg-type]  # fmt: skip
    a = train(seqs, val, V, tiny(), cfg, progress=False)
    b = train(seqs, val, V, tiny(), cfg, progress=False)
    assert a.n_train_raw == 40 and a.n_train == len(dedupe(seqs)) < 40
    assert len(a.history["rtd_loss"]) == 1 and len(a.history["hst_loss"]) == 2
    assert (len(a.history["mlm_loss"]) == 1) == (generator == "mlm")
    assert a.history == b.history
    np.testing.assert_array_equal(score_sequences(a.model, val), score_sequences(b.model, val))
    assert ModelConfig.from_dict(a.model_args) == tiny()
    assert not torch.are_deterministic_algorithms_enabled()  # global state restored


# --- calibration and metrics -------------------------------------------------------------


def test_score_sequences_keeps_input_order() -> None:
    torch.manual_seed(0)
    model = Discriminator(tiny()).eval()
    seqs = normal_seqs(23, seed=4)
    scores = score_sequences(model, seqs, batch_size=4)
    one_by_one = [score_sequences(model, [s])[0] for s in seqs]
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-5, atol=1e-6)


def test_threshold_is_a_quantile_of_normal_scores() -> None:
    scores = np.arange(1, 101, dtype=np.float64)  # 1..100
    assert threshold_from_normal(scores, tie_rtol=0) == 99.0  # 99 of 100 at or below
    assert threshold_from_normal(scores, 0.5, tie_rtol=0) == 50.0
    assert threshold_from_normal(scores, 1.0, tie_rtol=0) == 100.0
    assert threshold_from_normal(scores) == pytest.approx(99.0 * (1 + 1e-5))
    with pytest.raises(DataError):
        threshold_from_normal([])
    with pytest.raises(ConfigError):
        threshold_from_normal(scores, 1.5)


def test_threshold_does_not_split_a_plateau_of_identical_windows() -> None:
    # 95 distinct low scores, then one normal window repeated 5 times at the quantile,
    # re-scored elsewhere with float noise in the last bits: none of it is flagged.
    val = np.r_[np.linspace(0.01, 0.05, 95), np.full(5, 0.0822255984)]
    thr = threshold_from_normal(val, 0.99)
    assert np.all(np.array([0.0822255984, 0.0822256058]) <= thr)
    assert thr < 0.0823


def test_metrics_match_hand_computation() -> None:
    scores = [0.1, 0.4, 0.35, 0.8]
    labels = [0, 0, 1, 1]
    m = metrics(scores, labels, threshold=0.3)  # flags 0.4, 0.35, 0.8
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 1, 0, 1)
    assert m.precision == pytest.approx(2 / 3) and m.recall == 1.0
    assert m.f1 == pytest.approx(0.8) and m.fpr == 0.5
    assert m.roc_auc == pytest.approx(0.75)  # 3 of the 4 (pos, neg) pairs ordered right
    assert m.pr_auc == pytest.approx((1 + 2 / 3) / 2)  # P at R=0.5 is 1, at R=1 is 2/3


def test_auc_with_ties() -> None:
    scores = [0.5, 0.5, 0.5, 0.9]
    labels = [0, 1, 0, 1]
    # pairs: 0.9 beats both negatives (2), 0.5 ties both (2·0.5) -> 3/4
    assert roc_auc(scores, labels) == pytest.approx(0.75)
    # one step at 0.9 (P=1, R=.5), one at 0.5 covering the tie (P=2/4, R=1)
    assert average_precision(scores, labels) == pytest.approx(0.75)
    m = metrics(scores, labels, threshold=0.5)  # strict: the tied plateau is not flagged
    assert (m.tp, m.fp, m.fn, m.tn) == (1, 0, 1, 2)
    assert math.isnan(roc_auc([1.0, 2.0], [0, 0]))


def test_projection_to_another_class_ratio() -> None:
    m = metrics([0.1, 0.2, 0.9, 0.8, 0.05], [0, 0, 1, 1, 1], threshold=0.15)
    assert m.fpr == 0.5 and m.recall == pytest.approx(2 / 3)
    p = project_metrics(m, n_normal=1000, n_anomalous=300)
    assert p["tp"] == pytest.approx(200) and p["fp"] == pytest.approx(500)
    assert p["precision"] == pytest.approx(200 / 700)
