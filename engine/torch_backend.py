"""torch backend: runs the bundle's ``program.pt2`` (the ExportedProgram) with eager torch.

This is the reference every compiled backend is compared against. It needs no model
code: :func:`torch.export.load` rebuilds the graph and its weights from the file.
"""

from __future__ import annotations

import numpy as np
import torch

from logsieve.bundle import Bundle
from logsieve.errors import BackendUnavailable, BundleError, ConfigError

from .base import EngineInfo, FloatArray, IdArray, check_inputs

__all__ = ["TorchEngine", "check_device", "indexed", "load_program", "program_on"]


def check_device(device: str) -> torch.device:
    """``cpu`` or an available ``cuda[:n]``; a clear error otherwise."""
    if device == "cpu":
        return torch.device("cpu")
    if not device.startswith("cuda"):
        raise ConfigError("device", device, "'cpu', 'cuda' or 'cuda:<n>'")
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            f"device {device!r}: torch {torch.__version__} sees no CUDA GPU "
            "(install a CUDA build of torch on a machine with an NVIDIA GPU, or use cpu)"
        )
    return torch.device(device)


def load_program(bundle: Bundle) -> torch.export.ExportedProgram:
    """The bundle's ExportedProgram; :class:`BundleError` if missing or unreadable."""
    path = bundle.file("program.pt2")
    try:
        return torch.export.load(path)
    except Exception as exc:  # torch raises many types for a foreign or damaged archive
        raise BundleError(f"{path}: torch.export.load failed ({exc})") from None


def program_on(bundle: Bundle, device: str) -> torch.export.ExportedProgram:
    """The bundle's ExportedProgram with its weights *and* the devices written into its
    graph moved to ``device``. ``module().to(device)`` is not enough: export records
    ``torch.arange(..., device=cpu)`` (the positions) as a constant, and the moved module
    then mixes cuda weights with cpu positions (seen on an H200)."""
    program = load_program(bundle)
    if device == "cpu":
        return program
    from torch.export.passes import move_to_device_pass

    # With an index: the graph's tensor-metadata asserts compare "cuda" with "cuda:0"
    # literally, and AOTInductor refuses the mismatch.
    return move_to_device_pass(program, str(indexed(device)))


def indexed(device: str) -> torch.device:
    """``cuda`` → ``cuda:<current>``; other devices unchanged."""
    target = torch.device(device)
    if target.type == "cuda" and target.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return target


class TorchEngine:
    """Eager execution of ``program.pt2`` (fp32), on CPU or a CUDA GPU."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        precision: str = "fp32",
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        if precision != "fp32":
            raise ConfigError("precision", precision, "'fp32' for the torch reference backend")
        self._device = check_device(device)
        if threads:
            torch.set_num_threads(threads)
        self._module = program_on(bundle, device).module()
        self.info = EngineInfo.for_bundle(bundle, "torch", precision, device, "program.pt2")

    def score(self, ids: IdArray, lengths: IdArray) -> tuple[FloatArray, FloatArray]:
        check_inputs(ids, lengths, self.info)
        with torch.inference_mode():
            s, p = self._module(
                torch.from_numpy(np.ascontiguousarray(ids, np.int64)).to(self._device),
                torch.from_numpy(lengths.astype(np.int64)).to(self._device),
            )
        return s.float().cpu().numpy(), p.float().cpu().numpy()
