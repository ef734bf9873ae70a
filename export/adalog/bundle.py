"""ADALog end to end: normal lines → calibrated ``adalog`` bundle → scores with evidence.

A per-line detector with no template parsing (DESIGN.md, "ADALog"): preprocessing and
the learned WordPiece tokenizer are in :mod:`export.adalog.text`, the small BERT and its
deterministic masked-likelihood score in :mod:`export.adalog.model`. The model is trained
from scratch (no pretrained weights can be downloaded here), so expect it to need more
normal data than the paper's fine-tuned BERT; ``AdaLogConfig.init_from`` starts from a
local checkpoint of the same architecture instead.

The threshold is the ``quantile`` (default 0.90) of the scores of the *validation* lines,
which the caller passes as normal: :func:`train_adalog_bundle` takes no labels at all.

Bundle (``detector: adalog``): ``tokenizer.json`` (our versioned JSON, preprocessing
included), ``model.pt`` (checkpoint with ``model_args``; its ``extra`` holds the tokenizer
too, so it is a self-contained ``init_from``), and after :func:`export_adalog_bundle`
``program.pt2`` + ``model.onnx`` with FastLogAD's input/output names: ``ids``, ``lengths``
→ ``scores`` (mean token NLL in nats) and ``token_probs`` (per token
``1 - exp(-NLL)`` in [0, 1]; 0 at ``[CLS]``/``[SEP]``/padding).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from logsieve import __version__
from logsieve.bundle import Bundle, BundleWriter, open_bundle
from logsieve.config import LogConfig
from logsieve.errors import BundleError, ConfigError
from logsieve.export.adalog.model import (
    AdaLogBert,
    AdaLogConfig,
    AdaLogScorer,
    load_adalog_model,
    score_ids,
)
from logsieve.export.adalog.model import train_mlm as _train_mlm
from logsieve.export.adalog.text import CLS, SEP, TOKENIZER_FORMAT, TextConfig, WordPieceTokenizer
from logsieve.export.calibrate import threshold_from_normal
from logsieve.export.data.lines import iter_lines
from logsieve.export.data.readers import parse_bgl_line, parse_thunderbird_line
from logsieve.export.fastlogad.model import save_checkpoint
from logsieve.export.program import INPUTS, OUTPUTS, write_program

__all__ = [
    "AdaLogConfig",
    "LineEvidence",
    "TextConfig",
    "export_adalog_bundle",
    "export_adalog_program",
    "load_adalog",
    "read_line_texts",
    "score_line_file",
    "score_lines",
    "train_adalog_bundle",
]

TOKENIZER_FILE = "tokenizer.json"
_PARSERS = {"bgl": parse_bgl_line, "thunderbird": parse_thunderbird_line}


def read_line_texts(path: str | Path, fmt: str) -> tuple[list[str], npt.NDArray[np.int64]]:
    """ADALog's view of a log file: ``(texts, labels)`` in file order.

    ``bgl``/``thunderbird``: the raw line without its label field (the whole header stays;
    preprocessing removes timestamps and masks addresses), label 0/1 from the dataset's
    own parser. ``lines``: every line as it is, label 0 (unlabelled counts as normal).
    """
    if fmt not in (*_PARSERS, "lines"):
        raise ConfigError("format", fmt, "bgl, thunderbird or lines")
    texts: list[str] = []
    labels: list[int] = []
    parse = _PARSERS.get(fmt)
    for _lineno, line in iter_lines(path):
        if parse is None:
            texts.append(line)
            labels.append(0)
            continue
        got = parse(line)
        fields = line.split(None, 1)
        texts.append(fields[1] if len(fields) == 2 else "")
        # An unparsable line keeps its label field's verdict (as export.data.readers does).
        labels.append(int(got[0].label or 0) if got else int(fields[0] != "-"))
    return texts, np.asarray(labels, dtype=np.int64)


def _initial(cfg: AdaLogConfig) -> tuple[AdaLogBert, WordPieceTokenizer] | None:
    if cfg.init_from is None:
        return None
    src = Path(cfg.init_from)
    ckpt = src / "model.pt" if src.is_dir() else src
    model, extra = load_adalog_model(ckpt)
    text = extra.get("tokenizer")
    if not isinstance(text, str):
        beside = ckpt.with_name(TOKENIZER_FILE)
        if not beside.is_file():
            raise BundleError(f"{ckpt}: no tokenizer in the checkpoint nor beside it")
        text = beside.read_text(encoding="utf-8")
    return model.train(), WordPieceTokenizer.from_json(text)


def train_adalog_bundle(
    train_lines: Sequence[str],
    val_lines: Sequence[str],
    out: Path,
    cfg: AdaLogConfig | None = None,
    *,
    text_cfg: TextConfig | None = None,
    fmt: str | None = None,
) -> Bundle:
    """Learn the tokenizer and the MLM model on ``train_lines``, calibrate the threshold
    on ``val_lines`` (both normal; no labels are taken), write the bundle at ``out``.

    With ``cfg.init_from`` the tokenizer and the model sizes come from that checkpoint
    (training continues from its weights); ``text_cfg`` and the size fields are ignored.
    """
    cfg = cfg or AdaLogConfig()
    text_cfg = text_cfg or TextConfig()
    t0 = time.perf_counter()
    start = _initial(cfg)
    if start is None:
        tokenizer = WordPieceTokenizer.train(train_lines, text_cfg)
        init = None
    else:
        init, tokenizer = start
    max_len = init.cfg.max_len if init is not None else cfg.max_len
    train_ids = [tokenizer.encode(line, max_len) for line in train_lines]
    val_ids = [tokenizer.encode(line, max_len) for line in val_lines]
    t1 = time.perf_counter()
    model, summary = _train_mlm(
        train_ids, val_ids, tokenizer.size, tokenizer.first_piece, cfg, init
    )
    t2 = time.perf_counter()
    calib = val_ids or train_ids  # tiny data sets: no held-out part
    threshold = threshold_from_normal(score_ids(model, calib)[0], cfg.quantile)
    log = LogConfig(masking=tokenizer.cfg.masking, max_len=max_len)
    extra = {"detector": "adalog", "train": cfg.to_dict(), "tokenizer": tokenizer.to_json()}
    writer = BundleWriter(out)
    try:
        writer.add_text(TOKENIZER_FILE, tokenizer.to_json())
        writer.add_with("model.pt", lambda p: save_checkpoint(p, model, model.model_args, extra))
        writer.finish(
            {
                "detector": "adalog",
                "format": fmt,
                "logsieve_version": __version__,
                "log": log.to_dict(),
                "tokenizer": {
                    "file": TOKENIZER_FILE,
                    "format": TOKENIZER_FORMAT,
                    "size": tokenizer.size,
                },
                "preprocessing": tokenizer.cfg.to_dict(),
                "threshold": {
                    "value": threshold,
                    "method": "quantile of normal validation scores",
                    "quantile": cfg.quantile,
                    "n_validation": len(calib),
                    "validation_held_out": bool(val_ids),
                },
                "model_args": model.model_args,
                "scoring": {
                    "n_patterns": model.n_patterns,
                    "score": "mean token negative log-likelihood (nats), fixed masking patterns",
                    "token_probs": "1 - exp(-token NLL); 0 at [CLS], [SEP] and padding",
                },
                "train": {
                    **cfg.to_dict(),
                    **summary,
                    "n_train_lines": len(train_ids),
                    "pretrained": cfg.init_from is not None,
                    "seconds": {"tokenizer": round(t1 - t0, 2), "train": round(t2 - t1, 2)},
                },
                "onnx": {"inputs": list(INPUTS), "outputs": list(OUTPUTS)},
            }
        )
    except BaseException:
        writer.abort()
        raise
    return open_bundle(out)


def load_adalog(bundle: Bundle) -> tuple[AdaLogBert, WordPieceTokenizer]:
    """The bundle's eager model (eval, CPU) and its tokenizer."""
    if bundle.detector != "adalog":
        raise BundleError(f"{bundle.path}: a {bundle.detector} bundle, not adalog")
    model, _extra = load_adalog_model(bundle.file("model.pt"))
    text = bundle.file(TOKENIZER_FILE).read_bytes()
    return model, WordPieceTokenizer.from_json(text)


