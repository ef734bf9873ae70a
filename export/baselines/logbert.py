"""LogBERT (Guo et al., IJCNN 2021): masked log-key prediction plus a hypersphere term.

Read top to bottom: config → network → masking → the :class:`LogBERT` baseline.

The encoder is FastLogAD's (:class:`~logsieve.export.fastlogad.model.Encoder`, pre-LayerNorm) at
LogBERT's size: hidden 256, 4 layers, 4 heads, FFN 512. Position 0 (our ``[CLS]``) is
LogBERT's ``[DIST]`` token. Training loss = cross-entropy of the masked keys +
``hypersphere_weight`` (0.1) times the mean squared distance of the ``[CLS]`` embedding to
the centre, the centre being the mean ``[CLS]`` embedding of the training windows,
recomputed at the start of every epoch (as LogBERT's code does). Masked keys are
replaced by ``[MASK]`` (no BERT 80/10/10 split, since scoring always uses ``[MASK]``).

:meth:`LogBERTConfig.reference` is LogBERT as its authors' code (HelenGuohx/logbert,
``HDFS/logbert.py`` → ``bert_pytorch/trainer/pretrain.py``) trains and scores it; five
options differ from the defaults above. ``hypersphere="mse"``: the term is ``nn.MSELoss`` of the
``[DIST]`` state against the centre, a mean over the batch *and* the ``d_model`` dims
(ours, ``"sum"``, is the squared distance summed over the dims: 256 times stronger at
d = 256). ``warmup_steps`` > 0: the Noam schedule the authors' ``ScheduledOptim``
imposes on Adam every step, ``lr = d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)``
(``lr`` is then unused: their Adam's 1e-3 is overwritten too). ``masking="bert"``: a
masked key is fed as ``[MASK]`` 80 %, a uniformly random id 10 %, itself 10 % of the time
(their ``LogDataset.random_item``); it is still a target. And ``dedupe=False``: every
training session, duplicates kept. Scoring: ``score_masks="draw"`` masks each key of
each scored window with probability ``mask_ratio``, independently per window (their
``predict_mode`` pass; a window may get no masked key, and then never misses), from a
generator seeded by ``seed`` at the start of every :meth:`LogBERT.score` call, so a
window's score depends on its place in that call's list. Our ``"length"`` masks
depend on the window's length only: on HDFS, where hundreds of anomalous sessions share
one shape, whether one position is masked decides them all at once.

By default (``"length"``) scoring masks every window deterministically: the positions
depend only on the seed and the window length, so a window always gets the same score,
whatever its batch. A masked key *misses* when it is not among the top ``g`` candidates
(rank = 1 + the keys ranked strictly above it). The score is the fraction of masked
keys that miss; the verdict "more than ``r`` of the masked keys miss" (LogBERT's ``r``
is a ratio of the masked keys) is exactly ``score > r``. The hypersphere distance is
*not* mixed into the score: any tie-breaker term would make ``score > r`` differ from
the rule for some r. Scores therefore tie a lot; ROC/PR-AUC treat ties by average rank.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from logsieve.engine.batching import batches, pad
from logsieve.errors import BundleError, ConfigError, DataError
from logsieve.export.baselines.base import (
    Baseline,
    FloatArray,
    IdArray,
    build_config,
    check_float,
    check_int,
    read_payload,
    restore_thresholds,
    seeded,
    select_threshold,
    write_payload,
)
from logsieve.export.fastlogad.model import Encoder, ModelConfig
from logsieve.export.fastlogad.train import dedupe
from logsieve.logs.vocab import MASK, UNK, pad_batch

__all__ = [
    "LogBERT",
    "LogBERTConfig",
    "LogBERTNet",
    "corrupt",
    "hypersphere_term",
    "miss_fraction",
    "noam_lr",
]

LogBERTRule = Literal["validation", "fixed"]
Hypersphere = Literal["sum", "mse"]
Masking = Literal["mask", "bert"]
ScoreMasks = Literal["length", "draw"]


@dataclass(frozen=True)
class LogBERTConfig:
    """LogBERT settings; defaults are the paper's HDFS ones (BGL: ``mask_ratio=0.5``,
    ``g=15``). ``threshold_rule="validation"``: the smallest ratio r with validation FPR
    ``<= max_fpr``; ``"fixed"``: the given ``r``. ``dedupe`` trains on distinct windows,
    as our FastLogAD training does (LogBERT's code keeps duplicates). ``hypersphere``,
    ``warmup_steps`` (0 = the constant ``lr``), ``masking`` and ``score_masks``: see the
    module doc; :meth:`reference` sets all five as the authors' code does."""

    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    max_len: int = 512
    dropout: float = 0.1
    mask_ratio: float = 0.65
    hypersphere_weight: float = 0.1
    g: int = 6
    r: float | None = None
    threshold_rule: LogBERTRule = "validation"
    max_fpr: float = 0.01
    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 10  # epochs without a better validation loss; 0 = never stop early
    dedupe: bool = True
    seed: int = 0
    hypersphere: Hypersphere = "sum"
    warmup_steps: int = 0
    masking: Masking = "mask"
    score_masks: ScoreMasks = "length"

    def __post_init__(self) -> None:
        self.model_config()  # validates the encoder's fields
        for name in ("g", "epochs", "batch_size"):
            check_int(f"logbert.{name}", getattr(self, name), 1)
        check_int("logbert.patience", self.patience, 0)
        check_int("logbert.warmup_steps", self.warmup_steps, 0)
        check_int("logbert.seed", self.seed, 0)
        check_float("logbert.mask_ratio", self.mask_ratio, 0.0, 1.0, open_low=True)
        check_float("logbert.hypersphere_weight", self.hypersphere_weight, 0.0, 1e3, open_low=False)
        check_float("logbert.max_fpr", self.max_fpr, 0.0, 1.0, open_low=False)
        check_float("logbert.lr", self.lr, 0.0, 1.0, open_low=True)
        if self.r is not None:
            check_float("logbert.r", self.r, 0.0, 1.0, open_low=False)
        if self.threshold_rule not in ("validation", "fixed"):
            raise ConfigError(
                "logbert.threshold_rule", self.threshold_rule, "'validation' or 'fixed'"
            )
        if self.threshold_rule == "fixed" and self.r is None:
            raise ConfigError("logbert.r", None, "a float in [0, 1] when threshold_rule='fixed'")
        if not isinstance(self.dedupe, bool):
            raise ConfigError("logbert.dedupe", self.dedupe, "True or False")
        if self.hypersphere not in ("sum", "mse"):
            raise ConfigError("logbert.hypersphere", self.hypersphere, "'sum' or 'mse'")
        if self.masking not in ("mask", "bert"):
            raise ConfigError("logbert.masking", self.masking, "'mask' or 'bert'")
        if self.score_masks not in ("length", "draw"):
            raise ConfigError("logbert.score_masks", self.score_masks, "'length' or 'draw'")

    @classmethod
    def reference(cls, vocab_size: int, **overrides: object) -> LogBERTConfig:
        """HelenGuohx/logbert's HDFS settings (see the module doc); ``overrides`` replace any.

        Hidden 256, 4 layers, 4 heads, FFN 512, mask ratio 0.65, g = 6, batch 32, up to
        200 epochs stopping after 10 without a better validation loss, hypersphere weight
        0.1 on ``MSELoss``, Noam warm-up over 10,000 steps, BERT 80/10/10 masking, every
        training session kept, scoring masks drawn per window. The miss ratio r is still
        chosen without labels (the authors pick it by test F1), on normal validation
        windows.
        """
        args: dict[str, object] = {
            "d_model": 256, "n_layers": 4, "n_heads": 4, "d_ff": 512, "mask_ratio": 0.65,
            "g": 6, "hypersphere_weight": 0.1, "epochs": 200, "batch_size": 32,
            "patience": 10, "dedupe": False, "hypersphere": "mse", "warmup_steps": 10_000,
            "masking": "bert", "score_masks": "draw",
        }  # fmt: skip
        args.update(overrides)
        return cls(vocab_size, **args)  # type: ignore[arg-type]

    def model_config(self) -> ModelConfig:
        return ModelConfig(self.vocab_size, self.d_model, self.n_layers, self.n_heads,
                           self.d_ff, self.max_len, self.dropout)  # fmt: skip


class LogBERTNet(nn.Module):
    """Encoder + MLM head; ``center`` (a buffer, saved with the weights) is the sphere's."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.mlm_head = nn.Sequential(
            nn.LayerNorm(cfg.d_model), nn.Linear(cfg.d_model, cfg.vocab_size)
        )
        self.register_buffer("center", torch.zeros(cfg.d_model))

    def forward(self, ids: Tensor, lengths: Tensor, masked: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (N, V) at the N masked positions, squared distance to centre (B,))``."""
        h = self.encoder(ids, lengths)  # (B, T, C)
        logits: Tensor = self.mlm_head(h[masked])  # (N, V)
        dist = ((h[:, 0] - self.center) ** 2).sum(dim=-1)  # (B,)
        return logits, dist


def _eligible(lengths: Tensor, width: int) -> Tensor:
    pos = torch.arange(width)  # (T,)
    return (pos > 0) & (pos.unsqueeze(0) < lengths.unsqueeze(1))  # (B, T): keys, not [CLS]


def _mask_from_keys(keys: Tensor, eligible: Tensor, ratio: float) -> Tensor:
    """Positions with ``key < ratio``, plus each row's smallest key so none is left empty."""
    keys = keys.masked_fill(~eligible, 2.0)  # (B, T)
    first = F.one_hot(keys.argmin(dim=1), keys.shape[1]).bool()  # (B, T)
    return ((keys < ratio) | first) & eligible  # (B, T)


def noam_lr(step: int, d_model: int, warmup_steps: int) -> float:
    """The authors' ``ScheduledOptim`` rate at optimiser step ``step`` (1-based)."""
    return float(d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5))


