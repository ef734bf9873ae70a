"""Inference engines: one Engine interface, several backends (logsieve.engine).

``load_engine(bundle, "auto")`` gives the fastest engine this machine can run;
``score_windows(engine, windows)`` scores windows of mixed lengths with length
bucketing. Importing this package does not import torch (the ONNX Runtime path
never needs it); backends that do import it load lazily.
"""

from .base import BACKENDS, COMBINATIONS, PRECISIONS, Engine, EngineInfo
from .batching import score_windows
from .registry import build_engine, load_engine

__all__ = [
    "BACKENDS",
    "COMBINATIONS",
    "PRECISIONS",
    "Engine",
    "EngineInfo",
    "build_engine",
    "load_engine",
    "score_windows",
]
