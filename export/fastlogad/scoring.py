"""FastLogAD scoring: the eager model, and a log file → windows with verdicts and evidence.

``score_file`` cuts a log file into windows with the bundle's own settings and scores
them through a :class:`~logsieve.engine.windows.WindowEngine`, then pairs scores and
windows with :func:`logsieve.verdict.scored_windows`: the same code path and the same
verdict rule as the server (``logsieve serve``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from logsieve.bundle import Bundle
from logsieve.config import UnseenPolicy
from logsieve.engine.base import EngineInfo
from logsieve.engine.windows import LocalWindowEngine
from logsieve.errors import BundleError, ConfigError
from logsieve.export.data.formats import line_format_for, read_records
from logsieve.export.data.lines import ReadStats
from logsieve.export.fastlogad.model import Discriminator, load_discriminator
from logsieve.logs.pipeline import Event, windows_of
from logsieve.logs.templates import TemplateMatcher
from logsieve.logs.vocab import UNSEEN_SCORE, holds_unknown, pad_batch
from logsieve.logs.windows import Window
from logsieve.verdict import ScoredWindow, scored_windows, template_ids

__all__ = [
    "EagerEngine",
    "load_model",
    "score_file",
    "score_sequences",
    "score_windows",
]

IdArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def load_model(bundle: Bundle) -> Discriminator:
    """The bundle's discriminator (eval mode, CPU)."""
    if bundle.detector != "fastlogad":
        raise BundleError(f"{bundle.path}: a {bundle.detector} bundle, not fastlogad")
    return load_discriminator(bundle.file("model.pt"))


@torch.no_grad()
def score_sequences(
    model: Discriminator,
    seqs: Sequence[npt.NDArray[np.int64]],
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> FloatArray:
    """Anomaly score (``[CLS]`` norm) of every sequence, in input order, float64 ``[N]``.

    Batches are built over the sequences sorted by length, so a short window is never
    padded to a long one; results are scattered back to input order.
    """
    if batch_size < 1:
        raise ConfigError("batch_size", batch_size, "an integer >= 1")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = np.empty(len(seqs), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, lengths = pad_batch([seqs[i] for i in idx])
        norms = model.cls_norm(torch.from_numpy(ids).to(dev), torch.from_numpy(lengths).to(dev))
        out[idx] = norms.double().cpu().numpy()
    model.train(was_training)
    return out


def score_windows(
    model: Discriminator,
    windows: list[list[IdArray]],
    batch_size: int = 256,
    unseen: UnseenPolicy = "flag",
) -> npt.NDArray[np.float64]:
    """Score of each window: the highest score of its chunks; ``UNSEEN_SCORE`` for a
    window holding ``[UNK]`` when ``unseen="flag"`` (``LogConfig.unseen_templates``)."""
    flat = [c for w in windows for c in w]
    owner = np.repeat(np.arange(len(windows)), [len(w) for w in windows])
    chunk_scores = score_sequences(model, flat, batch_size) if flat else np.zeros(0)
    out = np.full(len(windows), -np.inf)
    np.maximum.at(out, owner, chunk_scores)
    if unseen == "flag":
        out[[holds_unknown(w) for w in windows]] = UNSEEN_SCORE
    return out


class EagerEngine:
    """The eager discriminator from ``model.pt`` behind the :class:`~logsieve.engine.Engine`
    interface: scores unexported bundles, and is the reference in the engine benchmark."""

    def __init__(self, bundle: Bundle, max_batch: int = 1024) -> None:
        self.model = load_model(bundle)
        self.info = EngineInfo(
            "torch-eager", "fp32", "cpu", max_batch, self.model.cfg.max_len, "model.pt"
        )

    @torch.inference_mode()
    def score(
        self, ids: IdArray, lengths: IdArray
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        scores, probs = self.model.score(torch.from_numpy(ids), torch.from_numpy(lengths))
        return scores.numpy(), probs.numpy()


def window_engine(bundle: Bundle, backend: str | None = "auto") -> LocalWindowEngine:
    """An engine for the bundle (``backend``), or the eager model when ``backend`` is None
    or the bundle was never exported."""
    if backend is not None and "program.pt2" in bundle.manifest["files"]:
        from logsieve.engine import load_engine

        return LocalWindowEngine.for_bundle(load_engine(bundle, backend), bundle)
    return LocalWindowEngine.for_bundle(EagerEngine(bundle), bundle)


def score_file(
    bundle: Bundle,
    path: Path,
    fmt: str | None,
    *,
    pattern: str | None = None,
    time_format: str | None = None,
    batch: int = 64,
    backend: str | None = "auto",
    stats: ReadStats | None = None,
) -> Iterator[ScoredWindow]:
    """Score every window of a log file, in order of closing.

    ``fmt`` (``None``: the bundle's), ``pattern`` and ``time_format`` default to the
    line format the bundle was trained on (:attr:`Bundle.line_format`). ``stats``
    counts the read (lines that did not parse, times that did not read).

    ``backend``: the :mod:`logsieve.engine` backend to score with (``auto``: the fastest
    one here) when the bundle is exported; ``None``, or a bundle that was never exported,
    scores with the eager model from ``model.pt``.
    """
    if batch < 1:
        raise ConfigError("batch", batch, "an integer >= 1")
    if bundle.templates_state is None or bundle.vocab is None:
        raise BundleError(
            f"{bundle.path}: trained on pre-parsed template ids, it cannot read raw lines "
            "(train on a raw-line dataset to score files)"
        )
    line_format = line_format_for(
        fmt, pattern=pattern, time_format=time_format, stored=bundle.line_format
    )
    engine = window_engine(bundle, backend)
    matcher = TemplateMatcher.from_state(bundle.templates_state)
    pending: list[Window[Event]] = []
    try:
        records = read_records(path, line_format, stats=stats)
        for window in windows_of(records, bundle.log_config, matcher):
            pending.append(window)
            if len(pending) >= batch:
                yield from _scored(engine, bundle, pending)
                pending = []
        yield from _scored(engine, bundle, pending)
    finally:
        engine.close()


def _scored(
    engine: LocalWindowEngine, bundle: Bundle, windows: Sequence[Window[Event]]
) -> list[ScoredWindow]:
    if not windows:
        return []
    scores = engine.score_ids(template_ids(windows))
    return scored_windows(windows, scores, bundle.vocab, bundle.threshold)