@dataclass(frozen=True, slots=True)
class LineEvidence:
    """Why a line scored as it did: its tokens and the NLL (nats) of each."""

    tokens: list[str]
    nll: list[float]

    def top(self, n: int = 3) -> list[tuple[str, float]]:
        """The ``n`` least expected tokens, most surprising first."""
        order = sorted(range(len(self.nll)), key=lambda i: -self.nll[i])[:n]
        return [(self.tokens[i], self.nll[i]) for i in order]


def score_lines(
    bundle: Bundle, lines: Sequence[str], *, batch_size: int = 256
) -> tuple[npt.NDArray[np.float64], list[LineEvidence]]:
    """Score of every line (higher = more anomalous; flagged when ``> bundle.threshold``)
    and per-token evidence, with the eager model."""
    model, tokenizer = load_adalog(bundle)
    max_len = model.cfg.max_len
    seqs = [tokenizer.encode(line, max_len) for line in lines]
    scores, nll = score_ids(model, seqs, batch_size)
    evidence = [
        LineEvidence(tokenizer.pieces(s[1:-1]), [float(x) for x in t[1:-1]])
        for s, t in zip(seqs, nll, strict=True)
    ]
    return scores, evidence


def score_line_file(
    bundle: Bundle, path: Path, fmt: str, *, batch_size: int = 256
) -> tuple[list[str], npt.NDArray[np.float64], list[LineEvidence]]:
    """Every line of a log file with its score and evidence (``logsieve score``).

    ``fmt``: ``bgl``/``thunderbird`` strip their line headers; anything else reads the
    lines as they are.
    """
    texts, _labels = read_line_texts(path, fmt if fmt in _PARSERS else "lines")
    scores, evidence = score_lines(bundle, texts, batch_size=batch_size)
    return texts, scores, evidence


