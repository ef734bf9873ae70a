"""The server's cheaper verdict path gives the verdicts of the full one."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from logsieve.config import LogConfig
from logsieve.errors import DataError
from logsieve.logs.known import KnownWindows
from logsieve.logs.vocab import Vocab
from logsieve.verdict import (
    ScoredWindow,
    TemplateNames,
    seen_in_training,
    template_text,
)


def test_template_names_are_the_names_a_list_would_hold() -> None:
    vocab = Vocab(3, templates=["open <*>", "close <*>", "read <*>"])
    ids = [0, -1, 2, 7]
    eager = [template_text(vocab, t) for t in ids]
    names = TemplateNames(vocab, ids)
    assert names == eager and list(names) == eager and len(names) == 4
    assert names[1] == "[UNK]" and names[-1] == "T7" and names[1:3] == eager[1:3]
    assert repr(names) == repr(eager) and names != eager[:3]
    new = TemplateNames(vocab, ids, [None, "disk <*> failed", None, None])
    assert list(new) == ["open <*>", "[NEW] disk <*> failed", "read <*>", "T7"]
    with pytest.raises(DataError, match="2 patterns for 4 template ids"):
        TemplateNames(vocab, ids, [None, None])


def _verdict(vocab: Vocab, ids: list[int], score: float, seen: bool) -> tuple[bool, list[str]]:
    sw = ScoredWindow(
        key="k", start=0.0, end=1.0, lines=["x"] * len(ids), template_ids=ids,
        templates=TemplateNames(vocab, ids), score=score, threshold=1.0,
        token_probs=[0.0] * len(ids), seen_in_training=seen,
    )  # fmt: skip
    return sw.anomaly, sw.reasons


def test_seen_only_where_flagged_changes_no_verdict_and_skips_the_rest() -> None:
    rng = random.Random(3)
    vocab, config = Vocab(6), LogConfig(max_len=5)
    windows = [[rng.randrange(6) for _ in range(rng.randrange(1, 9))] for _ in range(400)]
    known = KnownWindows.of_chunks(
        c for w in windows[::3] for c in vocab.encode(w, config.max_len, config.truncate)
    )
    bundle = SimpleNamespace(known=known, vocab=vocab, log_config=config)
    scored = [(rng.uniform(0.0, 2.0), [0.0] * len(w)) for w in windows]
    full = seen_in_training(windows, bundle)  # type: ignore[arg-type]
    flagged = [score > 1.0 for score, _ in scored]
    cheap = seen_in_training(windows, bundle, where=flagged)  # type: ignore[arg-type]
    assert full is not None and cheap is not None
    assert sum(full) > 50 and sum(cheap) > 20  # both cases occur
    for w, (score, _), a, b in zip(windows, scored, full, cheap, strict=True):
        assert b == (a and score > 1.0)
        assert _verdict(vocab, w, score, a) == _verdict(vocab, w, score, b)
    no_known = SimpleNamespace(known=None, vocab=vocab, log_config=config)
    assert seen_in_training(windows, no_known, where=flagged) is None  # type: ignore[arg-type]
