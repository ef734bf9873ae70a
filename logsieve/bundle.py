"""The model bundle: the one contract between training and serving.

A bundle is a directory::

    manifest.json    schema_version, detector, log config, vocab size, threshold and
                     how it was chosen, model args, training summary, file hashes
    vocab.json       [PAD] [CLS] [MASK] [UNK] then one id per template
    templates.json   the template matcher's state (our own versioned JSON)
    normal_windows.json  token-id sequences of the normal training/validation windows
                     (what ``logsieve update`` trains and calibrates on with new logs)
    model.pt         checkpoint with model_args (read by ``logsieve.export`` only)
    program.pt2      the scoring module as a torch.export ExportedProgram (logsieve export)
    model.onnx       the same program lowered to ONNX
    engines/         compiled artifacts (logsieve build-engine), named by backend,
                     precision, device and toolkit version

A bundle may also be a *versioned home* (``logsieve update`` makes one, see
:mod:`logsieve.bundle_versions`): ``current`` is a symlink to the version in use
(``versions/<model_id>``, or ``.`` for the top-level bundle ``train`` wrote), and
:func:`open_bundle` follows it, so every command that takes a bundle takes a home.

Every file except the manifest is listed with its sha256 and size, and :func:`open_bundle`
checks them all before anything is used, so a corrupt, truncated or mismatched bundle
is a :class:`~logsieve.errors.BundleError` naming the file, never a crash later.
This module imports neither torch nor drain3: serving reads bundles without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logsieve.config import LINE_FORMATS, LineFormat, LogConfig
from logsieve.errors import BundleError, ConfigError
from logsieve.logs.known import KnownWindows
from logsieve.logs.vocab import Vocab

__all__ = [
    "DETECTORS",
    "MANIFEST",
    "SCHEMA_VERSION",
    "Bundle",
    "BundleWriter",
    "add_files",
    "current_version",
    "file_sha256",
    "open_bundle",
]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
DETECTORS = ("fastlogad", "adalog")
# Files every bundle of a detector must carry (others, like model.onnx, are optional).
# templates.json is absent when training read pre-parsed template ids (the HDFS session
# files): such a bundle scores id sequences but cannot read raw lines.
_REQUIRED = {
    "fastlogad": ("vocab.json", "model.pt"),
    "adalog": ("model.pt",),
}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class BundleWriter:
    """Builds a bundle in a temporary directory and moves it into place on
    :meth:`finish`, so a crash mid-write never leaves a half bundle at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self._files: list[str] = []

    @property
    def tmp(self) -> Path:
        """The directory files are staged in (for writers that need a path)."""
        return self._tmp

    def add_json(self, name: str, obj: Any) -> None:
        """Write ``obj`` as JSON under ``name``."""
        self.add_with(name, lambda p: p.write_text(json.dumps(obj, indent=1, sort_keys=True)))

    def add_text(self, name: str, text: str) -> None:
        """Write ``text`` (UTF-8) under ``name``."""
        self.add_with(name, lambda p: p.write_text(text, encoding="utf-8"))

    def add_with(self, name: str, write: Callable[[Path], object]) -> None:
        """Let ``write(path)`` create the file ``name`` (e.g. ``torch.save``)."""
        target = self._tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        write(target)
        if not target.is_file():
            raise BundleError(f"{name}: the writer created no file")
        self._files.append(name)

    def finish(self, manifest: Mapping[str, Any]) -> Path:
        """Hash every staged file, write the manifest and move the bundle into place
        (an existing bundle at ``path`` is replaced)."""
        files = {
            name: {
                "sha256": file_sha256(self._tmp / name),
                "bytes": (self._tmp / name).stat().st_size,
            }
            for name in sorted(self._files)
        }
        body = {**manifest, "schema_version": SCHEMA_VERSION, "files": files}
        (self._tmp / MANIFEST).write_text(json.dumps(body, indent=1, sort_keys=True))
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
            os.replace(self._tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop everything staged."""
        shutil.rmtree(self._tmp, ignore_errors=True)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest, log config, vocabulary and template state.

    ``path`` is the directory the files were read from (for a versioned home: the
    version ``current`` named when it was opened); ``home`` is the path it was opened
    by, what a reload opens again to pick up a new ``current`` (None: ``path``).
    """

    path: Path
    manifest: dict[str, Any]
    log_config: LogConfig
    vocab: Vocab | None
    templates_state: dict[str, Any] | None
    known: KnownWindows | None = None
    """Training windows held verbatim (:mod:`logsieve.logs.known`); None in old bundles."""
    home: Path | None = None

    @property
    def detector(self) -> str:
        return str(self.manifest["detector"])

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"]["value"])

    @property
    def line_format(self) -> LineFormat | None:
        """How the training data's raw lines split (``None``: not a raw-line bundle).

        Bundles written before the format was stored name only ``hdfs``/``bgl``/
        ``thunderbird`` in the manifest's ``format``: that is the whole format there.
        """
        stored = self.log_config.line_format
        if stored is not None:
            return stored
        name = self.manifest.get("format")
        if name in LINE_FORMATS and name != "lines":
            return LineFormat(str(name))
        return None

    @property
    def model_id(self) -> str:
        """Short stable id of the model: the first 12 hex digits of model.pt's hash."""
        return str(self.manifest["files"]["model.pt"]["sha256"][:12])

    def file(self, name: str) -> Path:
        """Path of a file the manifest lists; :class:`BundleError` if it lists none."""
        if name not in self.manifest["files"]:
            raise BundleError(
                f"{self.path}: the bundle has no {name} (run the stage that makes it)"
            )
        return self.path / name


def add_files(
    path: Path, files: Mapping[str, Path], manifest_patch: Mapping[str, Any] | None = None
) -> Bundle:
    """Add (or replace) files in an existing, verified bundle and update its manifest.

    ``files`` maps a bundle-relative name (``model.onnx``, ``engines/x.plan``) to a
    file already written *in the same filesystem* (it is moved, not copied). Each file
    lands under a temporary name first and is renamed into place; the manifest, with
    the new hashes and ``manifest_patch`` merged in at the top level, is replaced last
    and atomically, so a crash leaves either the old bundle or the new one verifiable.
    """
    bundle = open_bundle(path)  # never extend a bundle that is already broken
    manifest = dict(bundle.manifest)
    entries = dict(manifest["files"])
    for name, src in files.items():
        if name == MANIFEST or Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{path}: cannot add a file named {name!r}")
        target = bundle.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.partial")
        shutil.move(str(src), staged)
        entries[name] = {"sha256": file_sha256(staged), "bytes": staged.stat().st_size}
        os.replace(staged, target)
    manifest.update(manifest_patch or {})
    manifest["files"] = dict(sorted(entries.items()))
    staged_manifest = bundle.path / f".{MANIFEST}.partial"
    staged_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(staged_manifest, bundle.path / MANIFEST)
    return open_bundle(bundle.path)


def open_bundle(path: Path, *, follow_current: bool = True) -> Bundle:
    """Read and verify a bundle (or the current version of a versioned home); any
    problem is a :class:`BundleError` naming the file. ``follow_current=False`` reads
    the files at ``path`` itself (the root version of a home)."""
    home = Path(path)
    if not home.is_dir():
        raise BundleError(f"{home}: not a bundle directory")
    path = current_version(home) if follow_current else home
    manifest = _read_json(path, MANIFEST)
    if not isinstance(manifest, dict):
        raise BundleError(f"{path / MANIFEST}: expected a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{path / MANIFEST}: schema_version={version!r}, this logsieve reads {SCHEMA_VERSION}"
        )
    detector = manifest.get("detector")
    if detector not in DETECTORS:
        raise BundleError(f"{path / MANIFEST}: detector={detector!r}, expected one of {DETECTORS}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{path / MANIFEST}: no 'files' table")
    for name in _REQUIRED[detector]:
        if name not in files:
            raise BundleError(f"{path / MANIFEST}: a {detector} bundle must list {name}")
    for name, entry in files.items():
        _verify_file(path, name, entry)
    threshold = manifest.get("threshold")
    if not isinstance(threshold, dict) or not isinstance(threshold.get("value"), (int, float)):
        raise BundleError(f"{path / MANIFEST}: threshold must be {{'value': number, ...}}")
    try:
        log_config = LogConfig.from_dict(manifest.get("log", {}))
    except (ConfigError, TypeError, KeyError) as exc:
        raise BundleError(f"{path / MANIFEST}: bad log config ({exc})") from None
    vocab = None
    if "vocab.json" in files:
        vocab = Vocab.from_json((path / "vocab.json").read_bytes())
        size = manifest.get("vocab_size")
        if size is not None and size != vocab.size:
            raise BundleError(f"{path / 'vocab.json'}: {vocab.size} ids, manifest says {size}")
    templates = _read_json(path, "templates.json") if "templates.json" in files else None
    known = None
    if "known_windows.json" in files:
        try:
            known = KnownWindows.from_json(_read_json(path, "known_windows.json"))
        except BundleError as exc:
            raise BundleError(f"{path / 'known_windows.json'}: {exc}") from None
    return Bundle(path, manifest, log_config, vocab, templates, known, home)


CURRENT = "current"
VERSIONS = "versions"


def current_version(home: Path) -> Path:
    """The directory of the version ``home/current`` points to (``home`` itself when
    there is no ``current``). The link must name ``.`` or ``versions/<name>``: a link
    anywhere else is a :class:`BundleError`, never followed."""
    link = home / CURRENT
    if not link.is_symlink():
        if link.exists():
            raise BundleError(f"{link}: expected a symlink to versions/<model_id>")
        return home
    target = os.readlink(link)
    parts = Path(target).parts
    if target in (".", "./"):
        return home
    if len(parts) != 2 or parts[0] != VERSIONS or parts[1] in (".", ".."):
        raise BundleError(f"{link} -> {target}: must point to . or {VERSIONS}/<model_id>")
    version = home / VERSIONS / parts[1]
    if not version.is_dir():
        raise BundleError(f"{link} -> {target}: no such version")
    return version


def _verify_file(root: Path, name: str, entry: object) -> None:
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise BundleError(f"{root / MANIFEST}: files[{name!r}] has no sha256")
    target = root / name
    if not target.is_file():
        raise BundleError(f"{target}: listed in the manifest but missing")
    size = target.stat().st_size
    if "bytes" in entry and size != entry["bytes"]:
        raise BundleError(f"{target}: {size} bytes, manifest says {entry['bytes']} (truncated?)")
    if file_sha256(target) != entry["sha256"]:
        raise BundleError(f"{target}: sha256 does not match the manifest (corrupt or replaced)")


def _read_json(root: Path, name: str) -> Any:
    target = root / name
    try:
        return json.loads(target.read_bytes())
    except FileNotFoundError:
        raise BundleError(f"{target}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{target}: not valid JSON ({exc})") from None
