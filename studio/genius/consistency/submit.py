"""Queueing a Consistency Tracker run: ``POST /v1/genius/consistency/track/{task_id}``.

Tracking a video (``task_id`` of a completed task, or an upload through the UI / Gradio API) is
a task like any edit: the named entities (default: all of the owner's, at most
:data:`~studio.genius.consistency.schema.MAX_TRACKED`) are copied into the task's inputs at
submission, so deleting an entity later does not change a queued task. A hub appearance encoder
that cannot be loaded here (not cached while ``HF_HUB_OFFLINE`` is set) is refused here with
503 ``ModelUnavailable``, before anything is stored. The run: ``studio.genius.consistency.run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from studio.errors import ModelUnavailable
from studio.genius.consistency.entities import entities_to_track
from studio.genius.consistency.schema import KIND, MAX_TRACKED, ConsistencySpec, StoredEntity, TrackRequest
from studio.genius.consistency.scoring import HISTOGRAM
from studio.genius.edit_submit import estimate_seconds, new_inputs, store_source
from studio.models import appearance

if TYPE_CHECKING:
    from studio.genius.consistency.task import EntityStore
    from studio.jobs.services import FeatureServices
    from studio.views import SubmitResponse


def submit(services: "FeatureServices", entities: "EntityStore", request: TrackRequest, owner: str,
           task_id: str | None = None, upload: Path | None = None) -> "SubmitResponse":
    """Resolve the entities and the video, copy the references into the task's inputs, and
    queue the tracking task."""
    services.refuse_new_work()
    chosen = entities_to_track(entities, request.entity_names, owner, MAX_TRACKED)  # the caller's 4xx first
    path = "model" if request.appearance_model != HISTOGRAM else "classical"
    if path == "model":
        reason = appearance.unavailable_reason(request.appearance_model)
        if reason is not None:  # before anything is stored
            raise ModelUnavailable(f"appearance_model: {reason}")
    inputs_id, folder = new_inputs(services)
    source = store_source(services, owner, folder, task_id, upload)
    stored_entities = []
    for index, (info, png) in enumerate(chosen):
        name = f"entity-{index}.png"
        (folder / name).write_bytes(png)
        stored_entities.append(StoredEntity(entity_id=info.entity_id, name=info.name, entity_type=info.entity_type,
                                            file=name))
    spec = ConsistencySpec(inputs_id=inputs_id, source=source, detect_every=request.detect_every,
                           entities=stored_entities, appearance_model=request.appearance_model, path=path)
    return services.submit_spec(spec, owner, estimate_seconds(services, KIND, source.frames, path))
