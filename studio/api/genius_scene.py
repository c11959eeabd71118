"""REST routes of the Scene Orchestrator: ``/v1/genius/scene``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from studio.api.auth import api_key
from studio.api.routes import COMMON, ERRORS, get_studio
from studio.core import Studio
from studio.genius import scene_task
from studio.genius.scene_task import SceneEditRequest, SceneEditResponse
from studio.keys import ApiKey

router = APIRouter(prefix="/v1/genius/scene", tags=["genius: scene"], responses=COMMON)


@router.post("/edit", response_model=SceneEditResponse, status_code=202,
             responses={code: ERRORS[code] for code in (400, 413, 503)})
def edit(body: SceneEditRequest, key: ApiKey = Depends(api_key("generate")),
         studio: Studio = Depends(get_studio)) -> SceneEditResponse:
    """Queue a multi-shot edit: one generation task per scene (``shot_task_ids``), then the edit
    task (``task_id``) that stitches them with transitions into one mp4. Auto transitions are
    chosen from measured colour and motion differences at each boundary when the shots exist;
    the result's ``metadata.details`` has the exact timeline and the reasons."""
    return scene_task.submit(studio, body, owner=key.id)


@router.get("/transitions")
def transitions(_: ApiKey = Depends(api_key())) -> list[dict]:
    """The transition types, what each does and its parameters."""
    return scene_task.transitions_catalog()
