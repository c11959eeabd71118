"""The step cache behind the Speculative Decoder: diffusers' FirstBlockCache with honest, measured stats.

This is engine mechanics (applied around every denoising run); the feature's API (its routes and
response shapes) is ``studio.genius.decoder.stats``. One module per job:

- ``levels``: the ``acceleration`` levels (off / balanced / fast), their thresholds and why;
- ``hooks``: enabling the cache on a pipeline's denoisers and recording every transformer pass
  (draft, verify, accept or reject) while a run denoises (``apply``);
- ``stats``: one task's figures (``DecoderStats``), with the definitions of every figure, and
  the in-memory A/B baselines of uncached runs (``BASELINES``);
- ``aggregate``: the totals over every completed task since the process started.

The names below are the package's public API: the engine (``studio.engine.t2v``), the worker and
the feature use them as ``studio.engine.step_cache.X`` (tests swap ``step_cache.apply``).
"""

from studio.engine.step_cache.aggregate import DecoderStatsAggregate
from studio.engine.step_cache.hooks import DecoderRecorder, apply, denoisers
from studio.engine.step_cache.levels import (
    CACHE_LEVELS,
    FIRST_BLOCK_CACHE,
    LEVELS,
    Acceleration,
    CacheLevel,
    cache_level,
)
from studio.engine.step_cache.stats import (
    BASELINE_RUNS,
    BASELINE_SHAPES,
    BASELINES,
    DecoderStats,
    PassRecord,
    UncachedBaselines,
    summarize,
)

__all__ = [
    "BASELINES", "BASELINE_RUNS", "BASELINE_SHAPES", "CACHE_LEVELS", "FIRST_BLOCK_CACHE", "LEVELS",
    "Acceleration", "CacheLevel", "DecoderRecorder", "DecoderStats", "DecoderStatsAggregate", "PassRecord",
    "UncachedBaselines", "apply", "cache_level", "denoisers", "summarize",
]
