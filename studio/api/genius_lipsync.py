"""REST routes of the Lip-Sync Engine: ``POST /v1/genius/lipsync/generate``, ``GET /v1/genius/lipsync/{task_id}``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from studio.api.auth import api_key
from studio.api.routes import COMMON, ERRORS, get_studio
from studio.core import Studio
from studio.genius.lipsync.schema import LipSyncRequest, LipSyncResponse
from studio.genius.lipsync.submit import lipsync_result, submit
from studio.keys import ApiKey
from studio.views import SubmitResponse

router = APIRouter(prefix="/v1/genius/lipsync", tags=["genius: lipsync"], responses=COMMON)


@router.post("/generate", response_model=SubmitResponse, status_code=202,
             responses={code: ERRORS[code] for code in (400, 404, 409, 413, 503)})
def generate(body: LipSyncRequest, key: ApiKey = Depends(api_key("generate")),
             studio: Studio = Depends(get_studio)) -> SubmitResponse:
    """Queue a lip-sync of the video of ``task_id`` to the speech of ``audio_url`` (or
    ``audio_base64``). Visemes (PP, FF, AA, EE, OO) are read from the audio itself (LPC
    formants, energy, zero crossings) and the mouth is re-shaped in the detected face, or in
    ``face_region`` ``[x1, y1, x2, y2]``. The output is as long as the audio (the video trimmed,
    or extended by ping-pong) and carries it as AAC. The audio is fetched and checked at
    submission: not audio, or over the length or size caps, is a 400/413. Follow it like any
    task; ``GET /v1/genius/lipsync/{task_id}`` then gives the seed's response, and the result's
    ``metadata.details`` the same plus the face region used.

    Rate limit: charged to the key's ``/generate`` budget (5 per 10 s by default; ``generate=`` in
    ``ECHOEL_RATE_LIMITS``), the same budget as ``POST /v1/generate``, since it queues GPU work."""
    return submit(studio.services, body, owner=key.id)


@router.get("/{task_id:task_uuid}", response_model=LipSyncResponse,
            responses={code: ERRORS[code] for code in (404, 409)})
def result(task_id: str, key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> LipSyncResponse:
    """The seed's lip-sync response of a finished task: ``keyframes_generated`` (frames whose
    mouth was re-shaped), ``duration_seconds`` (the audio's), ``visemes_detected`` (segments
    other than rest), ``processing_time_ms`` (wall time of the run) and the ``viseme_track``.
    404 for another key's task or a task of another kind; 409 while it is not completed."""
    return lipsync_result(studio.services, task_id, owner=key.id)
