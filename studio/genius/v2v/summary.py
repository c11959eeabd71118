"""``GET /v1/genius/v2v/{task_id}``: a finished V2V task's result row, read seed-style."""

from __future__ import annotations

from typing import TYPE_CHECKING

from studio.genius.v2v.schema import KIND, V2VSummary

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices


def summary(services: "FeatureServices", task_id: str, owner: str) -> V2VSummary:
    """The seed-style view of a finished V2V task of ``owner``'s (404 for another kind or owner,
    409 until it has completed)."""
    result = services.result(task_id, owner, kind=KIND)
    meta, details = result.metadata, result.metadata.details
    return V2VSummary(task_id=result.task_id, status=result.status, mode=details["mode"], path=meta.path,
                      method=meta.method, parameters=details["parameters"], input=details["input"],
                      output=details["output"], frames=meta.frames, video_url=result.video_url,
                      thumbnail_url=result.thumbnail_url, generation_time_seconds=result.generation_time_seconds)
