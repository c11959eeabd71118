"""Reading a finished tracking task: ``GET /v1/genius/consistency/track/{task_id}``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from studio.genius.consistency.schema import KIND, TrackResult
from studio.genius.consistency.scoring import HISTOGRAM

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices


def track_result(services: "FeatureServices", task_id: str, owner: str) -> TrackResult:
    """The seed's response for a tracking task of ``owner``'s: 404 for other kinds and owners,
    409 until it has completed."""
    result = services.result(task_id, owner, kind=KIND)  # TaskNotReady (409) until completed
    details: dict[str, Any] = result.metadata.details
    source = result.metadata.source or {}
    return TrackResult(task_id=result.task_id, source_task_id=source.get("task_id"), video_url=result.video_url,
                       appearance_model=details.get("appearance_model", HISTOGRAM),
                       **{k: details[k] for k in ("entities_tracked", "frames_analyzed", "consistency_score",
                                                 "entity_timelines", "entity_scores", "detect_every")})