def _example(max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Sizes no dim gets specialised on: batch 3, length 9 (not 0/1, not k=7, not equal).
    T = min(9, max_len)
    ids = torch.full((3, T), 10, dtype=torch.int64)
    lengths = torch.tensor([T, 4, 2], dtype=torch.int64)
    for row, n in enumerate(lengths.tolist()):
        ids[row, 0], ids[row, n - 1], ids[row, n:] = CLS, SEP, 0
    return ids, lengths


def export_adalog_program(
    model: AdaLogBert, *, max_batch: int = 1024, max_len: int | None = None
) -> torch.export.ExportedProgram:
    """:class:`AdaLogScorer` as an ExportedProgram, dynamic in batch and length."""
    max_len = max_len or model.cfg.max_len
    if not 2 <= max_len <= model.cfg.max_len:
        raise ConfigError("max_len", max_len, f"2..{model.cfg.max_len} (the model's positions)")
    if max_batch < 2:
        raise ConfigError("max_batch", max_batch, "an integer >= 2")
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    seq = torch.export.Dim("seq", min=2, max=max_len)
    module = AdaLogScorer(model.eval()).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch's export stack warns about its own internal deprecations.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return torch.export.export(
            module,
            _example(max_len),
            dynamic_shapes={"ids": {0: batch, 1: seq}, "lengths": {0: batch}},
        )


def export_adalog_bundle(
    path: Path, *, max_batch: int = 1024, max_len: int | None = None
) -> Bundle:
    """Write ``program.pt2`` and ``model.onnx`` into the adalog bundle at ``path``."""
    bundle = open_bundle(path)
    model, _tok = load_adalog(bundle)
    max_len = max_len or model.cfg.max_len
    t0 = time.perf_counter()
    program = export_adalog_program(model, max_batch=max_batch, max_len=max_len)
    return write_program(bundle, program, max_batch=max_batch, max_len=max_len, started=t0)
