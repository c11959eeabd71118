"""The step cache's ``acceleration`` levels (``GenerationRequest.acceleration``): what each turns on, and why.

Thresholds and their rationale (``shared/research/perf_anchors.md`` §2; all figures are for the
*real* trained models):

=========  ==================  ==========================================================
level      cache               rationale
=========  ==================  ==========================================================
off        none                every pass computes every block; output bit-identical to
                               a run without this module
balanced   FirstBlockCache     Comfy-WaveSpeed's shipped Wan default. A third-party check on
           threshold 0.09      Wan2.2-A14B (RTX 4090, 20 steps) measured 1.85x at 0.10 with
                               "comparable quality"; at 0.05 the cache never fired there.
fast       FirstBlockCache     diffusers PR #11180 on Wan2.1-1.3B: 0.10 -> 2.5x, 0.20 ->
           threshold 0.15      3.9x, with "values below 0.2 work well; higher values lead to
                               blurring and artifacting". 0.15 stays clear of 0.2; it was
                               not measured directly (expect between 2.5x and 3.9x on 1.3B).
=========  ==================  ==========================================================

MagCache and TaylorSeer were considered (``bench/bench_step_cache.py`` compares them on the
tiny model). MagCache needs per-checkpoint magnitude ratios (diffusers ships only Flux's; Wan
needs a calibration run per model and step count) and skips the first block too, so it cannot
report a draft; TaylorSeer skips on a fixed schedule (no draft/verify at all) and shows the
largest drift from uncached Wan output in the published comparisons (PSNR 13.5 on 1.3B). Both
are therefore not used for the levels.

The offline ``tiny`` model is untrained: its first-block residual changes by ~2-9 % per step
(measured at 10-50 steps), less than a trained Wan's, so the same thresholds skip *more* there. Its figures
test the mechanism, not the quality trade-off of the real models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Acceleration = Literal["off", "balanced", "fast"]
LEVELS: tuple[str, ...] = ("off", "balanced", "fast")
FIRST_BLOCK_CACHE = "first_block_cache"


@dataclass(frozen=True)
class CacheLevel:
    """What one ``acceleration`` level turns on."""

    name: str
    method: str | None  # FIRST_BLOCK_CACHE, or None for off
    threshold: float | None
    rationale: str

    def config(self):
        """The diffusers cache config, or None for ``off``."""
        if self.method is None:
            return None
        from diffusers import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=self.threshold)


CACHE_LEVELS: dict[str, CacheLevel] = {
    "off": CacheLevel("off", None, None, "no cache: every transformer pass computes every block"),
    "balanced": CacheLevel(
        "balanced", FIRST_BLOCK_CACHE, 0.09,
        "FirstBlockCache 0.09: Comfy-WaveSpeed's Wan default; 0.10 measured 1.85x on Wan2.2-A14B "
        "with comparable quality (0.05 never fired there)"),
    "fast": CacheLevel(
        "fast", FIRST_BLOCK_CACHE, 0.15,
        "FirstBlockCache 0.15: below the 0.2 where diffusers PR #11180 reports blurring; "
        "0.10 gave 2.5x and 0.20 3.9x on Wan2.1-1.3B"),
}


def cache_level(level: str) -> CacheLevel:
    """The level named ``level``; ``ValueError`` naming the valid levels for anything else."""
    try:
        return CACHE_LEVELS[level]
    except KeyError:
        raise ValueError(f"acceleration must be one of {', '.join(LEVELS)}") from None
