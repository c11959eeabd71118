"""REST routes of the V2V Pipeline: ``POST /v1/genius/v2v/transform``, ``GET /v1/genius/v2v/{task_id}``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from studio.api.auth import api_key
from studio.api.routes import COMMON, ERRORS, get_studio
from studio.core import Studio
from studio.genius.v2v import submit as v2v_submit
from studio.genius.v2v import summary as v2v_summary
from studio.genius.v2v.schema import V2VRequest, V2VSummary
from studio.keys import ApiKey
from studio.views import SubmitResponse

router = APIRouter(prefix="/v1/genius/v2v", tags=["genius: v2v"], responses=COMMON)


@router.post("/transform", response_model=SubmitResponse, status_code=202,
             responses={code: ERRORS[code] for code in (400, 404, 409, 413, 503)})
def transform(body: V2VRequest, key: ApiKey = Depends(api_key("generate")),
              studio: Studio = Depends(get_studio)) -> SubmitResponse:
    """Queue a video-to-video transformation of the video of ``source_task_id``. Classical
    (model-free) paths: ``interpolation`` (occlusion-aware optical-flow frames, ``factor``
    2/4 or ``target_fps``; x2 turns N frames into 2N-1 at twice the rate), ``upscale`` (bicubic +
    edge-guided sharpening to ``scale`` or ``width``/``height``), ``enhancement`` (motion-compensated
    denoise, sharpening, local contrast by ``strength``), ``colorization`` and ``style_transfer``
    (from the reference image ``style_reference_url`` / ``style_reference_base64``, smoothed over
    time by ``temporal_consistency``, along the source's motion when ``preserve_motion``) and
    ``motion_transfer`` (the source's motion animates the reference image, or the motion of
    ``motion_reference_task_id``'s video animates the source's first frame). A mode without the
    reference it needs is a 400 naming ``style_reference_url``. Model path: ``style_transfer`` or
    ``colorization`` with a ``prompt`` run diffusers' WanVideoToVideo on ``model`` (default: the
    server's), ``strength`` = how much of the source is re-noised. Follow it like any task; the
    result's ``metadata`` has ``path`` ("classical" or "model") and ``method``, and ``metadata.details`` the
    mode's parameters and the input/output size, fps and frames (also at
    ``GET /v1/genius/v2v/{task_id}``).

    Rate limit: charged to the key's ``/generate`` budget (5 per 10 s by default; ``generate=`` in
    ``ECHOEL_RATE_LIMITS``), the same budget as ``POST /v1/generate``, since it queues GPU work."""
    return v2v_submit.submit(studio.services, body, owner=key.id)


@router.get("/{task_id:task_uuid}", response_model=V2VSummary, responses={code: ERRORS[code] for code in (404, 409)})
def summary(task_id: str, key: ApiKey = Depends(api_key()), studio: Studio = Depends(get_studio)) -> V2VSummary:
    """A finished V2V task: mode, path and method, the mode's parameters, input and output size,
    fps and frames (409 until it has completed; 404 for a task of another kind or key)."""
    return v2v_summary.summary(studio.services, task_id, owner=key.id)
