"""The REST API under ``/v1``: the seed's core endpoints, media files and the task websocket.

Each route is a thin adapter over one ``Studio`` method; the core does the work and raises
``StudioError`` for anything a client did wrong.
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from starlette.convertors import StringConvertor, register_url_convertor

from studio.api.auth import api_key, websocket_key
from studio.core import Studio
from studio.engine.request import GenerationRequest
from studio.errors import StudioError, TaskNotFound
from studio.jobs.library import FEATURES
from studio.jobs.task_row import ALL_STATUSES
from studio.keys import ApiKey
from studio.media.paths import MEDIA_KINDS
from studio.views import GenreInfo, Health, ModelInfo, SubmitResponse, TaskPage, TaskResult, TaskStatus


class TaskUuidConvertor(StringConvertor):
    """Task ids are UUIDs: a route ``/{task_id:task_uuid}`` never swallows a sibling path such as
    ``/generate`` or ``/transform`` (which would also make ``OPTIONS`` advertise the wrong methods)."""

    regex = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


register_url_convertor("task_uuid", TaskUuidConvertor())


class ErrorBody(BaseModel):
    """Every error response: the seed's shape."""

    model_config = {"json_schema_extra": {"example": {"error": "Validation error",
                                                      "detail": "duration_seconds must be between 1 and 60",
                                                      "type": "ValueError"}}}
    error: str
    detail: str
    type: str

ERRORS = {code: {"description": text, "model": ErrorBody} for code, text in (
    (400, "Invalid parameters"), (401, "Missing or invalid API key"), (403, "API key revoked"),
    (404, "Task not found"), (409, "Result not available yet"), (413, "Request body too large"),
    (422, "Idempotency-Key reused with a different body"), (429, "Rate limited (see Retry-After)"),
    (503, "Maintenance: new work refused"))}
COMMON = {code: ERRORS[code] for code in (401, 403, 429)}

SERVICE_RESTART = 1012  # RFC 6455 close code: the server is restarting; clients may reconnect

_MEDIA_NAME = re.compile(r"^(?P<id>[0-9a-f-]{36})(?P<suffix>\.[a-z0-9]+)$")


async def get_studio(request: Request) -> Studio:
    return request.app.state.studio


router = APIRouter(prefix="/v1", responses=COMMON)

IdempotencyKey = Header(None, alias="Idempotency-Key", max_length=255,
                        description="Replays of the same key and body return the same task for 24 h")


@router.post("/generate", response_model=SubmitResponse, status_code=202, tags=["core"],
             responses={**{code: ERRORS[code] for code in (400, 413, 422, 503)},
                        404: {"description": "A LoRA in loras is not one of yours", "model": ErrorBody}})
def generate(body: GenerationRequest, idempotency_key: str | None = IdempotencyKey,
             key: ApiKey = Depends(api_key("generate")), studio: Studio = Depends(get_studio)) -> SubmitResponse:
    """Start a text-to-video task. The task is stored before the reply; poll ``/v1/status``,
    follow ``/v1/ws/{task_id}``, then fetch ``/v1/result``. With ``webhook_url``, signed
    ``task.*`` events are POSTed there.

    Rate limit: the key's ``/generate`` budget (5 per 10 s by default; ``generate=`` in
    ``ECHOEL_RATE_LIMITS``), shared with the other POSTs that queue GPU work: scene edit,
    inpaint, lip-sync, V2V and consistency tracking."""
    return studio.submit(body, owner=key.id, idempotency_key=idempotency_key)


@router.get("/status/{task_id}", response_model=TaskStatus, tags=["core"], responses={404: ERRORS[404]})
async def status(task_id: str, key: ApiKey = Depends(api_key()),
                 studio: Studio = Depends(get_studio)) -> TaskStatus:
    """Progress, current step, elapsed time, ETA and the latest preview of a task."""
    # async: two indexed SQLite reads, cheaper in the event loop than a thread-pool hop
    # (this is the route clients poll; see bench/bench_status_load.py).
    return studio.status(task_id, owner=key.id)


@router.get("/result/{task_id}", response_model=TaskResult, tags=["core"],
            responses={404: ERRORS[404], 409: ERRORS[409]})
