"""Bundle write/verify: round trip, and corrupt, truncated or mismatched bundles fail
with a BundleError that names the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logsieve.bundle import SCHEMA_VERSION, BundleWriter, open_bundle
from logsieve.config import LogConfig, TemplateConfig
from logsieve.errors import BundleError
from logsieve.logs.vocab import Vocab


def _write(path: Path, **manifest: object) -> Path:
    vocab = Vocab(3, ["a <*>", "b", "c <NUM>"])
    writer = BundleWriter(path)
    writer.add_text("vocab.json", vocab.to_json())
    writer.add_json("templates.json", {"schema_version": 1, "templates": []})
    writer.add_with("model.pt", lambda p: p.write_bytes(b"\x00weights" * 100))
    body: dict[str, object] = {
        "detector": "fastlogad",
        "log": LogConfig(templates=TemplateConfig(depth=5, sim_th=0.5)).to_dict(),
        "vocab_size": vocab.size,
        "threshold": {"value": 1.5, "method": "quantile", "quantile": 0.99, "n": 10},
    }
    body.update(manifest)
    return writer.finish(body)


def test_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path / "b")
    bundle = open_bundle(path)
    assert bundle.detector == "fastlogad"
    assert bundle.threshold == 1.5
    assert bundle.vocab == Vocab(3, ["a <*>", "b", "c <NUM>"])
    assert bundle.log_config.templates.depth == 5
    assert bundle.manifest["schema_version"] == SCHEMA_VERSION
    assert len(bundle.model_id) == 12
    assert bundle.file("model.pt").read_bytes().startswith(b"\x00weights")
    with pytest.raises(BundleError, match=r"no model\.onnx"):
        bundle.file("model.onnx")


def test_rewrite_replaces_atomically(tmp_path: Path) -> None:
    path = _write(tmp_path / "b")
    _write(path, threshold={"value": 2.0})
    assert open_bundle(path).threshold == 2.0
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no staging dirs left behind


def test_corrupt_file_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "b")
    data = bytearray((path / "model.pt").read_bytes())
    data[3] ^= 0xFF
    (path / "model.pt").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.pt: sha256 does not match"):
        open_bundle(path)


def test_truncated_file_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "b")
    (path / "model.pt").write_bytes(b"\x00wei")
    with pytest.raises(BundleError, match=r"model\.pt: 4 bytes, manifest says 800"):
        open_bundle(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "b")
    (path / "vocab.json").unlink()
    with pytest.raises(BundleError, match=r"vocab\.json: listed in the manifest but missing"):
        open_bundle(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(schema_version=99), "schema_version=99"),
        (lambda m: m.update(detector="magic"), "detector='magic'"),
        (lambda m: m["files"].pop("model.pt"), "must list model.pt"),
        (lambda m: m.update(threshold=None), "threshold must be"),
        (lambda m: m.update(vocab_size=5), "manifest says 5"),
        (lambda m: m["log"].update(max_len=1), "bad log config"),
    ],
)
def test_mismatched_manifest(tmp_path: Path, edit: object, message: str) -> None:
    path = _write(tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)  # type: ignore[operator]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        open_bundle(path)


def test_not_json_and_not_a_dir(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a bundle directory"):
        open_bundle(tmp_path / "nope")
    path = _write(tmp_path / "b")
    (path / "manifest.json").write_text("{oops")
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON"):
        open_bundle(path)
