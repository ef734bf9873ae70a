"""Bundle versions: what ``logsieve update`` adds and ``logsieve rollback`` switches between.

A versioned home is a bundle directory with a ``current`` pointer::

    B/manifest.json, vocab.json, ...   the version ``logsieve train`` wrote (the root)
    B/versions/<model_id>/             each version ``logsieve update`` made (a full bundle)
    B/current -> versions/<model_id>   the version in use (absent, or ``.``: the root)

:func:`~logsieve.bundle.open_bundle` follows ``current``, so ``serve``, ``score``,
``export`` and the rest take ``B`` as before. A version is written once and never
rewritten (``export``/``build-engine`` may add engine files to it); switching is one
atomic ``rename`` of the ``current`` link, so a server reloading on SIGHUP reads either
the old version or the new one, never a mix. Each version's manifest names its parent
(``parent_model_id``); rolling back points ``current`` at the parent again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from logsieve.bundle import CURRENT, MANIFEST, VERSIONS, Bundle, current_version, open_bundle
from logsieve.errors import BundleError

__all__ = ["Version", "add_version", "list_versions", "rollback", "set_current"]


@dataclass(frozen=True)
class Version:
    """One version of a home: its model id, parent, directory and whether it is in use."""

    model_id: str
    parent_model_id: str | None
    path: Path
    current: bool
    created: str | None


def list_versions(home: Path) -> list[Version]:
    """Every version of ``home``: the root first, then by creation time. Each one is
    verified (a corrupt version is a :class:`BundleError` naming it)."""
    home = Path(home)
    in_use = current_version(home).resolve()
    dirs = [home] if (home / MANIFEST).is_file() else []
    if (home / VERSIONS).is_dir():
        dirs += sorted(
            p for p in (home / VERSIONS).iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    out = []
    for d in dirs:
        b = open_bundle(d, follow_current=False)
        out.append(
            Version(
                model_id=b.model_id,
                parent_model_id=b.manifest.get("parent_model_id"),
                path=d,
                current=d.resolve() == in_use,
                created=(b.manifest.get("update") or {}).get("created"),
            )
        )
    root = [v for v in out if v.path == home]
    return root + sorted((v for v in out if v.path != home), key=lambda v: v.created or "")


def add_version(home: Path, staged: Path) -> Bundle:
    """Move the finished bundle ``staged`` (a folder inside ``home/versions``) to
    ``versions/<model_id>``; it is not made current (:func:`set_current` does that)."""
    home = Path(home)
    bundle = open_bundle(staged, follow_current=False)
    if any(v.model_id == bundle.model_id for v in list_versions(home)):
        raise BundleError(
            f"{home}: model {bundle.model_id} is already one of its versions "
            "(the same update twice?)"
        )
    target = home / VERSIONS / bundle.model_id
    os.replace(staged, target)
    return open_bundle(target, follow_current=False)


def set_current(home: Path, model_id: str) -> Bundle:
    """Point ``home/current`` at the version ``model_id`` (one atomic rename)."""
    home = Path(home)
    versions = list_versions(home)
    for v in versions:
        if v.model_id == model_id:
            target = "." if v.path == home else f"{VERSIONS}/{v.path.name}"
            staged = home / f".{CURRENT}.new"
            if staged.is_symlink() or staged.exists():
                staged.unlink()
            os.symlink(target, staged)
            os.replace(staged, home / CURRENT)
            return open_bundle(home)
    known = ", ".join(v.model_id for v in versions)
    raise BundleError(f"{home}: no version {model_id!r} (versions: {known})")


def rollback(home: Path, to: str | None = None) -> Bundle:
    """Make version ``to`` (default: the current version's parent) current; returns it."""
    home = Path(home)
    if to is None:
        now = open_bundle(home)
        to = now.manifest.get("parent_model_id")
        if not to:
            raise BundleError(f"{home}: version {now.model_id} has no parent to roll back to")
    return set_current(home, to)
