"""The one interface every inference backend implements.

An engine scores padded windows: ``ids int64[B, T]`` (position 0 is ``[CLS]``, padding
is ``[PAD]`` = 0) with ``lengths int64[B]``, and returns ``scores float32[B]`` (the
``[CLS]`` norm; higher is more anomalous) and ``token_probs float32[B, T]`` (per-token
replaced probability, 0 at padding). Inputs and outputs are numpy arrays so callers never
need torch; backends that run on torch convert at their edge.

Callers normally go through :func:`logsieve.engine.batching.score_windows`, which
buckets windows by length so a batch of short windows is not padded to ``max_len``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from logsieve.bundle import Bundle, add_files
from logsieve.errors import ConfigError

__all__ = [
    "BACKENDS",
    "BACKEND_CHOICES",
    "BUILDABLE",
    "COMBINATIONS",
    "PRECISIONS",
    "Engine",
    "EngineInfo",
    "FloatArray",
    "IdArray",
    "add_engine_file",
    "check_inputs",
]

IdArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

# The backend names, declared once: every option, config check and registry reads these.
BACKENDS = ("tensorrt", "aoti", "onnxruntime", "torch")
BACKEND_CHOICES = ("auto", *BACKENDS)  # what a user may ask for: auto picks the fastest here
BUILDABLE = ("tensorrt", "aoti", "onnxruntime")  # backends with an artifact to build
PRECISIONS = ("fp32", "fp16", "int8")
# Every (backend, precision, device) combination this package builds and runs; the one
# list the backend test suite, the engine benchmark and the parity report iterate over.
COMBINATIONS: tuple[tuple[str, str, str], ...] = (
    ("torch", "fp32", "cpu"),
    ("onnxruntime", "fp32", "cpu"),
    ("onnxruntime", "int8", "cpu"),
    ("aoti", "fp32", "cpu"),
    ("torch", "fp32", "cuda"),
    ("aoti", "fp32", "cuda"),
    ("aoti", "fp16", "cuda"),
    ("tensorrt", "fp16", "cuda"),
)


@dataclass(frozen=True)
class EngineInfo:
    """What an engine is: shown in logs, metrics and benchmark tables."""

    backend: str
    precision: str
    device: str
    max_batch: int
    max_len: int
    artifact: str  # the bundle file it runs (program.pt2, model.onnx, engines/...)

    @property
    def label(self) -> str:
        return f"{self.backend}-{self.precision}-{self.device}"

    @classmethod
    def for_bundle(
        cls, bundle: Bundle, backend: str, precision: str, device: str, artifact: str
    ) -> EngineInfo:
        """The info of an engine over ``bundle``: its shape limits come from the export."""
        limits = bundle.manifest.get("program", {})
        return cls(
            backend=backend,
            precision=precision,
            device=device,
            max_batch=int(limits.get("max_batch", 1024)),
            max_len=int(limits.get("max_len", bundle.log_config.max_len)),
            artifact=artifact,
        )


def add_engine_file(bundle: Bundle, name: str, path: Path, entry: dict[str, object]) -> Bundle:
    """Move a built artifact into the bundle as ``name`` and describe it in the
    manifest's ``engines`` table (backend, precision, device, toolkit, build time)."""
    engines = dict(bundle.manifest.get("engines", {}))
    engines[name] = entry
    return add_files(bundle.path, {name: path}, {"engines": engines})


@runtime_checkable
class Engine(Protocol):
    """A compiled (or reference) scoring function loaded from a bundle."""

    info: EngineInfo

    def score(self, ids: IdArray, lengths: IdArray) -> tuple[FloatArray, FloatArray]:
        """``(scores float32[B], token_probs float32[B, T])`` for one padded batch."""
        ...


def check_inputs(ids: IdArray, lengths: IdArray, info: EngineInfo) -> None:
    """Reject a batch the engine cannot run, naming the limit (before any backend sees it)."""
    if ids.ndim != 2 or lengths.ndim != 1 or ids.shape[0] != lengths.shape[0]:
        raise ConfigError("ids/lengths", (ids.shape, lengths.shape), "shapes [B, T] and [B]")
    b, t = ids.shape
    if not 1 <= b <= info.max_batch:
        raise ConfigError("batch", b, f"1..{info.max_batch} for {info.label}")
    if not 2 <= t <= info.max_len:
        raise ConfigError("sequence length", t, f"2..{info.max_len} for {info.label}")
