"""Pseudo-anomaly generators: corrupt normal sequences by replacing tokens.

Both generators first pick which positions to replace (:func:`choose_positions`):
``round(r · n)`` of the ``n`` *non-special* positions of each row, at least one, where
``r`` is the mask ratio (0.5 in the paper). ``[CLS]``, ``[PAD]``, ``[MASK]`` and
``[UNK]`` positions are never chosen, so the corruption only ever swaps one template
for another.

- :func:`random_replace`: each chosen token is replaced uniformly from the
  non-special vocabulary *excluding the true token*, so every chosen position really
  changes.
- :func:`complement_replace`: the MLM generator's probabilities ``P`` over the
  non-special tokens are turned into the complement distribution
  ``(1 - P) / Σ(1 - P)`` (the paper's formula). The true token stays in the support
  with weight ``1 - P(true)`` like every other token: a trained MLM gives it a high
  ``P``, so it is rarely drawn, and when it is the position is labelled 0 (not
  replaced). Special tokens get weight 0 and are never emitted.

All randomness comes from an explicit :class:`torch.Generator`, so a seed fixes the
corruption.
"""

from __future__ import annotations

import torch
from torch import Tensor

from logsieve.errors import ConfigError
from logsieve.logs.vocab import MASK, N_SPECIAL

__all__ = ["choose_positions", "complement_replace", "mask_for_mlm", "random_replace"]


def choose_positions(ids: Tensor, ratio: float, gen: torch.Generator) -> Tensor:
    """Pick ``max(1, round(ratio · n))`` of each row's ``n`` non-special positions.

    ``ids`` int64 ``(B, T)``; returns bool ``(B, T)``. A row without any non-special
    token (only ``[CLS]``/``[UNK]``) gets no position.
    """
    if not 0.0 < ratio <= 1.0:
        raise ConfigError("mask_ratio", ratio, "a float in (0, 1]")
    eligible = ids >= N_SPECIAL  # (B, T)
    n = eligible.sum(dim=1)  # (B,)
    k = torch.clamp(torch.round(n.to(torch.float64) * ratio).to(torch.int64), min=1)  # (B,)
    k = torch.minimum(k, n)  # (B,)
    # Random keys, ineligible positions sorted last; the k smallest keys win.
    keys = torch.rand(ids.shape, generator=gen, device=ids.device)  # (B, T)
    keys = keys.masked_fill(~eligible, 2.0)
    rank = keys.argsort(dim=1).argsort(dim=1)  # (B, T) rank of each position's key
    return (rank < k.unsqueeze(1)) & eligible  # (B, T)


def random_replace(
    ids: Tensor, vocab_size: int, ratio: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random generator: ``(corrupted ids (B, T), replaced labels (B, T) float)``.

    Each chosen token becomes a uniform draw from the ``vocab_size - 4`` non-special
    tokens other than itself (draw from ``n - 1`` values and skip over the true one).
    """
    n_real = vocab_size - N_SPECIAL
    if n_real < 2:
        raise ConfigError("vocab_size", vocab_size, f">= {N_SPECIAL + 2}")
    chosen = choose_positions(ids, ratio, gen)  # (B, T)
    draw = torch.randint(0, n_real - 1, ids.shape, generator=gen, device=ids.device)  # (B, T)
    draw = draw + N_SPECIAL
    draw = draw + (draw >= ids).to(draw.dtype)  # skip the true token
    corrupted = torch.where(chosen, draw, ids)  # (B, T)
    return corrupted, (corrupted != ids).to(torch.float32)


def mask_for_mlm(ids: Tensor, ratio: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(ids with [MASK] at the chosen positions (B, T), chosen bool (B, T))``."""
    chosen = choose_positions(ids, ratio, gen)  # (B, T)
    return ids.masked_fill(chosen, MASK), chosen


def complement_replace(
    ids: Tensor, chosen: Tensor, mlm_logits: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """MLM generator: sample replacements from ``(1 - P) / Σ(1 - P)``.

    ``mlm_logits`` ``(N, V)`` are the generator's logits at the ``N`` chosen positions
    (row-major order of ``chosen``). ``P`` is the softmax over the non-special tokens
    only, so the complement weights of real tokens sum to ``n - 1`` and no mass leaks to
    specials. Returns ``(corrupted ids (B, T), replaced labels (B, T) float)``; a
    position that drew its own true token is labelled 0.
    """
    logits = mlm_logits.detach().float()[:, N_SPECIAL:]  # (N, V - 4)
    p = torch.softmax(logits, dim=-1)  # (N, V - 4)
    weights = (1.0 - p).clamp_min(0.0)  # (N, V - 4)
    # A one-hot P (possible in float32 once the MLM is very sure) leaves all weight on
    # the other tokens; a single real token would leave none, which ModelConfig forbids.
    draw = torch.multinomial(weights, 1, generator=gen).squeeze(1) + N_SPECIAL  # (N,)
    corrupted = ids.clone()
    corrupted[chosen] = draw
    return corrupted, (corrupted != ids).to(torch.float32)
