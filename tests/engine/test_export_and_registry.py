"""Export into the bundle, the registry's choices and errors, the CLI stages, and the
rule that the ONNX Runtime serving path never imports torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from logsieve.bundle import open_bundle
from logsieve.cli.main import main
from logsieve.engine import build_engine, load_engine
from logsieve.errors import BackendUnavailable, BundleError, ConfigError

from .conftest import Exported


def test_export_lists_program_and_onnx_with_hashes(exported: Exported) -> None:
    manifest = exported.bundle.manifest
    for name in ("program.pt2", "model.onnx"):
        assert len(manifest["files"][name]["sha256"]) == 64
    assert manifest["onnx"]["inputs"] == ["ids", "lengths"]
    assert manifest["onnx"]["outputs"] == ["scores", "token_probs"]
    assert manifest["onnx"]["dynamic_axes"]["ids"] == {"0": "batch", "1": "seq"}
    assert manifest["program"]["max_batch"] == 512


def _devices_in_graph(program: object) -> set[str]:
    import torch

    found = set()
    for node in program.graph.nodes:  # type: ignore[attr-defined]
        if "device" in node.kwargs:  # a torch.device, or a str once moved
            found.add(torch.device(node.kwargs["device"]).type)
    return found


def test_program_moved_to_another_device_keeps_no_cpu_constant(exported: Exported) -> None:
    """The GPU paths move the exported graph, not just its weights: export records the
    positions' ``arange(..., device=cpu)``, which made torch and AOTInductor on cuda fail
    ("found two different devices cuda:0, cpu", seen on an H200). ``meta`` stands in for
    cuda here, where no GPU is."""
    from logsieve.engine.torch_backend import load_program, program_on

    assert "cpu" in _devices_in_graph(load_program(exported.bundle))
    moved = program_on(exported.bundle, "meta")
    assert _devices_in_graph(moved) == {"meta"}
    assert all(p.device.type == "meta" for p in moved.state_dict.values())


def test_onnx_inputs_are_named_and_dynamic(exported: Exported) -> None:
    import onnx

    model = onnx.load(str(exported.bundle.file("model.onnx")))
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
    }
    assert set(dims) == {"ids", "lengths"}
    assert all(isinstance(d, str) for d in dims["ids"])  # symbolic, not fixed sizes


def test_corrupt_onnx_is_a_bundle_error(exported: Exported, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(exported.bundle.path, copy)
    with (copy / "model.onnx").open("r+b") as f:
        f.seek(100)
        f.write(b"\x00garbage\x00")
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 does not match"):
        load_engine(copy, "onnxruntime")


def test_auto_on_cpu_picks_onnxruntime_before_a_built_aoti_package(
    exported: Exported, tmp_path: Path
) -> None:
    bare = _copy_without(exported.bundle.path, tmp_path / "bare", ("engines/",))
    engine = load_engine(bare, "auto")
    assert engine.info.backend == "onnxruntime" and engine.info.device == "cpu"
    build_engine(bare, "onnxruntime", precision="int8")
    assert load_engine(bare, "auto").info.precision == "fp32"  # int8 is opt-in only
    aoti = "engines/aoti-" in "".join(open_bundle(exported.bundle.path).manifest["files"])
    if not aoti:
        build_engine(exported.bundle.path, "aoti", device="cpu")
    # A built package does not displace ONNX Runtime on a CPU (registry order, measured
    # by bench -k cpu_order); it is the fallback when ONNX Runtime cannot run.
    assert load_engine(exported.bundle.path, "auto").info.backend == "onnxruntime"
    no_onnx = _copy_without(exported.bundle.path, tmp_path / "no-onnx", ("model.onnx",))
    assert load_engine(no_onnx, "auto").info.backend == "aoti"


def _copy_without(src: Path, dst: Path, drop: tuple[str, ...]) -> Path:
    """A copy of a bundle with the files whose names start with ``drop`` removed."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    for name in [n for n in manifest["files"] if n.startswith(drop)]:
        del manifest["files"][name]
        (dst / name).unlink()
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_missing_artifacts_say_how_to_build(exported: Exported, tmp_path: Path) -> None:
    copy = _copy_without(exported.bundle.path, tmp_path / "b", ("engines/",))
    with pytest.raises(BundleError, match="build-engine --backend aoti"):
        load_engine(copy, "aoti", device="cpu", precision="fp32")


