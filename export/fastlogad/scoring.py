"""FastLogAD scoring: the eager model, and a log file → windows with verdicts and evidence.

``score_file`` cuts a log file into windows with the bundle's own settings and scores
them through a :class:`~logsieve.engine.windows.WindowEngine`, then pairs scores and
windows with :func:`logsieve.verdict.scored_windows`: the same code path and the same
verdict rule as the server (``logsieve serve``). ``score_incidents`` merges the
anomalous ones into incidents with :class:`logsieve.incidents.IncidentMerger`, as the
server does before it sends a flag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

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
from logsieve.incidents import Incident, IncidentMerger
from logsieve.logs.known import KnownWindows
from logsieve.logs.novelty import NoveltyTracker
from logsieve.logs.pipeline import Event, LinePipeline
from logsieve.logs.templates import TemplateMatcher
from logsieve.logs.vocab import UNK, UNSEEN_SCORE, holds_unknown, pad_batch
from logsieve.logs.windows import Window
from logsieve.verdict import ScoredWindow, model_inputs, scored_windows, seen_in_training

__all__ = [
    "EagerEngine",
    "load_model",
    "score_file",
    "score_file_windows",
    "score_incidents",
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
    rare: npt.NDArray[np.bool_] | None = None,
    known: KnownWindows | None = None,
) -> npt.NDArray[np.float64]:
    """Score of each window: the highest score of its chunks.

    ``unseen`` is ``LogConfig.unseen_templates``: ``flag`` scores a window holding
    ``[UNK]`` ``UNSEEN_SCORE`` (+inf); ``novelty`` scores the known lines only (the
    ``[UNK]`` tokens left out) and gives ``UNSEEN_SCORE`` to the windows ``rare`` marks
    (:meth:`~logsieve.export.data.prepare.Prepared.test_rare`); ``score`` scores the
    ``[UNK]`` tokens like any other. A window ``known`` holds verbatim (what the model
    scores, chunk for chunk) scores ``-inf``: normal, as :mod:`logsieve.logs.known` says.
    """
    if unseen == "novelty":
        windows = [[c[c != UNK] for c in w] for w in windows]
    flat = [c for w in windows for c in w]
    owner = np.repeat(np.arange(len(windows)), [len(w) for w in windows])
    chunk_scores = score_sequences(model, flat, batch_size) if flat else np.zeros(0)
    out = np.full(len(windows), -np.inf)
    np.maximum.at(out, owner, chunk_scores)
    if known is not None:
        out[[known.holds(w) for w in windows]] = -np.inf
    if unseen == "flag":
        out[[holds_unknown(w) for w in windows]] = UNSEEN_SCORE
    elif unseen == "novelty" and rare is not None:
        out[rare] = UNSEEN_SCORE
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
    on_pattern: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[ScoredWindow]:
    """Score every window of a log file, in order of closing.

    ``fmt`` (``None``: the bundle's), ``pattern`` and ``time_format`` default to the
    line format the bundle was trained on (:attr:`Bundle.line_format`). ``stats``
    counts the read (lines that did not parse, times that did not read).

    ``backend``: the :mod:`logsieve.engine` backend to score with (``auto``: the fastest
    one here) when the bundle is exported; ``None``, or a bundle that was never exported,
    scores with the eager model from ``model.pt``. ``on_pattern`` receives each
    new-pattern record (:meth:`~logsieve.logs.novelty.NoveltyTracker.reports`), as
    ``serve`` sends them upstream.
    """
    for _, scored in score_file_windows(
        bundle, path, fmt, pattern=pattern, time_format=time_format, batch=batch,
        backend=backend, stats=stats, on_pattern=on_pattern,
    ):  # fmt: skip
        yield scored


def score_incidents(
    bundle: Bundle,
    path: Path,
    fmt: str | None,
    *,
    pattern: str | None = None,
    time_format: str | None = None,
    batch: int = 64,
    backend: str | None = "auto",
    stats: ReadStats | None = None,
    on_window: Callable[[ScoredWindow], None] | None = None,
    on_pattern: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[Incident]:
    """The incidents of a log file (what ``serve`` would flag for it), in order of
    completion; ``on_window`` sees every scored window first (counts, normal verdicts).

    Sliding windows: overlapping anomalous windows of a host are one incident; session
    windows: one anomalous window is one incident (:mod:`logsieve.incidents`).
    """
    merger = IncidentMerger.for_windows(bundle.log_config.windows, bundle.model_id)
    for window, scored in score_file_windows(
        bundle, path, fmt, pattern=pattern, time_format=time_format, batch=batch,
        backend=backend, stats=stats, on_pattern=on_pattern,
    ):  # fmt: skip
        if on_window is not None:
            on_window(scored)
        yield from merger.push(scored, window.items)[1]
    yield from merger.flush()


def score_file_windows(
    bundle: Bundle,
    path: Path,
    fmt: str | None,
    *,
    pattern: str | None = None,
    time_format: str | None = None,
    batch: int = 64,
    backend: str | None = "auto",
    stats: ReadStats | None = None,
    on_pattern: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[tuple[Window[Event], ScoredWindow]]:
    """:func:`score_file`, each scored window with the window it was cut as (whose
    items identify a line shared by overlapping windows)."""
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
    pipe = LinePipeline(bundle.log_config, TemplateMatcher.from_state(bundle.templates_state))
    pending: list[Window[Event]] = []
    try:
        for record in read_records(path, line_format, stats=stats):
            pending.extend(pipe.feed(record))
            if len(pending) >= batch:
                yield from zip(
                    pending, _scored(engine, bundle, pending, pipe.novelty, on_pattern),
                    strict=True,
                )  # fmt: skip
                pending = []
        pending.extend(pipe.flush())
        for start in range(0, len(pending), batch):
            part = pending[start : start + batch]
            yield from zip(
                part, _scored(engine, bundle, part, pipe.novelty, on_pattern), strict=True
            )
    finally:
        engine.close()


def _scored(
    engine: LocalWindowEngine,
    bundle: Bundle,
    windows: Sequence[Window[Event]],
    novelty: NoveltyTracker | None,
    on_pattern: Callable[[dict[str, Any]], None] | None,
) -> list[ScoredWindow]:
    if not windows:
        return []
    ids, judged = model_inputs(windows, novelty)
    scores = engine.score_ids(ids)
    if novelty is not None and on_pattern is not None:
        for report in novelty.reports():
            on_pattern(report)
    seen = seen_in_training(ids, bundle)
    return scored_windows(windows, scores, bundle.vocab, bundle.threshold, judged, seen)
