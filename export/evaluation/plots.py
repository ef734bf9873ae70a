"""PNG figures of a harness run (matplotlib, Agg backend: no display needed).

- ``scores-<dataset>.png``: per method, histograms of the test scores of normal and
  anomalous windows with the label-free threshold marked (the FastLogAD paper's Fig. 5).
- ``curves-<dataset>.png``: ROC and precision-recall curves, every method on one figure.
- ``evidence-<dataset>-<method>.png``: for one flagged window, one bar per line (the
  line's template or text), the per-line evidence value.

matplotlib is imported lazily (only when a figure is drawn), so the rest of the package
works without it; a missing install is a :class:`~logsieve.errors.ConfigError` naming
the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from logsieve.errors import ConfigError

if TYPE_CHECKING:
    from logsieve.export.evaluation.harness import ScoredRun
    from logsieve.export.evaluation.methods import Evidence

__all__ = ["plot_curves", "plot_evidence", "plot_score_distributions", "write_plots"]

_NORMAL, _ANOMALOUS, _THRESHOLD = "#4477aa", "#cc3311", "#222222"
_MAX_STRIP = 40  # lines shown in an evidence strip (around the strongest line)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "plots", "matplotlib", "an installed package: pip install 'matplotlib>=3.8'"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _first_per_method(runs: Sequence[ScoredRun]) -> list[ScoredRun]:
    seen: dict[str, ScoredRun] = {}
    for r in runs:
        seen.setdefault(r.method, r)
    return list(seen.values())


def plot_score_distributions(runs: Sequence[ScoredRun], path: Path) -> Path:
    """Normal vs anomalous score histograms per method (first seed), threshold marked."""
    plt = _pyplot()
    runs = _first_per_method(runs)
    cols = min(3, len(runs))
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, r in zip(axes.flat, runs, strict=False):
        s = np.asarray(r.scores, dtype=np.float64)
        ok = np.isfinite(s)
        y = np.asarray(r.labels)[ok]
        s = s[ok]
        both = np.r_[s, r.threshold]
        # Scores spanning decades (a norm near 0 for normal windows, ~10 for anomalous
        # ones) get log bins: on a linear axis the threshold sits inside the first bin.
        log_x = both.size > 1 and both.min() > 0 and both.max() / both.min() > 100
        if log_x:
            edges = np.geomspace(both.min(), both.max(), 41)
            ax.set_xscale("log")
        else:
            edges = np.histogram_bin_edges(both, bins=40)
        for cls, colour, name in ((0, _NORMAL, "normal"), (1, _ANOMALOUS, "anomalous")):
            part = s[y == cls]
            if part.size:
                ax.hist(part, bins=edges, color=colour, alpha=0.6, label=f"{name} ({part.size})")
        ax.axvline(r.threshold, color=_THRESHOLD, linestyle="--", linewidth=1.5,
                   label=f"threshold {r.threshold:.4g}")  # fmt: skip
        ax.set_yscale("log")
        hidden = int((~ok).sum())  # +inf: windows holding an unseen template
        note = f"\n{hidden} windows at +inf (unseen template) not drawn" if hidden else ""
        ax.set_title(f"{r.method} (seed {r.seed}){note}", fontsize=10)
        ax.set_xlabel("anomaly score (higher = more anomalous)" + (", log scale" if log_x else ""))
        ax.set_ylabel("test windows (log scale)")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(runs) :]:
        ax.set_visible(False)
    fig.suptitle(f"{runs[0].dataset}: test score distributions")
    return _save(fig, plt, path)


def _curve_points(
    scores: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], ...]:
    """ROC (fpr, tpr) and PR (recall, precision) points, one per distinct score."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    cut = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[cut].astype(np.float64)
    fp = (cut + 1) - tp
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    fpr, tpr = np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]
    recall, precision = tp / n_pos, tp / (cut + 1)
    return fpr, tpr, np.r_[0.0, recall], np.r_[precision[0] if precision.size else 1.0, precision]


