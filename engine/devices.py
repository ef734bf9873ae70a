"""Names for the hardware a compiled artifact was built for.

A compiled engine only runs where it was compiled: AOTInductor CPU code uses the
build machine's vector ISA, a TensorRT plan is specific to a GPU model, its compute
capability and the TensorRT version. Artifact names carry these tags, so a bundle
copied to another machine rebuilds instead of loading something that crashes.
"""

from __future__ import annotations

import re

import torch

__all__ = ["device_tag", "slug"]


def slug(text: str) -> str:
    """``NVIDIA H100 80GB HBM3`` → ``nvidia-h100-80gb-hbm3``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_tag(device: str) -> str:
    """``cpu-avx2``, ``cpu-avx512``… or ``<gpu-name>-sm<cc>`` for ``cuda[:n]``."""
    if device == "cpu":
        return f"cpu-{slug(torch.backends.cpu.get_cpu_capability())}"
    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return f"{slug(torch.cuda.get_device_name(index))}-sm{major}{minor}"