def result(task_id: str, key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> TaskResult:
    """The finished video's URLs, size, timings and metadata (409 until it is completed)."""
    return studio.result(task_id, owner=key.id)


@router.post("/cancel/{task_id}", response_model=TaskStatus, tags=["core"], responses={404: ERRORS[404]})
def cancel(task_id: str, key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> TaskStatus:
    """Cancel a task: at once while pending, at the next denoising step while running."""
    return studio.cancel(task_id, owner=key.id)


@router.get("/tasks", response_model=TaskPage, tags=["library"], responses={400: ERRORS[400]})
def list_tasks(limit: int = Query(20, ge=1, le=100, description="Tasks per page (1-100)"),
               cursor: str | None = Query(None, pattern=r"^[0-9]{1,18}$",
                                          description="next_cursor of the previous page"),
               status: Literal[ALL_STATUSES] | None = Query(None, description="Only tasks in this state"),
               kind: Literal[tuple(FEATURES)] | None = Query(None, description="Only tasks of this kind (t2v: "
                                                                              "Generate); scene shots only so"),
               key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> TaskPage:
    """Your library: every task your key made, newest first, a page at a time, each with its
    video and thumbnail URLs once it has them. A scene's shots are listed only with
    ``kind=scene_shot``."""
    return studio.library(key.id, limit=limit, cursor=cursor, status=status, kind=kind)


@router.delete("/tasks/{task_id}", status_code=204, tags=["library"],
               responses={404: ERRORS[404], 409: {"description": "The task still runs, or a task waits on it",
                                                  "model": ErrorBody}})
def delete_task(task_id: str, key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> None:
    """Delete a finished task of yours: its row, events and files. A running task is a 409
    (cancel it first), as is one an unfinished task waits on (a scene's shot)."""
    studio.forget(task_id, owner=key.id)


@router.get("/models", response_model=list[ModelInfo], tags=["catalog"])
def models(_: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> list[ModelInfo]:
    """The model catalog, with whether each model can run on this server."""
    return studio.list_models()


@router.get("/genres", response_model=list[GenreInfo], tags=["catalog"])
def genres(_: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> list[GenreInfo]:
    """The style presets accepted by ``genre``."""
    return studio.list_genres()


@router.get("/health", response_model=Health, tags=["service"])
def health(_: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> Health:
    """Liveness, maintenance state and what is loaded."""
    return studio.health()


def _media_route(kind: str):
    media_type = {".mp4": "video/mp4", ".jpg": "image/jpeg"}[MEDIA_KINDS[kind]]

    def serve(name: str, key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> FileResponse:
        match = _MEDIA_NAME.match(name)
        if not match or match["suffix"] != MEDIA_KINDS[kind]:
            raise TaskNotFound(f"no such file: {name[:80]!r}")
        # Previews change during a run; everything else is immutable once written.
        cache = "no-store" if kind == "previews" else "public, max-age=86400, immutable"
        return FileResponse(studio.media_file(kind, match["id"], owner=key.id), media_type=media_type,
                            headers={"Cache-Control": cache})

    serve.__name__ = f"get_{kind}"
    serve.__doc__ = f"The {kind[:-1]} file of a task ({MEDIA_KINDS[kind]})."
    return serve


for _kind in MEDIA_KINDS:
    router.add_api_route(f"/{_kind}/{{name}}", _media_route(_kind), methods=["GET"], tags=["media"],
                         response_class=FileResponse, responses={404: ERRORS[404]})


@router.websocket("/ws/{task_id}")
async def task_events(websocket: WebSocket, task_id: str) -> None:
    """The seed's events for one task: ``progress``, ``frame_available``, then ``complete`` or
    ``error`` (or ``cancelled``), after which the server closes the socket. When the server
    shuts down first it closes with code 1012 (service restart): the task is still queued (a
    running one is requeued), so reconnect after the restart and follow it again."""
    studio: Studio = websocket.app.state.studio
    try:
        key = websocket_key(websocket)
    except StudioError as error:  # refused at the handshake, with the HTTP status and the seed's body
        await websocket.send_denial_response(
            JSONResponse(error.body(), status_code=error.status_code, headers=error.headers))
        return
    await websocket.accept()
    events = studio.follow_async(task_id, owner=key.id)
    try:
        first = await anext(events)
    except StudioError as error:
        await websocket.send_json({"type": "error", "error": error.title, "detail": error.detail,
                                   "error_type": error.type})
        await websocket.close(code=4404 if isinstance(error, TaskNotFound) else 4400)
        return
    disconnected = asyncio.ensure_future(_disconnect(websocket))
    try:
        event = first
        while True:
            await websocket.send_json(event.to_message())
            if event.is_final:
                await websocket.close()
                return
            next_event = asyncio.ensure_future(anext(events, None))
            await asyncio.wait({next_event, disconnected}, return_when=asyncio.FIRST_COMPLETED)
            if not next_event.done():  # the client left: stop following now, not at the next event
                next_event.cancel()
                return
            event = next_event.result()
            if event is None:  # the server is stopping: say so, the client reconnects after restart
                await websocket.close(code=SERVICE_RESTART, reason="server restarting; follow the task again")
                return
    except WebSocketDisconnect:
        pass
    finally:
        disconnected.cancel()
        await events.aclose()


async def _disconnect(websocket: WebSocket) -> None:
    """Returns when the client disconnects (anything it sends meanwhile is ignored)."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
