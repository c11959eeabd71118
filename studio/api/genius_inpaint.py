"""REST route of Video Inpainting: ``POST /v1/genius/inpaint/process``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from studio.api.auth import api_key
from studio.api.routes import COMMON, ERRORS, get_studio
from studio.core import Studio
from studio.genius.inpaint.schema import InpaintRequest
from studio.genius.inpaint.submit import submit
from studio.keys import ApiKey
from studio.views import SubmitResponse

router = APIRouter(prefix="/v1/genius/inpaint", tags=["genius: inpaint"], responses=COMMON)


@router.post("/process", response_model=SubmitResponse, status_code=202,
             responses={code: ERRORS[code] for code in (400, 404, 409, 413, 503)})
def process(body: InpaintRequest, key: ApiKey = Depends(api_key("generate")),
            studio: Studio = Depends(get_studio)) -> SubmitResponse:
    """Queue an inpainting task on the video of ``task_id``: ``remove`` an object (background
    propagated from other frames, the rest filled spatially), ``blend`` an overlay (feathered
    or Poisson), ``background`` replacement from an image (GrabCut foreground), ``extend`` the
    canvas (classical reflect + blur); ``replace``, and ``background``/``extend`` with a ``prompt``
    (or ``use_model``), run Wan VACE masked video generation (``model``: tiny-vace offline, the
    1.3B/14B VACE on a GPU server; pixels outside the mask are kept exactly). ``bbox`` is
    ``[x1, y1, x2, y2]`` and is tracked across frames. Follow it like any task; the result's
    ``metadata.details`` has the tracked boxes and fill statistics.

    Rate limit: charged to the key's ``/generate`` budget (5 per 10 s by default; ``generate=`` in
    ``ECHOEL_RATE_LIMITS``), the same budget as ``POST /v1/generate``, since it queues GPU work."""
    return submit(studio.services, body, owner=key.id)
