"""REST route of the Speculative Decoder (the step cache): ``GET /v1/genius/decoder/stats``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from studio.api.auth import api_key
from studio.api.routes import COMMON, get_studio
from studio.core import Studio
from studio.genius.decoder.stats import DecoderStatsSummary, stats_summary
from studio.keys import ApiKey

router = APIRouter(prefix="/v1/genius/decoder", tags=["genius: decoder"], responses=COMMON)


@router.get("/stats", response_model=DecoderStatsSummary)
def stats(key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> DecoderStatsSummary:
    """Step-cache totals of every task completed since the server started (in memory), with a
    breakdown per ``acceleration`` level. ``total_tokens`` counts transformer passes x latent
    tokens; ``accepted_tokens`` those whose remaining blocks were skipped after the first-block
    draft was accepted; ``speedup_factor`` is uncached denoising time / measured denoising time
    (1.0 = no gain), the uncached time being measured (A/B against ``acceleration=off`` runs of
    the same shape on this server) where it was, else an in-run estimate: ``speedup_basis`` and
    ``measured_tasks`` say which. Definitions: ``studio.engine.step_cache``."""
    return stats_summary(studio.decoder_stats)
