"""``logsieve update`` and ``rollback``: templates grown with stable ids, a fine-tuned new
version with its parent recorded, versioned homes and rolling back, on generated logs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from logsieve.bundle import open_bundle
from logsieve.bundle_versions import list_versions, rollback, set_current
from logsieve.cli.main import main
from logsieve.config import LogConfig
from logsieve.errors import BundleError, ConfigError
from logsieve.export.data.formats import read_records
from logsieve.export.fastlogad.model import load_discriminator
from logsieve.export.fastlogad.replay import read_normal_windows
from logsieve.export.update import UpdateRequest, grow_model, update_bundle
from logsieve.logs.pipeline import mine_templates
from logsieve.logs.template_growth import grow_templates
from logsieve.logs.templates import UNKNOWN, TemplateMatcher
from tests.agent_plugin.served import write_update_log

# --- templates -------------------------------------------------------------------------


def test_grown_templates_keep_known_ids_and_append_new_ones() -> None:
    config = LogConfig()
    old = ["disk sda1 ok after 3 tries", "disk sdb2 ok after 7 tries", "fan 2 spinning"]
    state = mine_templates(old, config)
    before = TemplateMatcher.from_state(state)
    new = [*old, "fan 9 spinning", "cache flushed in 12 ms", "cache flushed in 40 ms"]
    merged, growth = grow_templates(state, new, config)
    after = TemplateMatcher.from_state(merged)
    n_old = len(before.templates)
    assert (growth.known, growth.added, growth.lines_known) == (n_old, 1, 4)
    for line in [*old, "disk sdz9 ok after 1 tries"]:
        assert after.match(line) == before.match(line) != UNKNOWN
    assert before.match("cache flushed in 12 ms") == UNKNOWN
    assert after.match("cache flushed in 99 ms") == n_old  # the new template's id
    assert [t.template for t in after.templates[:n_old]] == [t.template for t in before.templates]


def test_a_new_template_never_takes_a_line_of_a_known_one() -> None:
    # Known: "<*> <*> c" (1 literal). The new lines "a b d", "a b e" do not match it, and
    # Drain mines "a b <*>" from them (2 literals): under the matching rule (more
    # literals win) it would take "a b c" from the known template, a line the update
    # never saw. It is generalised to "<*> b <*>" so the known one wins the tie.
    config = LogConfig()
    state = mine_templates(["q r c"], config)
    state["templates"][0]["template"] = "<*> <*> c"
    before = TemplateMatcher.from_state(state)
    merged, growth = grow_templates(state, ["a b d", "a b e"], config)
    after = TemplateMatcher.from_state(merged)
    assert growth.added == 1 and growth.generalised == 1
    assert merged["templates"][1]["template"] == "<*> b <*>"
    assert after.match("a b c") == before.match("a b c") == 0
    assert after.match("a b d") == after.match("a b e") == 1


# --- update and rollback ------------------------------------------------------------------


@pytest.fixture()
def home(tiny_home: Path) -> Path:
    """The tiny bundle updated in place on logs with one new template (shared: read only)."""
    return tiny_home


def test_update_adds_a_current_version_with_its_parent_recorded(home: Path) -> None:
    root = open_bundle(home, follow_current=False)
    new = open_bundle(home)
    assert new.path == home / "versions" / new.model_id and new.home == home
    assert new.model_id != root.model_id
    assert new.manifest["parent_model_id"] == root.model_id
    growth = new.manifest["update"]["template_growth"]
    assert growth["known"] == root.vocab.n_templates and growth["added"] >= 1  # type: ignore[union-attr]
    assert new.vocab is not None and root.vocab is not None
    assert new.vocab.n_templates == root.vocab.n_templates + growth["added"]
    assert new.vocab.templates[: root.vocab.n_templates] == root.vocab.templates  # type: ignore[index]
    assert {"program.pt2", "model.onnx"} <= set(new.manifest["files"])
    # The fine-tuned model kept the parent's size and grew its embedding by the new ids.
    model = load_discriminator(new.file("model.pt"))
    assert model.cfg.vocab_size == new.vocab.size
    assert model.cfg.d_model == root.manifest["model_args"]["d_model"]
    # The new template's lines now have an id: the snapshot template is known.
    matcher = TemplateMatcher.from_state(new.templates_state)  # type: ignore[arg-type]
    old_matcher = TemplateMatcher.from_state(root.templates_state)  # type: ignore[arg-type]
    snap = "Scheduled snapshot of block blk_1 on tier cold"
    assert old_matcher.match(snap) == UNKNOWN and matcher.match(snap) >= root.vocab.n_templates
    for r in read_records(home.parent / "train.log", "hdfs"):
        tid = old_matcher.match(r.text)
        assert tid == UNKNOWN or matcher.match(r.text) == tid


def test_rollback_switches_current_back_and_forth(home: Path, tmp_path: Path) -> None:
    work = tmp_path / "B"
    shutil.copytree(home, work, symlinks=True)
    new = open_bundle(work)
    versions = list_versions(work)
    assert [v.current for v in versions] == [False, True]
    back = rollback(work)
    assert back.model_id == new.manifest["parent_model_id"] and back.path == work
    assert open_bundle(work).model_id == back.model_id
    with pytest.raises(BundleError, match="no parent"):
        rollback(work)  # the root version was trained, not updated
    assert set_current(work, new.model_id).model_id == new.model_id
    result = CliRunner().invoke(main, ["rollback", "--bundle", str(work)])
    assert result.exit_code == 0, result.output
    assert open_bundle(work).model_id == back.model_id
    result = CliRunner().invoke(main, ["rollback", "--bundle", str(work), "--list"])
    assert result.exit_code == 0 and f"* {back.model_id}" in result.output
    result = CliRunner().invoke(main, ["rollback", "--bundle", str(work), "--to", "feedfeed"])
    assert result.exit_code != 0 and "no version 'feedfeed'" in result.output


def test_a_current_link_outside_the_home_is_refused(home: Path, tmp_path: Path) -> None:
    work = tmp_path / "B"
    shutil.copytree(home, work, symlinks=True)
    (work / "current").unlink()
    os.symlink(str(tmp_path), work / "current")
    with pytest.raises(BundleError, match="must point to"):
        open_bundle(work)
    (work / "current").unlink()
    os.symlink("versions/nope", work / "current")
    with pytest.raises(BundleError, match="no such version"):
        open_bundle(work)


def test_update_to_out_leaves_the_parent_alone(home: Path, tmp_path: Path) -> None:
    parent = open_bundle(home)
    out = tmp_path / "B2"
    data = home.parent / "update.log"
    new = update_bundle(
        UpdateRequest(home, data, out=out, rtd_epochs=1, hst_epochs=1, export=False, seed=1),
        progress=lambda _: None,
        report=lambda _: None,
    )
    assert new.path == out and new.manifest["parent_model_id"] == parent.model_id
    assert open_bundle(home).model_id == parent.model_id  # the home's current is unchanged
    assert new.manifest["update"]["mode"] == "finetune"
    assert json.loads((out / "manifest.json").read_text())["parent_model_id"] == parent.model_id


def test_grow_model_copies_weights_and_adds_rows(home: Path) -> None:
    import torch

    old = load_discriminator(open_bundle(home, follow_current=False).file("model.pt"))
    new = grow_model(old, old.cfg.vocab_size + 3)
    w_old, w_new = old.encoder.tok_emb.weight, new.encoder.tok_emb.weight
    assert w_new.shape[0] == w_old.shape[0] + 3
    assert torch.equal(w_new[: w_old.shape[0]], w_old)
    assert torch.equal(new.encoder.pos_emb.weight, old.encoder.pos_emb.weight)
    with pytest.raises(BundleError, match="shrank"):
        grow_model(old, old.cfg.vocab_size - 1)


def test_update_refuses_what_it_cannot_grow(tmp_path: Path, home: Path) -> None:
    with pytest.raises(ConfigError):
        UpdateRequest(home, tmp_path, mode="distil")  # type: ignore[arg-type]
    log = tmp_path / "u.log"
    write_update_log(log, 5, seed=3)
    with pytest.raises(BundleError, match="not a bundle"):
        update_bundle(UpdateRequest(tmp_path / "missing", log))
    version = open_bundle(home).path
    with pytest.raises(ConfigError, match="not one of its versions"):
        update_bundle(UpdateRequest(version, log))


def test_the_new_version_trains_and_calibrates_on_the_windows_the_parent_kept(
    home: Path,
) -> None:
    root, new = open_bundle(home, follow_current=False), open_bundle(home)
    kept_old, kept_new = read_normal_windows(root), read_normal_windows(new)
    assert kept_old is not None and kept_new is not None
    update = new.manifest["update"]
    assert update["parent_windows"] == {"train": len(kept_old[0]), "validation": len(kept_old[1])}
    assert {tuple(s) for s in kept_old[0]} <= {tuple(s) for s in kept_new[0]}
    n_val = len(kept_old[1]) + update["new_windows"]["validation"]
    assert new.manifest["threshold"]["n_validation"] == n_val == len(kept_new[1])


def test_kept_normal_windows_are_distinct_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from logsieve.export.fastlogad import replay

    seqs = [np.array([1, 4 + i % 5, 5]) for i in range(40)]
    doc = replay.normal_windows_doc(seqs, seqs)
    assert len(doc["train"]) == 5 and len(doc["validation"]) == 40
    monkeypatch.setattr(replay, "MAX_TOKENS", 9)
    doc = replay.normal_windows_doc(seqs, seqs)
    assert len(doc["train"]) == 3  # 3 tokens each
    assert doc["validation"] == [s.tolist() for s in seqs[-3:]]  # the most recent ones
