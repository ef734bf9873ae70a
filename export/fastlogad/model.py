"""FastLogAD model: an ELECTRA-style encoder, the MLM generator and the discriminator.

Read top to bottom in dataflow order: config → attention → block → encoder → the two
heads → checkpoint helpers. Both networks share the encoder *class*, never weights
(the authors' code keeps generator and discriminator the same size, with separate
optimizers and no embedding tying).

Token contract (``logsieve.logs.vocab``): ``[PAD]=0 [CLS]=1 [MASK]=2 [UNK]=3``, template
``t`` is token ``t + 4``. Inputs are ``ids int64[B, T]`` padded with ``[PAD]`` plus
``lengths int64[B]``; position 0 of every row is ``[CLS]``.

The encoder is pre-LayerNorm (as nanoGPT): it trains without warm-up, and the last
layer's residual stream is *not* normalised, so the anomaly score ``‖h_L[CLS]‖₂`` can move
freely towards 0 for normal windows and up for anomalous ones during hyperspherical
separation training. Heads apply their own LayerNorm.

:meth:`Discriminator.score` is the function exported for serving (``torch.export``):
no data-dependent Python control flow, the padding mask is built from ``lengths`` with
tensor ops only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from logsieve.errors import BundleError, ConfigError
from logsieve.logs.vocab import N_SPECIAL

__all__ = [
    "CHECKPOINT_FORMAT",
    "Discriminator",
    "Encoder",
    "Generator",
    "ModelConfig",
    "load_checkpoint",
    "load_discriminator",
    "mlm_head",
    "n_params",
    "padding_mask",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "logsieve.fastlogad/1"


@dataclass(frozen=True)
class ModelConfig:
    """Size of one encoder (the generator and the discriminator use the same one).

    Defaults are the paper's discriminator: embedding 256, 4 layers, 4 heads, FFN 256.
    ``max_len`` counts the ``[CLS]`` token (learned positions ``0..max_len-1``).
    """

    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 256
    max_len: int = 512
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name}", value, "an integer >= 1")
        # Two non-special tokens at least: the random generator must have a replacement
        # that differs from the true token.
        if self.vocab_size < N_SPECIAL + 2:
            raise ConfigError("model.vocab_size", self.vocab_size, f">= {N_SPECIAL + 2}")
        if self.d_model % self.n_heads:
            raise ConfigError("model.n_heads", self.n_heads, f"a divisor of d_model={self.d_model}")
        if self.max_len < 2:
            raise ConfigError("model.max_len", self.max_len, ">= 2 (it counts [CLS])")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError("model.dropout", self.dropout, "a float in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: the checkpoint's and the bundle manifest's ``model_args``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, args: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        known = set(cls.__dataclass_fields__)
        extra = set(args) - known
        if extra:
            raise ConfigError("model_args", sorted(extra), f"only {sorted(known)}")
        return cls(**args)


def padding_mask(lengths: Tensor, width: int) -> Tensor:
    """``True`` where a position holds a real token: bool ``[B, width]``."""
    positions = torch.arange(width, device=lengths.device)  # (T,)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor, cls_only: bool = False) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        if cls_only:  # only the [CLS] query is needed (score-only last layer)
            q = q[:, :1]  # (B, 1, C)
        Tq = q.shape[1]
        q = q.view(B, Tq, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, Tq, hs)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        # attn_mask (B, 1, 1, T): every query sees only the real keys. Padded queries
        # still see [CLS], so no row is all -inf and nothing turns NaN.
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, Tq, hs)
        y = y.transpose(1, 2).contiguous().view(B, Tq, C)  # (B, Tq, C)
        out: Tensor = self.resid_drop(self.proj(y))  # (B, Tq, C)
        return out


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff),
            nn.GELU(),
            nn.Linear(cfg.d_ff, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: Tensor, attn_mask: Tensor, cls_only: bool = False) -> Tensor:
        # cls_only: compute position 0 alone; it still attends to every real token.
        resid = x[:, :1] if cls_only else x  # (B, Tq, C)
        x = resid + self.attn(self.ln1(x), attn_mask, cls_only)  # (B, Tq, C)
        out: Tensor = x + self.ff(self.ln2(x))  # (B, Tq, C)
        return out


class Encoder(nn.Module):
    """Token + learned position embeddings, then pre-LN transformer blocks."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.apply(_init_weights)

    def forward(self, ids: Tensor, lengths: Tensor, cls_only: bool = False) -> Tensor:
        """Hidden states of the last layer, ``(B, T, C)`` (padded rows are junk).

        ``cls_only=True`` returns ``(B, 1, C)``: the last layer is computed for the
        ``[CLS]`` position alone (same values, about 1/n_layers less work).
        """
        T = ids.shape[1]
        pos = torch.arange(T, device=ids.device)  # (T,)
        x = self.drop(self.tok_emb(ids) + self.pos_emb(pos))  # (B, T, C)
        attn_mask = padding_mask(lengths, T)[:, None, None, :]  # (B, 1, 1, T)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask, cls_only and i == last)  # (B, T, C) or (B, 1, C)
        out: Tensor = x
        return out


