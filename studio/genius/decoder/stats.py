"""Speculative Decoder, the feature: what ``GET /v1/genius/decoder/stats`` answers.

The mechanism (diffusers' FirstBlockCache applied around every run, its per-task stats, the
A/B baselines and the process-wide aggregate) lives in ``studio.engine.step_cache``, whose
docstring defines every figure below.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from studio.engine.step_cache import DecoderStatsAggregate


def stats_summary(aggregate: DecoderStatsAggregate) -> "DecoderStatsSummary":
    """The aggregate's totals, per level and overall, as the API's response."""
    return DecoderStatsSummary(**aggregate.snapshot())


class DecoderTotals(BaseModel):
    """Step-cache totals over a set of tasks. The first six fields are the seed's."""

    total_tokens: int = Field(description="Transformer forward passes x latent tokens per pass, summed")
    accepted_tokens: int = Field(description="Tokens of passes whose remaining blocks were skipped "
                                             "(cached residual reused after the first-block draft was accepted)")
    acceptance_rate: float = Field(description="accepted_tokens / total_tokens (0 when nothing ran)")
    speedup_factor: float = Field(description="Sum of uncached times (a task's measured A/B baseline of "
                                              "acceleration=off runs of its shape where there was one, else its "
                                              "in-run estimate) / sum of measured denoising times; 1.0 = none")
    average_draft_time_ms: float = Field(description="Mean time of the first-block pass (the draft), cached runs only")
    average_verify_time_ms: float = Field(description="Mean time of the residual comparison (the verify)")
    tasks: int = Field(description="Completed tasks counted")
    steps: int = Field(description="Denoising steps")
    passes: int = Field(description="Transformer forward passes (steps x CFG branches)")
    passes_reused: int = Field(description="Passes served from the cache")
    draft_passes: int = Field(description="Passes with a timed draft")
    verify_passes: int = Field(description="Passes with a timed comparison")
    denoise_seconds: float = Field(description="Measured denoising time")
    uncached_estimate_seconds: float = Field(description="Estimated denoising time without the cache (in-run "
                                                         "extrapolations)")
    speedup_basis: str = Field("estimate", description="'measured' (every cached task had an A/B baseline), "
                                                       "'estimate' (none had), 'mixed: ...', or 'off: ...'")
    measured_tasks: int = Field(0, description="Cached tasks whose speedup is an A/B measurement")


class CacheLevelInfo(BaseModel):
    method: str | None
    threshold: float | None
    rationale: str


class DecoderStatsSummary(DecoderTotals):
    """``GET /v1/genius/decoder/stats``: all completed tasks since the server started, with a
    breakdown per acceleration level and the level definitions. In memory: resets on restart."""

    since: str = Field(description="When counting started (server start, UTC, ISO 8601)")
    by_level: dict[str, DecoderTotals]
    levels: dict[str, CacheLevelInfo]
