"""REST routes of the Consistency Tracker: ``/v1/genius/consistency``.

Register reference images of entities (characters, objects, ...), then track them through a
finished video. Entities belong to the calling API key and persist across restarts. Boxes are
``[x1, y1, x2, y2]`` pixel corners (``x2``/``y2`` exclusive). Detection, tracking and the
consistency score's formula are documented in ``studio.genius.consistency`` (``detection``, ``scoring``).
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Response

from studio.api.auth import api_key
from studio.api.routes import COMMON, ERRORS, ErrorBody, get_studio
from studio.core import Studio
from studio.genius.consistency import entities as consistency_entities
from studio.genius.consistency.result import track_result as read_track_result
from studio.genius.consistency.schema import EntityInfo, EntityList, RegisterEntityRequest, TrackRequest, TrackResult
from studio.genius.consistency.submit import submit
from studio.keys import ApiKey
from studio.views import SubmitResponse

router = APIRouter(prefix="/v1/genius/consistency", tags=["genius: consistency"], responses=COMMON)

_ENTITY_EXISTS = {"description": "You already have an entity of that name", "model": ErrorBody}
_NO_ENTITY = {"description": "No such entity of yours", "model": ErrorBody}
_NOT_READY = {"description": "The video task is not completed", "model": ErrorBody}


@router.post("/register-entity", response_model=EntityInfo, status_code=201,
             responses={400: ERRORS[400], 409: _ENTITY_EXISTS, 413: ERRORS[413]})
def register_entity(body: RegisterEntityRequest, key: ApiKey = Depends(api_key()),
                    studio: Studio = Depends(get_studio)) -> EntityInfo:
    """Register an entity from a reference image (PNG, JPEG or WebP, base64; each side
    16-2048 px, not flat). ``entity_type`` ``character`` also keeps the largest frontal face of
    the reference for face matching. Names are unique per API key: a second entity with the
    same name is refused with 409 (``EntityExists``); delete the old one first."""
    return consistency_entities.register_entity(studio.entities, body, owner=key.id)


@router.get("/entities", response_model=EntityList)
def entities(key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> EntityList:
    """Your registered entities, oldest first."""
    return consistency_entities.list_entities(studio.entities, owner=key.id)


@router.delete("/entities/{entity_id}", status_code=204, response_class=Response, responses={404: _NO_ENTITY})
def delete_entity(entity_id: str, key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> Response:
    """Delete one of your entities (404 for unknown ids and other keys' entities). Tracking
    tasks already queued keep their copy of it."""
    consistency_entities.delete_entity(studio.entities, entity_id, owner=key.id)
    return Response(status_code=204)


@router.post("/track/{task_id}", response_model=SubmitResponse, status_code=202,
             responses={400: ERRORS[400], 404: ERRORS[404], 409: _NOT_READY, 413: ERRORS[413], 503: ERRORS[503]})
def track(task_id: str, body: TrackRequest | None = Body(None), key: ApiKey = Depends(api_key("generate")),
          studio: Studio = Depends(get_studio)) -> SubmitResponse:
    """Queue a tracking task on the video of ``task_id`` (a completed task of yours) for
    ``entity_names`` (default: all your entities; 400 when you have none). The task's video is
    the input with each entity's box and confidence drawn; its result's ``metadata.details``,
    and ``GET /v1/genius/consistency/track/{tracking task id}``, hold the seed's response:
    ``entities_tracked``, ``frames_analyzed``, ``consistency_score`` (null when no entity was
    found) and ``entity_timelines`` ``{name: [{frame, bbox: [x1, y1, x2, y2], confidence}]}``,
    plus ``entity_scores`` per entity. An entity's score is ``appearance x stability``: the mean
    of the per-frame similarity of its box to the reference, times ``1 - min(1, 2 std)`` of that
    similarity. ``appearance_model`` picks the similarity: ``histogram`` (default, the classical
    path: ``(colour + structure) / 2``) or a CLIP image encoder (the model path:
    ``max(0, cosine)`` of embeddings; ``tiny-clip`` is offline and untrained, so its scores are
    meaningless by design; ``clip-vit-base-patch32`` comes from the Hugging Face Hub, 503
    ``ModelUnavailable`` when it is not cached and ``HF_HUB_OFFLINE`` is set). The result's
    ``metadata.path`` says which path ran.

    Rate limit: charged to the key's ``/generate`` budget (5 per 10 s by default; ``generate=`` in
    ``ECHOEL_RATE_LIMITS``), the same budget as ``POST /v1/generate``, since it queues GPU work."""
    return submit(studio.services, studio.entities, body or TrackRequest(), owner=key.id, task_id=task_id)


@router.get("/track/{task_id}", response_model=TrackResult, responses={404: ERRORS[404], 409: ERRORS[409]})
def track_result(task_id: str, key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> TrackResult:
    """The seed's tracking response for a tracking task (the id ``POST .../track`` returned):
    409 until it has completed, 404 for another key's task or a task of another kind."""
    return read_track_result(studio.services, task_id, owner=key.id)