def test_build_missing_builds_the_int8_model(exported: Exported, tmp_path: Path) -> None:
    copy = _copy_without(exported.bundle.path, tmp_path / "b", ("engines/",))
    engine = load_engine(copy, "onnxruntime", precision="int8", build_missing=True)
    assert engine.info.artifact == "engines/ort-int8.onnx"
    assert "engines/ort-int8.onnx" in open_bundle(copy).manifest["files"]


def test_unexported_bundle_says_run_export(exported: Exported, tmp_path: Path) -> None:
    copy = _copy_without(exported.bundle.path, tmp_path / "b", ("program.pt2", "model.onnx"))
    with pytest.raises(BundleError, match=r"model\.onnx"):
        load_engine(copy, "onnxruntime")
    result = CliRunner().invoke(main, ["build-engine", "--bundle", str(copy), "--backend", "aoti"])
    assert result.exit_code == 1 and "logsieve export" in result.output


def test_bad_choices_are_config_errors(exported: Exported) -> None:
    with pytest.raises(ConfigError, match="backend"):
        load_engine(exported.bundle.path, "tvm")
    with pytest.raises(ConfigError, match="precision"):
        load_engine(exported.bundle.path, "onnxruntime", precision="fp16")
    with pytest.raises(ConfigError, match="precision"):
        load_engine(exported.bundle.path, "torch", precision="int8")


def test_tensorrt_absent_is_backend_unavailable(exported: Exported) -> None:
    pytest.importorskip("torch")
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    with pytest.raises(BackendUnavailable, match=r"pip install 'logsieve\[gpu\]'"):
        load_engine(exported.bundle.path, "tensorrt")
    result = CliRunner().invoke(
        main, ["build-engine", "--bundle", str(exported.bundle.path), "--backend", "tensorrt"]
    )
    assert result.exit_code == 1 and "TensorRT is not importable" in result.output


def test_onnxruntime_serving_path_never_imports_torch(exported: Exported, tmp_path: Path) -> None:
    bare = _copy_without(exported.bundle.path, tmp_path / "bare", ("engines/",))
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from logsieve.bundle import open_bundle
        from logsieve.engine import load_engine, score_windows
        engine = load_engine(open_bundle({str(bare)!r}), "auto")
        scores, _ = score_windows(engine, [np.array([1, 4, 5], dtype=np.int64)])
        assert engine.info.backend == "onnxruntime", engine.info
        bad = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print("TORCH" if bad else "CLEAN", float(scores[0]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("CLEAN"), out.stdout + out.stderr


def test_export_cli_and_score_with_an_engine(exported: Exported, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(exported.bundle.path, copy)
    result = CliRunner().invoke(main, ["export", "--bundle", str(copy), "--max-batch", "64"])
    assert result.exit_code == 0, result.output
    assert open_bundle(copy).manifest["program"]["max_batch"] == 64
    result = CliRunner().invoke(
        main,
        [
            "build-engine",
            "--bundle",
            str(copy),
            "--backend",
            "onnxruntime",
            "--precision",
            "int8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "engines/ort-int8.onnx" in open_bundle(copy).manifest["files"]


def test_aoti_build_refuses_a_package_that_does_not_load(tmp_path: Path) -> None:
    from logsieve.engine.aoti_backend import verify_in_child

    bad = tmp_path / "package.pt2"
    bad.write_bytes(b"PK\x03\x04 not a package")
    with pytest.raises(
        BackendUnavailable,
        match=r"loading and running it failed \(exit 1\) while loading the package \(\w+Error",
    ):
        verify_in_child(bad, "cpu")


def test_aoti_build_reports_a_loader_that_crashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash seen on an H200 (SIGSEGV inside aoti_load_package), reproduced by a child
    that really dies of SIGSEGV in a native call: the build fails naming the signal, the
    probe's step and the innermost Python frame; this process lives."""
    from logsieve.engine import aoti_backend

    crash = (
        "import ctypes, sys\n"
        "print('probe step: loading the package', file=sys.stderr, flush=True)\n"
        "def load_package():\n"
        "    ctypes.string_at(0)\n"
        "load_package()\n"
    )
    monkeypatch.setattr(aoti_backend, "_PROBE", crash)
    with pytest.raises(
        BackendUnavailable,
        match=r"crashed \(SIGSEGV\) while loading the package \(File .*in string_at\).*"
        r"not added to the bundle",
    ):
        aoti_backend.verify_in_child(tmp_path / "package.pt2", "cpu")