def plot_curves(runs: Sequence[ScoredRun], path: Path) -> Path:
    """ROC and PR curves of every method (first seed) on one figure."""
    from logsieve.export.evaluation.metrics import average_precision, roc_auc

    plt = _pyplot()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(11, 4.6))
    for r in _first_per_method(runs):
        s = np.nan_to_num(np.asarray(r.scores, dtype=np.float64), neginf=-1e300, posinf=1e300)
        fpr, tpr, rec, prec = _curve_points(s, r.labels)
        roc.plot(fpr, tpr, label=f"{r.method} (AUC {roc_auc(s, r.labels):.3f})")
        pr.step(
            rec, prec, where="post", label=f"{r.method} (AP {average_precision(s, r.labels):.3f})"
        )
    roc.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    roc.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)", title="ROC")
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    for ax in (roc, pr):
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{runs[0].dataset}: test windows (seed {runs[0].seed})")
    return _save(fig, plt, path)


def _shorten(text: str, n: int = 80) -> str:
    """Whitespace squeezed; a long text keeps its head and its tail (raw lines carry
    their message at the end, after the header)."""
    text = " ".join(text.split())
    if len(text) <= n:
        return text
    head = n // 4
    return text[:head] + "…" + text[len(text) - (n - head - 1) :]


def plot_evidence(ev: Evidence, path: Path) -> Path:
    """One flagged window as a strip: a bar per line, its evidence value, lines labelled."""
    plt = _pyplot()
    values = list(ev.values)
    lo = 0
    if len(values) > _MAX_STRIP:  # keep the strongest line and its neighbourhood
        top = int(np.argmax(values))
        lo = min(max(0, top - _MAX_STRIP // 2), len(values) - _MAX_STRIP)
    shown = values[lo : lo + _MAX_STRIP]
    labels = [
        f"{lo + i + 1:>3}  {_shorten(t)}" for i, t in enumerate(ev.labels[lo : lo + _MAX_STRIP])
    ]
    fig, ax = plt.subplots(figsize=(13, 1.6 + 0.32 * len(shown)))
    ypos = np.arange(len(shown))
    if ev.line_threshold is not None:
        # Scores on their own scale: red above the line threshold, blue below.
        colours = [_ANOMALOUS if v > ev.line_threshold else _NORMAL for v in shown]
        every = [*shown, ev.line_threshold]
        lo_x, hi_x = min(every), max(every)
        pad = 0.15 * (hi_x - lo_x or 1.0)
        ax.set_xlim(max(0.0, lo_x - pad) if lo_x >= 0 else lo_x - pad, hi_x + pad)
    else:
        cmap = plt.get_cmap("YlOrRd")
        colours = [cmap(0.1 + 0.9 * min(max(v, 0.0), 1.0)) for v in shown]
        if "probability" in ev.value_name:
            ax.set_xlim(0, 1)
    ax.barh(ypos, shown, color=colours, edgecolor="#555555", linewidth=0.5)
    ax.set_yticks(ypos, labels, fontsize=8, family="monospace")
    ax.invert_yaxis()  # line 1 at the top, as in the log
    if ev.line_threshold is not None:
        ax.axvline(ev.line_threshold, color=_THRESHOLD, linestyle="--", linewidth=1.2,
                   label=f"line threshold {ev.line_threshold:.4g}")  # fmt: skip
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(ev.value_name)
    more = lo or len(values) > len(shown)
    span = (
        f"lines {lo + 1}-{lo + len(shown)} of {len(values)}"
        if more
        else f"{len(values)} line{'s' if len(values) != 1 else ''}"
    )
    ax.set_title(
        f"{ev.method}: flagged window {_shorten(ev.key, 48)} ({span})\n"
        f"window score {ev.score:.4g} > threshold {ev.threshold:.4g}",
        fontsize=10,
        loc="left",
    )
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(runs: Sequence[ScoredRun], out_dir: Path) -> list[Path]:
    """All figures of a harness run into ``out_dir``; the paths written."""
    if not runs:
        return []
    out = Path(out_dir)
    dataset = runs[0].dataset
    paths = [
        plot_score_distributions(runs, out / f"scores-{dataset}.png"),
        plot_curves(runs, out / f"curves-{dataset}.png"),
    ]
    for r in _first_per_method(runs):
        if r.evidence is not None:
            paths.append(plot_evidence(r.evidence, out / f"evidence-{dataset}-{r.method}.png"))
    return paths
