"""DeepLog (Du et al., CCS 2017): an LSTM predicts the next log key from the last ``h``.

Read top to bottom: config → network → the rank rule → the :class:`DeepLog` baseline.

Every key of a window is predicted from the ``history`` keys before it, the window
left-padded with ``[PAD]`` (``[CLS]`` at position 0 marks the start), so a window
shorter than ``history + 1`` is still scored key by key. (The popular implementation
flags every session of ≤ 10 keys outright because it has no history for them; that is
not in DeepLog's paper, so it is not the default: :meth:`DeepLogConfig.reference` has it.)

Verdict (the paper's): anomalous if some key is not among the top ``g`` candidates.
With ``rank`` = 1 + the number of keys the model ranks strictly above the true one
(ties count in the key's favour), a key misses iff ``rank > g``. The per-key score is
``(rank - 1) + (1 - p_true)``: for ``rank >= 2`` ``p_true <= 1/2``, so it lies in
``[rank - 1/2, rank]``, and a window's score (the max over its keys) satisfies
``score > g  ⇔  max rank > g``: the threshold *is* g and ``predict`` is exactly the
paper's rule. The ``1 - p_true`` term only orders windows with the same worst rank
(more surprise ranks higher), which ROC/PR curves need; it does not depend on g, so
choosing g (label-free or oracle) is choosing a threshold on one fixed score. We use
the worst rank rather than the number of misses because the count depends on g.

Training is next-key cross-entropy on normal windows. Identical (history, key) pairs
are merged and weighted by their count: the same objective as the full pair list, at
a fraction of the cost (HDFS repeats a few hundred session shapes thousands of times).

:meth:`DeepLogConfig.reference` is DeepLog as wuyifan18/DeepLog's ``LogKeyModel_train.py``
and ``LogKeyModel_predict.py`` run it on HDFS sessions (the public code most papers'
DeepLog figures come from): the key id itself is the LSTM's one input feature (no
embedding); only keys with ``history`` real keys before them are trained and checked;
a window of at most ``history`` keys is padded with the key ``-1``, which is never a
class, so the padded position is never among the top g and the window is *always*
flagged (``short_windows="pad"``: score ``vocab_size + 1``, above every g). It is a
length rule, not a learnt end of session: training windows are never padded. The full
pair list is trained on in batches of 2,048 for 300 epochs (``merge_pairs=False``: the
reference's number of optimiser steps), with no early stopping and the last weights.
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
from logsieve.logs.vocab import N_SPECIAL, PAD, UNK

__all__ = ["DeepLog", "DeepLogConfig", "NextKeyLSTM", "next_key_scores"]

DeepLogRule = Literal["validation", "paper"]
ShortWindows = Literal["score", "pad"]
KeyInput = Literal["embedding", "scalar"]


@dataclass(frozen=True)
class DeepLogConfig:
    """DeepLog settings; defaults follow the paper and its popular implementation.

    ``threshold_rule``: ``"validation"`` = the smallest g whose false-positive rate on
    the normal validation windows is ``<= max_fpr``; ``"paper"`` = the fixed ``g``.
    Both are computed and kept in ``DeepLog.thresholds``.

    ``short_windows``: ``"score"`` = every key after ``[CLS]`` is predicted from its
    ``[PAD]``-left-padded history; ``"pad"`` = the reference code's rule: only keys with
    ``history`` keys before them count, and a window of at most ``history`` keys is
    always anomalous. ``key_input``: ``"embedding"`` (a learnt vector per key) or
    ``"scalar"`` (the key id as one float, as the reference feeds it). ``merge_pairs``:
    train on distinct (history, key) pairs weighted by count (fewer optimiser steps)
    or on the full list. ``patience`` 0 = no early stopping, keep the last weights.
    """

    vocab_size: int
    history: int = 10
    embed_dim: int = 64
    hidden: int = 64
    n_layers: int = 2
    g: int = 9
    threshold_rule: DeepLogRule = "validation"
    max_fpr: float = 0.01
    epochs: int = 300
    batch_size: int = 2048
    lr: float = 1e-3
    patience: int = 10  # epochs without a better validation loss; 0 = never stop early
    seed: int = 0
    short_windows: ShortWindows = "score"
    key_input: KeyInput = "embedding"
    merge_pairs: bool = True

    def __post_init__(self) -> None:
        check_int("deeplog.vocab_size", self.vocab_size, N_SPECIAL + 1)
        for name in ("history", "embed_dim", "hidden", "n_layers", "g", "epochs", "batch_size"):
            check_int(f"deeplog.{name}", getattr(self, name), 1)
        check_int("deeplog.patience", self.patience, 0)
        check_int("deeplog.seed", self.seed, 0)
        if self.threshold_rule not in ("validation", "paper"):
            raise ConfigError(
                "deeplog.threshold_rule", self.threshold_rule, "'validation' or 'paper'"
            )
        check_float("deeplog.max_fpr", self.max_fpr, 0.0, 1.0, open_low=False)
        check_float("deeplog.lr", self.lr, 0.0, 1.0, open_low=True)
        if self.short_windows not in ("score", "pad"):
            raise ConfigError("deeplog.short_windows", self.short_windows, "'score' or 'pad'")
        if self.key_input not in ("embedding", "scalar"):
            raise ConfigError("deeplog.key_input", self.key_input, "'embedding' or 'scalar'")
        if not isinstance(self.merge_pairs, bool):
            raise ConfigError("deeplog.merge_pairs", self.merge_pairs, "True or False")

    @classmethod
    def reference(cls, vocab_size: int, **overrides: object) -> DeepLogConfig:
        """wuyifan18/DeepLog's settings (see the module doc); ``overrides`` replace any.

        Window 10, g = 9, a 2-layer LSTM of 64 over the scalar key id, Adam at 1e-3,
        batch 2,048, 300 epochs on the full pair list, the fixed g as the verdict.
        """
        args: dict[str, object] = {
            "history": 10, "hidden": 64, "n_layers": 2, "g": 9, "threshold_rule": "paper",
            "epochs": 300, "batch_size": 2048, "lr": 1e-3, "patience": 0,
            "short_windows": "pad", "key_input": "scalar", "merge_pairs": False,
        }  # fmt: skip
        args.update(overrides)
        return cls(vocab_size, **args)  # type: ignore[arg-type]


class NextKeyLSTM(nn.Module):
    """Embedding (or the scalar key id) → stacked LSTM → linear: logits of the next key."""

    def __init__(self, cfg: DeepLogConfig) -> None:
        super().__init__()
        self.scalar = cfg.key_input == "scalar"
        if not self.scalar:
            self.emb = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        width = 1 if self.scalar else cfg.embed_dim
        self.lstm = nn.LSTM(width, cfg.hidden, cfg.n_layers, batch_first=True)
        self.head = nn.Linear(cfg.hidden, cfg.vocab_size)

    def forward(self, hist: Tensor) -> Tensor:
        # Scalar: the reference feeds ``event id - 1`` as one float; here the template id
        # (token id - N_SPECIAL). x: (B, h, 1) or (B, h, E).
        x = (hist - N_SPECIAL).float().unsqueeze(-1) if self.scalar else self.emb(hist)
        out, _ = self.lstm(x)  # (B, h, H)
        logits: Tensor = self.head(out[:, -1])  # (B, V)
        return logits


def next_key_scores(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-key score ``(rank - 1) + (1 - p_true)``, float64 ``(N,)``; miss at g ⇔ ``> g``.

    ``logits`` ``(N, V)``, ``targets`` int64 ``(N,)``.
    """
    true = logits.gather(1, targets[:, None])  # (N, 1)
    above = (logits > true).sum(dim=1)  # (N,) = rank - 1
    p = F.softmax(logits.double(), dim=-1).gather(1, targets[:, None]).squeeze(1)  # (N,)
    return above.double() + (1.0 - p)


