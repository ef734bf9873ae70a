"""FastLogAD model and pseudo-anomaly generators: shapes, padding, sampling, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from logsieve.errors import BundleError, ConfigError
from logsieve.export.fastlogad.model import (
    Discriminator,
    Generator,
    ModelConfig,
    load_checkpoint,
    load_discriminator,
    save_checkpoint,
)
from logsieve.export.fastlogad.pseudo import (
    choose_positions,
    complement_replace,
    mask_for_mlm,
    random_replace,
)
from logsieve.logs.vocab import CLS, MASK, N_SPECIAL, PAD, UNK, pad_batch

V = 12  # 8 templates


def tiny(vocab_size: int = V) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, d_model=16, n_layers=2, n_heads=2, d_ff=16,
                       max_len=32, dropout=0.0)  # fmt: skip


def seq(*tokens: int) -> np.ndarray:
    return np.array([CLS, *tokens], dtype=np.int64)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"vocab_size": 5}, "model.vocab_size"),
        ({"vocab_size": V, "d_model": 10, "n_heads": 4}, "model.n_heads"),
        ({"vocab_size": V, "n_layers": 0}, "model.n_layers"),
        ({"vocab_size": V, "dropout": 1.0}, "model.dropout"),
        ({"vocab_size": V, "max_len": True}, "model.max_len"),
    ],
)
def test_model_config_rejects_bad_values(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        ModelConfig(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_model_config_round_trips_through_dict() -> None:
    cfg = tiny()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_padding_does_not_change_score() -> None:
    torch.manual_seed(0)
    model = Discriminator(tiny()).eval()
    short = seq(4, 5, 6)
    long = seq(7, 8, 9, 10, 11, 4, 5, 6, 7)
    alone_ids, alone_len = pad_batch([short])
    batch_ids, batch_len = pad_batch([long, short])
    with torch.no_grad():
        s_alone, p_alone = model.score(torch.from_numpy(alone_ids), torch.from_numpy(alone_len))
        s_batch, p_batch = model.score(torch.from_numpy(batch_ids), torch.from_numpy(batch_len))
    assert s_batch.shape == (2,) and p_batch.shape == batch_ids.shape
    torch.testing.assert_close(s_batch[1], s_alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p_batch[1, : len(short)], p_alone[0], atol=1e-5, rtol=1e-5)
    assert torch.all(p_batch[1, len(short) :] == 0)
    assert torch.all((p_batch[0] > 0) & (p_batch[0] < 1))


def test_cls_norm_is_the_score() -> None:
    torch.manual_seed(0)
    model = Discriminator(tiny()).eval()
    ids, lengths = (torch.from_numpy(a) for a in pad_batch([seq(4, 5), seq(6, 7, 8)]))
    with torch.no_grad():
        h, _ = model(ids, lengths)
        scores, _ = model.score(ids, lengths)
        torch.testing.assert_close(scores, model.cls_norm(ids, lengths))
    torch.testing.assert_close(scores, h[:, 0].norm(dim=-1))


def test_generator_returns_logits_at_chosen_positions() -> None:
    torch.manual_seed(0)
    gen = Generator(tiny())
    ids, lengths = (torch.from_numpy(a) for a in pad_batch([seq(4, 5, 6, 7), seq(8, 9)]))
    masked, chosen = mask_for_mlm(ids, 0.5, torch.Generator().manual_seed(0))
    assert torch.all(masked[chosen] == MASK)
    assert gen(masked, lengths, chosen).shape == (int(chosen.sum()), V)


def test_choose_positions_skips_specials_and_counts() -> None:
    g = torch.Generator().manual_seed(1)
    ids, _ = pad_batch([seq(4, 5, 6, 7, 8, 9), seq(4, UNK, 5), seq(UNK), seq(4)])
    ids_t = torch.from_numpy(ids)
    for _ in range(50):
        chosen = choose_positions(ids_t, 0.5, g)
        assert not torch.any(chosen & (ids_t < N_SPECIAL))
        # round(0.5·n), at least one: 6 -> 3, 2 -> 1, 0 -> 0, 1 -> 1
        assert chosen.sum(dim=1).tolist() == [3, 1, 0, 1]


def test_random_generator_never_emits_true_token_or_specials() -> None:
    g = torch.Generator().manual_seed(0)
    rows = [seq(*np.random.default_rng(i).integers(N_SPECIAL, V, size=i + 3)) for i in range(20)]
    ids = torch.from_numpy(pad_batch(rows)[0])
    seen: set[int] = set()
    for _ in range(100):
        corrupted, replaced = random_replace(ids, V, 0.5, g)
        changed = corrupted != ids
        assert torch.equal(replaced.bool(), changed)
        assert torch.all(corrupted[changed] >= N_SPECIAL) and torch.all(corrupted < V)
        assert torch.all(corrupted[ids < N_SPECIAL] == ids[ids < N_SPECIAL])  # CLS/PAD kept
        seen.update(corrupted[changed].tolist())
    assert seen == set(range(N_SPECIAL, V))  # uniform over all real tokens eventually


def test_complement_sampler_never_emits_specials() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.from_numpy(pad_batch([seq(4, 5, 6, 7, 8, 9, 10, 11)] * 8)[0])
    chosen = choose_positions(ids, 0.5, g)
    n = int(chosen.sum())
    # Worst case for leaking: the MLM puts all its mass on the special tokens.
    logits = torch.full((n, V), -10.0)
    logits[:, :N_SPECIAL] = 10.0
    for _ in range(50):
        corrupted, replaced = complement_replace(ids, chosen, logits, g)
        assert torch.all(corrupted[chosen] >= N_SPECIAL)
        assert torch.equal(replaced.bool(), corrupted != ids)
        assert torch.all(corrupted[~chosen] == ids[~chosen])


def test_complement_sampler_avoids_a_confident_true_token() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.from_numpy(pad_batch([seq(4, 5, 6, 7, 8, 9)] * 16)[0])
    chosen = choose_positions(ids, 0.5, g)
    logits = torch.full((int(chosen.sum()), V), -30.0)
    logits[torch.arange(len(logits)), ids[chosen]] = 30.0  # P(true) == 1 in float32
    corrupted, replaced = complement_replace(ids, chosen, logits, g)
    assert torch.all(replaced[chosen] == 1)
    assert torch.all(corrupted[chosen] != ids[chosen])


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny()
    model = Discriminator(cfg).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, cfg.to_dict(), extra={"threshold": 1.5})
    loaded = load_discriminator(path)
    assert loaded.cfg == cfg and not loaded.training
    assert load_checkpoint(path)["extra"] == {"threshold": 1.5}
    ids, lengths = (torch.from_numpy(a) for a in pad_batch([seq(4, 5, 6), seq(7)]))
    with torch.no_grad():
        torch.testing.assert_close(loaded.score(ids, lengths), model.score(ids, lengths))


def test_bad_checkpoints_are_bundle_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such file"):
        load_discriminator(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BundleError):
        load_discriminator(junk)
    mismatched = tmp_path / "mismatched.pt"
    save_checkpoint(mismatched, Discriminator(tiny()), tiny(vocab_size=V + 1).to_dict())
    with pytest.raises(BundleError, match="do not match"):
        load_discriminator(mismatched)
    assert PAD == 0  # the padding id the model masks by length, never by value
