"""Benchmark fixtures: the real-data folder (skipping when absent) and a throughput
registry that benchmarks fill in and that is printed, lines/s and ratios, at the end
of the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Same lookup as tests/conftest.py (kept local: bench/ is not a package of tests/).
_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# name -> {"lines": n, "lines_per_s": by mean, "lines_per_s_best": by min}
THROUGHPUT: dict[str, dict[str, float]] = {}
# "<kind> b<batch> <backend>-<precision>" -> {"windows_per_s", "ms_per_window", ...}
ENGINES: dict[str, dict[str, float]] = {}


def data_dir() -> Path | None:
    """``$LOGSIEVE_DATA`` or ``../shared/data`` beside the checkout, if present."""
    env = os.environ.get("LOGSIEVE_DATA")
    path = Path(env) if env else _DEFAULT_DATA
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder; skips the benchmark with a reason when it is absent."""
    path = data_dir()
    if path is None:
        pytest.skip(
            "real log data not found: set LOGSIEVE_DATA or place ../shared/data beside the repo"
        )
    return path


@pytest.fixture(scope="session")
def throughput() -> dict[str, dict[str, float]]:
    """Registry of measured lines/s, keyed by benchmark name, shared by a whole run."""
    return THROUGHPUT


@pytest.fixture(scope="session")
def engine_results() -> dict[str, dict[str, float]]:
    """Registry of engine windows/s, keyed ``"<kind> b<batch> <backend>-<precision>"``."""
    return ENGINES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BASELINES:
        _baseline_section(terminalreporter)
    if ENGINES:
        terminalreporter.section("engine throughput (windows/s, ratio to torch eager fp32)")
        for name in sorted(ENGINES):
            row = ENGINES[name]
            ref = ENGINES.get(f"{name.rsplit(' ', 1)[0]} torch-eager-fp32")
            ratio = f"{row['windows_per_s'] / ref['windows_per_s']:.2f}x" if ref else "-"
            gpu_ref = ENGINES.get(f"{name.rsplit(' ', 1)[0]} torch-fp32-cuda")
            gpu = (
                f" {row['windows_per_s'] / gpu_ref['windows_per_s']:.2f}x torch cuda"
                if gpu_ref and name.endswith("-cuda")
                else ""
            )
            terminalreporter.write_line(
                f"{name:38s} {row['windows_per_s']:>9,.0f} windows/s "
                f"{row['ms_per_window']:8.3f} ms/window {ratio:>6s} "
                f"(mean {row['mean_tokens']:.0f} tokens){gpu}"
            )
    if not THROUGHPUT:
        return
    terminalreporter.section("throughput (lines/s)")
    for name, row in sorted(THROUGHPUT.items()):
        extra = "".join(f"  {k}={v:.2f}" for k, v in row.items() if k.startswith("ratio"))
        terminalreporter.write_line(
            f"{name:40s} mean {row['lines_per_s']:>12,.0f}   best {row['lines_per_s_best']:>12,.0f}"
            f"   ({row['lines']:.0f} lines){extra}"
        )


# Latency versus baselines (issue 6): "b<batch> <method>" -> {"ms_per_item", "items_per_s",
# "items", "unit" ("window"; "line" for ADALog), "mean_tokens", "runs_on"}.
BASELINES: dict[str, dict[str, float | str]] = {}
BASELINE_REFERENCE = "fastlogad-auto"  # FastLogAD through load_engine(bundle, "auto")


@pytest.fixture(scope="session")
def baseline_results() -> dict[str, dict[str, float | str]]:
    """Registry of per-method latency, keyed ``"b<batch> <method>"``, for one run."""
    return BASELINES


def _baseline_section(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.section(
        "latency versus baselines (ratio = ms per item / FastLogAD fastest engine ms per "
        "window, same batch)"
    )

    def order(key: str) -> tuple[int, str]:
        batch, method = key.split(" ", 1)
        return int(batch[1:]), method

    for name in sorted(BASELINES, key=order):
        row = BASELINES[name]
        ref = BASELINES.get(f"{name.split(' ', 1)[0]} {BASELINE_REFERENCE}")
        ms = float(row["ms_per_item"])
        ratio = f"{ms / float(ref['ms_per_item']):.2f}x" if ref else "-"
        unit = str(row["unit"])
        terminalreporter.write_line(
            f"{name:26s} {ms:9.3f} ms/{unit:6s} {float(row['items_per_s']):>10,.0f} {unit}s/s "
            f"{ratio:>8s}  ({row['runs_on']}, {float(row['items']):.0f} {unit}s, "
            f"mean {float(row['mean_tokens']):.0f} tokens)"
        )