def corrupt(
    ids: Tensor, masked: Tensor, vocab_size: int, masking: Masking, gen: torch.Generator
) -> Tensor:
    """The model's input: masked positions → ``[MASK]`` (``"mask"``), or BERT's split.

    ``"bert"`` (the authors' ``random_item``): of the masked positions, 80 % ``[MASK]``,
    10 % a uniform id in ``[0, vocab_size)`` (specials included, as theirs), 10 % kept.
    """
    if masking == "mask":
        return ids.masked_fill(masked, MASK)
    u = torch.rand(ids.shape, generator=gen)  # (B, T)
    rand = torch.randint(0, vocab_size, ids.shape, generator=gen)  # (B, T)
    out = torch.where(masked & (u < 0.8), torch.full_like(ids, MASK), ids)
    return torch.where(masked & (u >= 0.8) & (u < 0.9), rand, out)


def hypersphere_term(dist: Tensor, d_model: int, kind: Hypersphere) -> Tensor:
    """The batch's hypersphere loss from squared distances ``dist`` ``(B,)``.

    ``"sum"``: the batch mean of the squared distances; ``"mse"``: ``nn.MSELoss`` of the
    states against the centre, the same divided by ``d_model`` (a mean over the dims too).
    """
    return dist.mean() if kind == "sum" else dist.mean() / d_model


