"""ADALog's model: a small BERT trained from scratch by masked-language modelling.

Config → model (encoder + MLM head) → the exported scoring function → training.

No pretrained weights can be downloaded here, so the encoder is trained from scratch on
the *normal* training lines (the ADALog paper fine-tunes a pretrained BERT; this is a
much smaller model, d_model 128 and 2-4 layers by default). :func:`train_mlm` can start
from a local checkpoint of the same architecture (``init_from``, our checkpoint format:
:func:`export.fastlogad.model.save_checkpoint`) when a user has one.

Scoring is deterministic: ``k = n_patterns`` fixed masking patterns, pattern ``j`` masks
the content positions ``i`` (``[CLS]`` and ``[SEP]`` excluded) with ``(i + j) % k == 0``,
so every token is masked exactly once across the ``k`` copies. A line's score is the mean
negative log-likelihood of its tokens, each predicted from the copy that masked it.
:meth:`AdaLogBert.score_nll` builds the copies with tensor ops only, so it exports with
``torch.export`` dynamic in batch and length.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from logsieve.errors import BundleError, ConfigError
from logsieve.export.adalog.text import MASK, pad_ids
from logsieve.export.fastlogad.model import Encoder, ModelConfig, load_checkpoint, mlm_head

__all__ = [
    "AdaLogBert",
    "AdaLogConfig",
    "AdaLogScorer",
    "load_adalog_model",
    "score_ids",
    "train_mlm",
]


@dataclass(frozen=True)
class AdaLogConfig:
    """Model, training and calibration settings (tokenizer settings: ``TextConfig``).

    ``max_len`` counts ``[CLS]`` and ``[SEP]``; longer lines are cut. ``n_patterns`` is
    ``k``, the number of deterministic masking patterns at scoring time (1/7 of the
    tokens masked per copy, close to training's 15%). ``quantile`` of the normal
    validation scores is the threshold. ``init_from``: a local ``model.pt`` (or an
    adalog bundle directory) to start training from instead of random weights.
    """

    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 512
    max_len: int = 64
    dropout: float = 0.1
    mask_prob: float = 0.15
    n_patterns: int = 7
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    quantile: float = 0.90
    init_from: str | None = None

    def __post_init__(self) -> None:
        ints = {"d_model": 8, "n_layers": 1, "n_heads": 1, "d_ff": 8, "max_len": 8,
                "n_patterns": 1, "epochs": 0, "batch_size": 1, "seed": 0}  # fmt: skip
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"adalog.{name}", value, f"an integer >= {low}")
        if self.d_model % self.n_heads:
            raise ConfigError("adalog.n_heads", self.n_heads, f"a divisor of {self.d_model}")
        for name, lo, hi in (("dropout", 0.0, 0.99), ("mask_prob", 0.01, 0.9),
                             ("quantile", 0.0, 1.0), ("weight_decay", 0.0, 1.0)):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ConfigError(f"adalog.{name}", value, f"a number in [{lo}, {hi}]")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr < 1:
            raise ConfigError("adalog.lr", self.lr, "a number in (0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AdaLogBert(nn.Module):
    """Encoder (:class:`export.fastlogad.model.Encoder`, pre-LN) plus a BERT-style MLM head."""

    def __init__(self, cfg: ModelConfig, n_patterns: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_patterns = n_patterns
        self.encoder = Encoder(cfg)
        self.head = mlm_head(cfg)

    @property
    def model_args(self) -> dict[str, Any]:
        """What :func:`load_adalog_model` needs to rebuild this module."""
        return {"encoder": self.cfg.to_dict(), "n_patterns": self.n_patterns}

    def mlm_logits(self, ids: Tensor, lengths: Tensor, positions: Tensor) -> Tensor:
        """Logits ``(N, V)`` at the ``N`` true entries of bool ``positions (B, T)``."""
        h = self.encoder(ids, lengths)  # (B, T, C)
        logits: Tensor = self.head(h[positions])  # (N, V)
        return logits

    def score_nll(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(scores (B,), token_nll (B, T))`` under the ``k`` fixed masking patterns.

        ``token_nll`` is 0 at ``[CLS]``, ``[SEP]`` and padding; ``scores`` is its mean
        over the content tokens (0 for a line with none).
        """
        B, T = ids.shape
        k = self.n_patterns
        pos = torch.arange(T, device=ids.device)  # (T,)
        content = (pos >= 1).unsqueeze(0) & (pos.unsqueeze(0) < lengths.unsqueeze(1) - 1)  # (B, T)
        pattern = torch.arange(k, device=ids.device)  # (k,)
        masks = ((pos.unsqueeze(0) + pattern.unsqueeze(1)) % k) == 0  # (k, T)
        masks = masks.unsqueeze(0) & content.unsqueeze(1)  # (B, k, T)
        copies = torch.where(masks, torch.full_like(ids, MASK).unsqueeze(1), ids.unsqueeze(1))
        flat_len = lengths.unsqueeze(1).expand(B, k).reshape(B * k)  # (B*k,)
        h = self.encoder(copies.reshape(B * k, T), flat_len)  # (B*k, T, C)
        h = h.reshape(B, k, T, -1)  # (B, k, T, C)
        which = (k - pos % k) % k  # (T,) the pattern that masks position i
        h = h[:, which, pos]  # (B, T, C): each position from the copy that masked it
        logp = F.log_softmax(self.head(h), dim=-1)  # (B, T, V)
        nll = -logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # (B, T)
        nll = nll * content.to(nll.dtype)  # (B, T)
        n = content.sum(dim=1).clamp(min=1).to(nll.dtype)  # (B,)
        return nll.sum(dim=1) / n, nll


class AdaLogScorer(nn.Module):
    """The serving function: ``(ids, lengths) -> (scores, token_probs)``.

    ``scores`` float32[B]: mean token NLL (higher = more anomalous). ``token_probs``
    float32[B, T]: ``1 - p(true token | its masked context) = 1 - exp(-nll)``, in
    [0, 1] like FastLogAD's replaced-token probability (monotone in the NLL, which is
    ``-log1p(-token_probs)``); exactly 0 at ``[CLS]``, ``[SEP]`` and padding.
    """

    def __init__(self, model: AdaLogBert) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        scores, nll = self.model.score_nll(ids, lengths)
        return scores, 1.0 - torch.exp(-nll)


def _build(model_args: dict[str, Any], where: str) -> AdaLogBert:
    try:
        cfg = ModelConfig.from_dict(model_args["encoder"])
        k = int(model_args["n_patterns"])
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{where}: bad adalog model_args ({exc})") from None
    return AdaLogBert(cfg, k)


def load_adalog_model(path: str | Path) -> tuple[AdaLogBert, dict[str, Any]]:
    """The model in an adalog ``model.pt`` (eval mode, CPU) and the checkpoint's extra."""
    payload = load_checkpoint(path)
    if payload.get("extra", {}).get("detector") != "adalog":
        raise BundleError(f"checkpoint {path}: not an adalog checkpoint")
    model = _build(payload["model_args"], f"checkpoint {path}")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise BundleError(f"checkpoint {path}: weights do not match model_args ({exc})") from None
    return model.eval(), dict(payload["extra"])


def _mask_batch(
    ids: Tensor,
    lengths: Tensor,
    cfg: AdaLogConfig,
    first_piece: int,
    vocab_size: int,
    gen: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """BERT masking of the content tokens: ``(inputs, positions)``, >= 1 per line.

    80% of the chosen tokens become ``[MASK]``, 10% a random learned piece, 10% stay.
    """
    B, T = ids.shape
    pos = torch.arange(T)
    content = (pos >= 1) & (pos.unsqueeze(0) < lengths.unsqueeze(1) - 1)  # (B, T)
    r = torch.rand(B, T, generator=gen)
    chosen = content & (r < cfg.mask_prob)  # (B, T)
    # A short line could get no masked token: take its content token with the lowest r.
    first = torch.where(content, r, 2.0).argmin(dim=1)  # (B,)
    none = content.any(dim=1) & ~chosen.any(dim=1)  # (B,)
    chosen[torch.arange(B)[none], first[none]] = True
    how = torch.rand(B, T, generator=gen)
    inputs = ids.clone()
    inputs[chosen & (how < 0.8)] = MASK
    swap = chosen & (how >= 0.8) & (how < 0.9)
    if vocab_size > first_piece:
        randoms = torch.randint(first_piece, vocab_size, (B, T), generator=gen)
        inputs = torch.where(swap, randoms, inputs)
    return inputs, chosen


def train_mlm(
    train_ids: list[list[int]],
    val_ids: list[list[int]],
    vocab_size: int,
    first_piece: int,
    cfg: AdaLogConfig,
    init: AdaLogBert | None = None,
) -> tuple[AdaLogBert, dict[str, Any]]:
    """Masked-language modelling on encoded normal lines; seeded, deterministic on CPU.

    AdamW with linear warm-up (5% of the steps) and linear decay, gradient clipping
    at 1.0. Returns the model (eval mode) and a summary with the validation MLM loss
    (mean score under the fixed patterns) after each epoch.
    """
    if not train_ids:
        raise ConfigError("train_lines", 0, "at least one training line")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if init is None:
        enc = ModelConfig(vocab_size=vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers,
                          n_heads=cfg.n_heads, d_ff=cfg.d_ff, max_len=cfg.max_len,
                          dropout=cfg.dropout)  # fmt: skip
        model = AdaLogBert(enc, cfg.n_patterns)
    else:
        model = init
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(train_ids) / cfg.batch_size)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    history: list[dict[str, float]] = []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(train_ids), generator=gen).tolist()
        total, n = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            batch = [train_ids[i] for i in order[start : start + cfg.batch_size]]
            ids_np, len_np = pad_ids(batch)
            ids, lengths = torch.from_numpy(ids_np), torch.from_numpy(len_np)
            inputs, chosen = _mask_batch(ids, lengths, cfg, first_piece, vocab_size, gen)
            if not chosen.any():
                continue
            logits = model.mlm_logits(inputs, lengths, chosen)  # (N, V)
            loss = F.cross_entropy(logits, ids[chosen])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
            n += len(batch)
        val = float(np.mean(score_ids(model, val_ids)[0])) if val_ids else float("nan")
        history.append({"epoch": epoch + 1, "train_mlm": total / max(n, 1), "val_score": val})
    return model.eval(), {"steps": steps, "history": history}


@torch.no_grad()
def score_ids(
    model: AdaLogBert, seqs: list[list[int]], batch_size: int = 256
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Eager scores (float64 ``[N]``) and per-token NLL (one unpadded array per line).

    Lines are batched in length order (no short line padded to a long one).
    """
    was = model.training
    model.eval()
    order = np.argsort([len(s) for s in seqs], kind="stable")
    scores = np.empty(len(seqs), dtype=np.float64)
    nll: list[np.ndarray] = [np.zeros(0)] * len(seqs)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, lengths = pad_ids([seqs[i] for i in idx])
        s, t = model.score_nll(torch.from_numpy(ids), torch.from_numpy(lengths))
        scores[idx] = s.double().numpy()
        for row, i in enumerate(idx):
            nll[i] = t[row, : len(seqs[i])].numpy()
    model.train(was)
    return scores, nll
