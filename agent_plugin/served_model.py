"""One served model: a bundle's engine, vocabulary, threshold and flag builder, together.

The streaming pipeline scores every window with the model that was current when the
window *closed* (its template ids were matched by that model's matcher). A reload
(SIGHUP) makes a new :class:`ServedModel` current; the old one is *retired* and its
engine closed once the last window queued for it has been scored, so a window is
scored exactly once, by one model, and the flag carries that model's id.

Each served model scores through its own verdict cache
(:class:`~logsieve.engine.cache.CachedWindowEngine`, ``[pipeline]``
``verdict_cache_entries``/``verdict_cache_bytes``): a reload starts with an empty one,
so a result of one model never answers for another. ``cache_stats`` is what the
pipeline exports as ``logsieve_pipeline_cache_*``.

:func:`load_model` does the slow part (verify the bundle, start its engine, index its
templates) and runs off the event loop; nothing in it touches the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from logsieve.bundle import Bundle, open_bundle
from logsieve.engine.cache import CachedWindowEngine, CacheStats
from logsieve.engine.windows import WindowEngine
from logsieve.errors import BundleError
from logsieve.logs.templates import TemplateMatcher
from logsieve.logs.vocab import Vocab

from .flags import FlagBuilder
from .pipeline_config import PipelineConfig

__all__ = ["ServedModel", "check_servable", "load_model", "served_model"]


@dataclass(eq=False)
class ServedModel:
    """A bundle ready to score: see the module docstring.

    ``pending`` counts windows queued for this model and not yet scored; ``retired``
    is set when another model became current. ``engine`` is the model's cached
    engine when built by :func:`served_model`; ``cache_stats`` its cache's counters.
    """

    bundle: Bundle
    engine: WindowEngine
    matcher: TemplateMatcher
    builder: FlagBuilder
    cache_stats: CacheStats = field(default_factory=CacheStats)
    pending: int = 0
    retired: bool = False
    closed: bool = field(default=False, repr=False)

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    @property
    def vocab(self) -> Vocab | None:
        return self.bundle.vocab

    @property
    def threshold(self) -> float:
        return self.bundle.threshold

    @property
    def drained(self) -> bool:
        """Retired and nothing left to score: its engine can be closed."""
        return self.retired and self.pending == 0 and not self.closed


def check_servable(bundle: Bundle, current: Bundle | None = None) -> None:
    """A :class:`BundleError` unless ``bundle`` can serve raw lines (and, when it would
    replace ``current``, cuts the same windows: open windows cannot be re-cut)."""
    if bundle.templates_state is None or bundle.vocab is None:
        raise BundleError(
            f"{bundle.path}: trained on pre-parsed template ids, it cannot read raw "
            "lines (serve a bundle trained on raw lines)"
        )
    if current is not None:
        new, old = bundle.log_config, current.log_config
        if new.windows != old.windows or new.text_fields != old.text_fields:
            raise BundleError(
                f"{bundle.path}: its window settings or text fields differ from the "
                f"served bundle's ({current.path}); restart logsieve serve to change them"
            )


def served_model(bundle: Bundle, engine: WindowEngine, config: PipelineConfig) -> ServedModel:
    """Wrap a servable bundle and its started engine (templates indexed here) behind
    a new, empty verdict cache."""
    check_servable(bundle)
    assert bundle.templates_state is not None  # check_servable
    cached = CachedWindowEngine.for_bundle(
        engine, bundle, config.verdict_cache_entries, config.verdict_cache_bytes
    )
    builder = FlagBuilder(
        model_id=bundle.model_id,
        detector=bundle.detector,
        top_k=config.top_k,
        every_verdict=config.every_verdict,
        tag=config.flag_tag,
    )
    matcher = TemplateMatcher.from_state(bundle.templates_state)
    return ServedModel(bundle, cached, matcher, builder, cache_stats=cached.stats)


def load_model(
    path: Path,
    config: PipelineConfig,
    start_engine: Callable[[Bundle], WindowEngine],
    current: Bundle | None = None,
) -> ServedModel | None:
    """Open and verify the bundle at ``path``, start its engine with
    ``start_engine(bundle)`` and wrap both (blocking: run it off the event loop).
    The engine is closed again if anything after its start fails. None when the
    bundle is the very one ``current`` serves (same version, same model): no change."""
    bundle = open_bundle(path)
    if current is not None and (bundle.path, bundle.model_id) == (current.path, current.model_id):
        return None
    check_servable(bundle, current)
    engine = start_engine(bundle)
    try:
        return served_model(bundle, engine, config)
    except BaseException:
        engine.close()
        raise