def pairs(
    windows: Sequence[IdArray], history: int, vocab_size: int, full_history: bool = False
) -> tuple[IdArray, IdArray]:
    """``(rows int64[N, history + 1], owner int64[N])``: each key after ``[CLS]`` with its
    left-padded history (columns ``:history``) and the key (last column).

    ``full_history``: only keys with ``history`` keys before them (the reference code's
    rows; no ``[CLS]``, no ``[PAD]``); a window of at most ``history`` keys has none.
    """
    rows, owner = [], []
    for i, w in enumerate(windows):
        w = np.asarray(w, dtype=np.int64)
        w = np.where((w >= 0) & (w < vocab_size), w, UNK)  # unseen ids are [UNK]
        if full_history:
            if len(w) - 1 > history:
                rows.append(np.lib.stride_tricks.sliding_window_view(w[1:], history + 1))
                owner.append(np.full(len(w) - 1 - history, i, dtype=np.int64))
            continue
        if len(w) < 2:
            continue  # only [CLS]: nothing to predict
        padded = np.concatenate([np.full(history, PAD, dtype=np.int64), w])
        # Row t (t >= 1) = w[t-history .. t]: the history of key t, then key t.
        rows.append(np.lib.stride_tricks.sliding_window_view(padded, history + 1)[1:])
        owner.append(np.full(len(w) - 1, i, dtype=np.int64))
    if not rows:
        return np.zeros((0, history + 1), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(owner)


def _unique(rows: IdArray) -> tuple[IdArray, IdArray, IdArray]:
    """``(distinct rows, inverse, counts)``."""
    uniq, inv, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    return uniq, inv.reshape(-1), counts


class DeepLog(Baseline):
    """DeepLog next-key LSTM; ``score > threshold`` ⇔ a key falls outside the top g."""

    name = "deeplog"

    def __init__(self, cfg: DeepLogConfig) -> None:
        super().__init__()
        self.cfg = cfg
        with seeded(cfg.seed):
            self.model = NextKeyLSTM(cfg).eval()
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}

    def fit(self, train: Sequence[IdArray], validation: Sequence[IdArray]) -> None:
        """Train on normal windows; g by validation FPR (and the paper's g) into ``thresholds``."""
        cfg = self.cfg
        rows, _ = self._pairs(train)
        if len(rows) == 0:
            raise DataError("deeplog.fit: no training window has a key to predict")
        if cfg.merge_pairs:
            uniq, _, counts = _unique(rows)
        else:  # the reference's full pair list: as many optimiser steps as it takes
            uniq, counts = rows, np.ones(len(rows), dtype=np.int64)
        if cfg.threshold_rule == "validation" and not len(validation):
            raise DataError("deeplog.fit: threshold_rule='validation' needs validation windows")
        val_rows, _ = self._pairs(validation)
        val_uniq, _, val_counts = _unique(val_rows) if len(val_rows) else (val_rows, None, None)
        rng = np.random.default_rng(cfg.seed)
        with seeded(cfg.seed):
            self.model = NextKeyLSTM(cfg).train()
            opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
            best, bad = (float("inf"), copy.deepcopy(self.model.state_dict())), 0
            for _ in range(cfg.epochs):
                order = rng.permutation(len(uniq))
                total = 0.0
                for start in range(0, len(order), cfg.batch_size):
                    idx = order[start : start + cfg.batch_size]
                    loss = self._loss(uniq[idx], counts[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()  # type: ignore[no-untyped-call]
                    opt.step()
                    total += loss.item() * float(counts[idx].sum())
                self.history["train_loss"].append(total / float(counts.sum()))
                if val_counts is None:
                    continue
                with torch.no_grad():
                    self.model.eval()
                    val = self._loss(val_uniq, val_counts).item()
                    self.model.train()
                self.history["val_loss"].append(val)
                if val < best[0]:
                    best, bad = (val, copy.deepcopy(self.model.state_dict())), 0
                elif cfg.patience and (bad := bad + 1) >= cfg.patience:
                    break
            if val_counts is not None and cfg.patience:
                self.model.load_state_dict(best[1])
        self.model.eval()
        self.thresholds = {"paper": float(cfg.g)}
        if len(validation):
            candidates = np.arange(1, cfg.vocab_size + 1, dtype=np.float64)
            val_scores = self.score(validation)
            self.thresholds["validation"] = select_threshold(val_scores, cfg.max_fpr, candidates)
        self.threshold_rule = cfg.threshold_rule

    def _pairs(self, windows: Sequence[IdArray]) -> tuple[IdArray, IdArray]:
        cfg = self.cfg
        return pairs(windows, cfg.history, cfg.vocab_size, cfg.short_windows == "pad")

    def _loss(self, rows: IdArray, counts: IdArray) -> Tensor:
        # Mean cross-entropy over the original (repeated) pairs: weight each distinct one.
        t = torch.from_numpy(rows)
        w = torch.from_numpy(counts.astype(np.float32))
        ce = F.cross_entropy(self.model(t[:, :-1]), t[:, -1], reduction="none")  # (B,)
        return (ce * w).sum() / w.sum()

    @torch.no_grad()
    def score(self, windows: Sequence[IdArray]) -> FloatArray:
        """Worst key score per window (see the module doc); 0 for a window with no key.

        ``short_windows="pad"``: a window of at most ``history`` keys scores
        ``vocab_size + 1`` (its padding key is outside the top g for every g).
        """
        rows, owner = self._pairs(windows)
        out = np.zeros(len(windows), dtype=np.float64)
        if self.cfg.short_windows == "pad":
            short = np.array([len(w) - 1 <= self.cfg.history for w in windows], dtype=bool)
            out[short] = float(self.cfg.vocab_size + 1)
        if len(rows) == 0:
            return out
        uniq, inv, _ = _unique(rows)
        per_row = np.empty(len(uniq), dtype=np.float64)
        self.model.eval()
        for start in range(0, len(uniq), 4096):
            t = torch.from_numpy(uniq[start : start + 4096])
            per_row[start : start + 4096] = next_key_scores(self.model(t[:, :-1]), t[:, -1]).numpy()
        np.maximum.at(out, owner, per_row[inv])
        return out

    def threshold_candidates(self, scores: npt.ArrayLike = ()) -> FloatArray:
        """DeepLog's knob is the integer g: thresholds ``1, ..., vocab_size``."""
        return np.arange(1, self.cfg.vocab_size + 1, dtype=np.float64)

    def save(self, path: str | Path) -> None:
        """Config, LSTM weights and thresholds (``weights_only=True`` loadable)."""
        extra = {"thresholds": self.thresholds, "threshold_rule": self.threshold_rule}
        write_payload(path, self.name, asdict(self.cfg), self.model.state_dict(), extra)

    @classmethod
    def load(cls, path: str | Path) -> DeepLog:
        """Inverse of :meth:`save`."""
        payload = read_payload(path, cls.name)
        baseline = cls(build_config(DeepLogConfig, payload["config"], path))
        try:
            baseline.model.load_state_dict(payload["state_dict"])
        except RuntimeError as exc:
            raise BundleError(f"baseline {path}: weights do not match config ({exc})") from None
        restore_thresholds(baseline, payload["extra"], path)
        baseline.model.eval()
        return baseline
