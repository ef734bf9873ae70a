"""Windows holding a template the training data never had ([UNK]): LogConfig's
``unseen_templates`` decides whether they are anomalies outright or scored like others."""

from __future__ import annotations

import dataclasses
import math

import pytest

from logsieve.config import LogConfig
from logsieve.engine import load_engine
from logsieve.engine.windows import score_template_windows
from logsieve.errors import ConfigError
from logsieve.logs.vocab import UNSEEN_SCORE

from .conftest import Exported


def test_unseen_template_flags_the_window_under_the_flag_policy(exported: Exported) -> None:
    bundle = exported.bundle
    assert bundle.vocab is not None and bundle.log_config.unseen_templates == "novelty"
    engine = load_engine(bundle, "onnxruntime", threads=1)
    known = [0, 1, 0, 1]
    unseen = [0, 1, -1, 1]  # -1: a line no training template matched
    beyond = [0, 1, bundle.vocab.n_templates, 1]  # a template mined after training
    flag = dataclasses.replace(bundle.log_config, unseen_templates="flag")
    flagged = score_template_windows(engine, bundle.vocab, flag, [known, unseen, beyond])
    assert math.isfinite(flagged[0][0])
    assert flagged[1][0] == flagged[2][0] == UNSEEN_SCORE > bundle.threshold
    assert len(flagged[1][1]) == 4  # per-line evidence is kept

    scored = dataclasses.replace(bundle.log_config, unseen_templates="score")
    plain = score_template_windows(engine, bundle.vocab, scored, [known, unseen])
    assert plain[0][0] == pytest.approx(flagged[0][0])
    assert math.isfinite(plain[1][0])


def test_a_window_with_nothing_to_score_never_reaches_the_engine(exported: Exported) -> None:
    # Under "novelty" the engine gets only known lines; a window of new templates only
    # is empty here and is judged by the novelty rule instead.
    bundle = exported.bundle
    assert bundle.vocab is not None
    engine = load_engine(bundle, "onnxruntime", threads=1)
    out = score_template_windows(engine, bundle.vocab, bundle.log_config, [[], [0, 1], []])
    alone = score_template_windows(engine, bundle.vocab, bundle.log_config, [[0, 1]])
    assert out[0] == out[2] == (0.0, [])
    assert out[1][0] == pytest.approx(alone[0][0]) and len(out[1][1]) == 2


def test_unseen_policy_is_validated() -> None:
    with pytest.raises(ConfigError, match="unseen_templates"):
        LogConfig(unseen_templates="ignore")  # type: ignore[arg-type]
    assert LogConfig.from_dict({"unseen_templates": "score"}).unseen_templates == "score"