def miss_fraction(logits: Tensor, targets: Tensor, owner: Tensor, n_rows: int, g: int) -> Tensor:
    """Fraction of each row's masked keys outside the top ``g``, float64 ``(n_rows,)``.

    ``logits`` ``(N, V)``, ``targets`` ``(N,)``, ``owner`` ``(N,)`` = row of each key.
    """
    true = logits.gather(1, targets[:, None])  # (N, 1)
    miss = ((logits > true).sum(dim=1) >= g).double()  # (N,) rank > g
    misses = torch.zeros(n_rows, dtype=torch.float64).index_add_(0, owner, miss)
    n = torch.zeros(n_rows, dtype=torch.float64).index_add_(0, owner, torch.ones_like(miss))
    return misses / n.clamp(min=1.0)


class LogBERT(Baseline):
    """LogBERT; ``score > threshold`` ⇔ more than a ratio r of the masked keys miss the top g."""

    name = "logbert"

    def __init__(self, cfg: LogBERTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        with seeded(cfg.seed):
            self.model = LogBERTNet(cfg.model_config()).eval()
        # "lr": the rate of each epoch's last step (the schedule's, with warmup_steps).
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "lr": []}
        self._score_masks: dict[int, npt.NDArray[np.bool_]] = {}

    def _prepare(self, windows: Sequence[IdArray]) -> list[IdArray]:
        out = []
        for i, w in enumerate(windows):
            w = np.asarray(w, dtype=np.int64)
            if len(w) > self.cfg.max_len:
                raise DataError(
                    f"logbert: window {i} has {len(w)} ids > max_len={self.cfg.max_len}"
                )
            out.append(np.where((w >= 0) & (w < self.cfg.vocab_size), w, UNK))
        return out

    def fit(self, train: Sequence[IdArray], validation: Sequence[IdArray]) -> None:
        """Masked-key + hypersphere training on normal windows; r on normal validation."""
        cfg = self.cfg
        seqs = [s for s in self._prepare(train) if len(s) > 1]
        seqs = dedupe(seqs) if cfg.dedupe else seqs
        val = [s for s in self._prepare(validation) if len(s) > 1]
        if not seqs:
            raise DataError("logbert.fit: no training window has a key after [CLS]")
        if cfg.threshold_rule == "validation" and not val:
            raise DataError("logbert.fit: threshold_rule='validation' needs validation windows")
        rng = np.random.default_rng(cfg.seed)
        with seeded(cfg.seed):
            self.model = LogBERTNet(cfg.model_config())
            gen = torch.Generator().manual_seed(cfg.seed + 1)
            opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
            best, bad = (float("inf"), copy.deepcopy(self.model.state_dict())), 0
            step = 0
            for _ in range(cfg.epochs):
                self._set_center(seqs)
                self.model.train()
                total, order = 0.0, rng.permutation(len(seqs))
                for start in range(0, len(order), cfg.batch_size):
                    loss = self._loss([seqs[i] for i in order[start : start + cfg.batch_size]], gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    if cfg.warmup_steps:  # set before the step, as ScheduledOptim does
                        step += 1
                        for group in opt.param_groups:
                            group["lr"] = noam_lr(step, cfg.d_model, cfg.warmup_steps)
                    opt.step()
                    total += loss.item()
                self.history["train_loss"].append(total / -(-len(seqs) // cfg.batch_size))
                self.history["lr"].append(float(opt.param_groups[0]["lr"]))
                if not val:
                    continue
                self.model.eval()
                with torch.no_grad():  # same masks every epoch: comparable losses
                    vgen = torch.Generator().manual_seed(cfg.seed + 2)
                    vloss = float(np.mean([self._loss(val[i : i + 256], vgen).item()
                                           for i in range(0, len(val), 256)]))  # fmt: skip
                self.history["val_loss"].append(vloss)
                if vloss < best[0]:
                    best, bad = (vloss, copy.deepcopy(self.model.state_dict())), 0
                elif cfg.patience and (bad := bad + 1) >= cfg.patience:
                    break
            if val:
                self.model.load_state_dict(best[1])
        self.model.eval()
        self.thresholds = {}
        if cfg.r is not None:
            self.thresholds["fixed"] = float(cfg.r)
        if val:
            scores = self.score(val)
            self.thresholds["validation"] = select_threshold(
                scores, cfg.max_fpr, np.concatenate([[0.0], scores])
            )
        self.threshold_rule = cfg.threshold_rule

    @torch.no_grad()
    def _set_center(self, seqs: list[IdArray]) -> None:
        self.model.eval()
        total = torch.zeros(self.cfg.d_model)
        for start in range(0, len(seqs), 256):
            ids, lengths = pad_batch(seqs[start : start + 256])
            h = self.model.encoder(torch.from_numpy(ids), torch.from_numpy(lengths), cls_only=True)
            total += h[:, 0].sum(dim=0)
        self.model.center.copy_(total / len(seqs))  # type: ignore[operator]

    def _loss(self, batch: list[IdArray], gen: torch.Generator) -> Tensor:
        ids_np, lengths_np = pad_batch(batch)
        ids, lengths = torch.from_numpy(ids_np), torch.from_numpy(lengths_np)
        keys = torch.rand(ids.shape, generator=gen)  # (B, T)
        masked = _mask_from_keys(keys, _eligible(lengths, ids.shape[1]), self.cfg.mask_ratio)
        inputs = corrupt(ids, masked, self.cfg.vocab_size, self.cfg.masking, gen)
        logits, dist = self.model(inputs, lengths, masked)  # (N, V), (B,)
        return F.cross_entropy(logits, ids[masked]) + self.cfg.hypersphere_weight * (
            hypersphere_term(dist, self.cfg.d_model, self.cfg.hypersphere)
        )

    def masked_positions(self, length: int) -> npt.NDArray[np.bool_]:
        """Positions masked when scoring a window of ``length`` ids (``[CLS]`` included).

        Depends on (seed, length) only: a window's score never depends on its batch.
        """
        if length not in self._score_masks:
            keys = np.random.default_rng([self.cfg.seed, length]).random(length)
            keys[0] = 2.0  # [CLS] is never masked
            mask = keys < self.cfg.mask_ratio
            mask[int(np.argmin(keys))] = length > 1
            self._score_masks[length] = mask
        return self._score_masks[length]

    def drawn_masks(self, lengths: npt.ArrayLike) -> list[npt.NDArray[np.bool_]]:
        """``score_masks="draw"``: one mask per window of ``lengths`` (``[CLS]`` included),
        each key with probability ``mask_ratio``, none forced; the same list, the same masks.
        """
        rng = np.random.default_rng([self.cfg.seed, 3])
        out = []
        for n in np.asarray(lengths, dtype=np.int64).reshape(-1):
            mask = rng.random(int(n)) < self.cfg.mask_ratio
            mask[0] = False  # [CLS]
            out.append(mask)
        return out

    @torch.no_grad()
    def score(self, windows: Sequence[IdArray]) -> FloatArray:
        """Fraction of the masked keys outside the top g (0 if no key is masked)."""
        seqs = self._prepare(windows)
        out = np.zeros(len(seqs), dtype=np.float64)
        lengths_all = np.array([len(s) for s in seqs], dtype=np.int64)
        drawn = self.drawn_masks(lengths_all) if self.cfg.score_masks == "draw" else None
        self.model.eval()
        # Same-width length groups (the engines' batching): one long window no longer
        # pads a whole batch of short ones to its length (5x on HDFS's long tail).
        for idx, width in batches(lengths_all, 256, self.cfg.max_len):
            ids_np, lengths_np = pad([seqs[i] for i in idx], width)
            masked_np = np.zeros(ids_np.shape, dtype=bool)
            for row, (i, n) in enumerate(zip(idx, lengths_np, strict=True)):
                masked_np[row, :n] = self.masked_positions(int(n)) if drawn is None else drawn[i]
            ids, masked = torch.from_numpy(ids_np), torch.from_numpy(masked_np)
            logits, _ = self.model(
                ids.masked_fill(masked, MASK), torch.from_numpy(lengths_np), masked
            )
            owner = masked.nonzero()[:, 0]  # row of each masked key, row-major like h[masked]
            out[idx] = miss_fraction(logits, ids[masked], owner, len(idx), self.cfg.g).numpy()
        return out

    def threshold_candidates(self, scores: npt.ArrayLike) -> FloatArray:
        """LogBERT's knob is the miss ratio r in [0, 1]: 0 and the observed ratios."""
        return np.unique(np.concatenate([[0.0], np.asarray(scores, dtype=np.float64)]))

    def save(self, path: str | Path) -> None:
        """Config, weights (centre included) and thresholds (``weights_only=True`` loadable)."""
        extra = {"thresholds": self.thresholds, "threshold_rule": self.threshold_rule}
        write_payload(path, self.name, asdict(self.cfg), self.model.state_dict(), extra)

    @classmethod
    def load(cls, path: str | Path) -> LogBERT:
        """Inverse of :meth:`save`."""
        payload = read_payload(path, cls.name)
        baseline = cls(build_config(LogBERTConfig, payload["config"], path))
        try:
            baseline.model.load_state_dict(payload["state_dict"])
        except RuntimeError as exc:
            raise BundleError(f"baseline {path}: weights do not match config ({exc})") from None
        restore_thresholds(baseline, payload["extra"], path)
        baseline.model.eval()
        return baseline
