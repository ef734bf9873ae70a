"""Export the trained discriminator for serving: one ``torch.export`` program, two files.

The scoring module (:class:`ScoringModule`) wraps :meth:`Discriminator.score`: inputs
``ids int64[B, T]`` and ``lengths int64[B]``, outputs ``scores float32[B]`` (the
``[CLS]`` norm) and ``token_probs float32[B, T]`` (the per-token replaced probability,
the evidence of a flag). It is exported once with :func:`torch.export.export`, dynamic in
the batch (``1..max_batch``) and the sequence length (``2..max_len``), and from that one
ExportedProgram the bundle gets:

- ``program.pt2``: the ExportedProgram itself (:func:`torch.export.save`). The torch
  backend runs it and ``build-engine --backend aoti`` compiles it, so no engine needs
  our model code.
- ``model.onnx``: the same program lowered by ``torch.onnx.export(..., dynamo=True)``,
  inputs/outputs named as above with symbolic batch/seq axes (ONNX Runtime, TensorRT).

Both are added to the bundle's manifest with their hashes (:func:`logsieve.bundle.add_files`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from logsieve.bundle import Bundle, add_files, open_bundle
from logsieve.errors import BundleError, ConfigError
from logsieve.export.fastlogad.model import Discriminator, load_discriminator

__all__ = [
    "INPUTS",
    "ONNX_OPSET",
    "OUTPUTS",
    "ScoringModule",
    "export_bundle",
    "export_program",
    "to_onnx",
    "write_program",
]

INPUTS = ("ids", "lengths")
OUTPUTS = ("scores", "token_probs")
ONNX_OPSET = 18
DEFAULT_MAX_BATCH = 1024


class ScoringModule(nn.Module):
    """``(ids, lengths) -> (scores, token_probs)``: what every engine runs."""

    def __init__(self, model: Discriminator) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.score(ids, lengths)


def _example(max_len: int) -> tuple[Tensor, Tensor]:
    # Sizes that no dim is specialised on (0/1 and equal sizes are, by torch.export).
    ids = torch.full((3, min(7, max_len)), 4, dtype=torch.int64)
    ids[:, 0] = 1  # [CLS]
    lengths = torch.tensor([ids.shape[1], 3, 2], dtype=torch.int64)
    return ids, lengths


def _dynamic_shapes(max_batch: int, max_len: int) -> dict[str, Any]:
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    seq = torch.export.Dim("seq", min=2, max=max_len)
    return {"ids": {0: batch, 1: seq}, "lengths": {0: batch}}


def export_program(
    model: Discriminator, *, max_batch: int = DEFAULT_MAX_BATCH, max_len: int | None = None
) -> torch.export.ExportedProgram:
    """The scoring module as an ExportedProgram, dynamic in batch and sequence length."""
    max_len = max_len or model.cfg.max_len
    if not 2 <= max_len <= model.cfg.max_len:
        raise ConfigError("max_len", max_len, f"2..{model.cfg.max_len} (the model's positions)")
    if max_batch < 2:
        raise ConfigError("max_batch", max_batch, "an integer >= 2")
    module = ScoringModule(model.eval()).eval()
    with torch.no_grad():
        return torch.export.export(
            module, _example(max_len), dynamic_shapes=_dynamic_shapes(max_batch, max_len)
        )


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence the ONNX exporter's progress prints and its optional-op warnings."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def to_onnx(
    program: torch.export.ExportedProgram, path: Path, *, max_batch: int, max_len: int
) -> None:
    """Lower ``program`` (exported with the same bounds) to one ONNX file at ``path``."""
    with _quiet():
        onnx_program = torch.onnx.export(
            program,
            _example(max_len),
            dynamo=True,
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_shapes=_dynamic_shapes(max_batch, max_len),
            opset_version=ONNX_OPSET,
            external_data=False,
            verbose=False,
        )
        if onnx_program is None:  # only the legacy exporter returns None
            raise BundleError("torch.onnx.export returned no program")
        onnx_program.save(str(path))


def write_program(
    bundle: Bundle,
    program: torch.export.ExportedProgram,
    *,
    max_batch: int,
    max_len: int,
    started: float,
) -> Bundle:
    """Save ``program`` as ``program.pt2``, lower it to ``model.onnx``, and add both to
    the bundle with the ``onnx``/``program`` manifest tables every detector shares."""
    with tempfile.TemporaryDirectory(dir=bundle.path, prefix=".export.") as tmp:
        program_path = Path(tmp) / "program.pt2"
        onnx_path = Path(tmp) / "model.onnx"
        torch.export.save(program, program_path)
        to_onnx(program, onnx_path, max_batch=max_batch, max_len=max_len)
        axes = {"ids": {"0": "batch", "1": "seq"}, "lengths": {"0": "batch"}}
        patch = {
            "onnx": {
                "inputs": list(INPUTS),
                "outputs": list(OUTPUTS),
                "dtypes": dict.fromkeys(INPUTS, "int64") | dict.fromkeys(OUTPUTS, "float32"),
                "dynamic_axes": {
                    **axes,
                    "scores": {"0": "batch"},
                    "token_probs": {"0": "batch", "1": "seq"},
                },
                "opset": ONNX_OPSET,
            },
            "program": {
                "max_batch": max_batch,
                "max_len": max_len,
                "min_len": 2,
                "torch": torch.__version__,
                "export_seconds": round(time.perf_counter() - started, 1),
            },
        }
        return add_files(bundle.path, {"program.pt2": program_path, "model.onnx": onnx_path}, patch)


def export_bundle(
    path: Path, *, max_batch: int = DEFAULT_MAX_BATCH, max_len: int | None = None
) -> Bundle:
    """Write ``program.pt2`` and ``model.onnx`` into the bundle at ``path``."""
    bundle = open_bundle(path)
    if bundle.detector != "fastlogad":
        raise BundleError(f"{bundle.path}: export handles fastlogad bundles, not {bundle.detector}")
    model = load_discriminator(bundle.file("model.pt"))
    max_len = max_len or model.cfg.max_len
    t0 = time.perf_counter()
    program = export_program(model, max_batch=max_batch, max_len=max_len)
    return write_program(bundle, program, max_batch=max_batch, max_len=max_len, started=t0)