def _init_weights(module: nn.Module) -> None:
    # BERT/nanoGPT initialisation: N(0, 0.02) weights, zero biases.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def mlm_head(cfg: ModelConfig) -> nn.Sequential:
    """BERT-style masked-LM head: hidden ``(N, C)`` → vocabulary logits ``(N, V)``."""
    head = nn.Sequential(
        nn.LayerNorm(cfg.d_model),
        nn.Linear(cfg.d_model, cfg.d_model),
        nn.GELU(),
        nn.LayerNorm(cfg.d_model),
        nn.Linear(cfg.d_model, cfg.vocab_size),
    )
    head.apply(_init_weights)
    return head


class Generator(nn.Module):
    """Small BERT for masked-language modelling; proposes pseudo-anomalous tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.head = mlm_head(cfg)

    def forward(self, ids: Tensor, lengths: Tensor, positions: Tensor) -> Tensor:
        """MLM logits at the selected positions only (cheaper than all ``B·T``).

        ``positions``: bool ``(B, T)``; returns ``(N, V)`` for its ``N`` true entries in
        row-major order.
        """
        h = self.encoder(ids, lengths)  # (B, T, C)
        logits: Tensor = self.head(h[positions])  # (N, V)
        return logits


class Discriminator(nn.Module):
    """Replaced-token detector whose ``[CLS]`` norm is the anomaly score."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.rtd_head = nn.Sequential(
            nn.LayerNorm(cfg.d_model),
            nn.Linear(cfg.d_model, cfg.d_model),
            nn.GELU(),
            nn.Linear(cfg.d_model, 1),
        )
        self.rtd_head.apply(_init_weights)

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(hidden (B, T, C), rtd_logits (B, T))``; logits at padding are meaningless."""
        h = self.encoder(ids, lengths)  # (B, T, C)
        logits = self.rtd_head(h).squeeze(-1)  # (B, T)
        return h, logits

    def cls_norm(self, ids: Tensor, lengths: Tensor) -> Tensor:
        """``‖h_L[CLS]‖₂`` per row, ``(B,)``; skips the RTD head (HST, validation)."""
        h = self.encoder(ids, lengths, cls_only=True)  # (B, 1, C)
        norms: Tensor = torch.linalg.vector_norm(h[:, 0], dim=-1)  # (B,)
        return norms

    def score(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Serving entry point: ``(scores (B,), token_probs (B, T))``.

        ``scores`` is the last layer's ``[CLS]`` norm (higher = more anomalous);
        ``token_probs`` the replaced-token probability of every position (the evidence
        for a flag), exactly 0 at padding.
        """
        h, logits = self.forward(ids, lengths)  # (B, T, C), (B, T)
        scores = torch.linalg.vector_norm(h[:, 0], dim=-1)  # (B,)
        real = padding_mask(lengths, ids.shape[1])  # (B, T)
        probs = torch.sigmoid(logits) * real.to(logits.dtype)  # (B, T)
        return scores, probs


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    model_args: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``{format, model_args, state_dict, extra}`` with :func:`torch.save`.

    ``model_args`` and ``extra`` must be plain JSON-like values (str, numbers, lists,
    dicts) so :func:`load_checkpoint` can read the file with ``weights_only=True``.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_args": dict(model_args),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    torch.save(payload, Path(path))


def load_checkpoint(
    path: str | Path, fmt: str = CHECKPOINT_FORMAT, what: str = "checkpoint"
) -> dict[str, Any]:
    """Read a ``torch.save`` payload whose ``format`` is ``fmt`` (a checkpoint written by
    :func:`save_checkpoint` by default) with ``weights_only=True``: no code is unpickled.
    ``what`` names the file in errors."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BundleError(f"{what} {path}: no such file") from None
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise BundleError(f"{what} {path}: cannot be read ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise BundleError(f"{what} {path}: not a {fmt} file")
    return payload


def load_discriminator(path: str | Path) -> Discriminator:
    """Rebuild the discriminator from a checkpoint's ``model_args``, in eval mode, on CPU."""
    payload = load_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict(payload["model_args"])
    except (ConfigError, TypeError) as exc:
        raise BundleError(f"checkpoint {path}: bad model_args ({exc})") from None
    model = Discriminator(cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise BundleError(f"checkpoint {path}: weights do not match model_args ({exc})") from None
    return model.eval()
