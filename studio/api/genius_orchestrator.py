"""REST route of the Model Orchestrator: ``POST /v1/genius/orchestrator/select-model``.

A thin adapter over ``studio.genius.orchestrator.selection.select_model`` (formulas and selection rules are
documented there). Authenticated and rate limited like every ``/v1`` route
(``Authorization: Bearer <key>``, the ``default`` limit); errors are ``{error, detail, type}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from studio.api.auth import api_key
from studio.api.routes import COMMON, ERRORS
from studio.genius.orchestrator.schema import SelectModelRequest, SelectModelResponse
from studio.genius.orchestrator.selection import device_of_workers, select_model
from studio.keys import ApiKey

router = APIRouter(prefix="/v1/genius/orchestrator", tags=["genius: orchestrator"], responses=COMMON)


def get_studio(request: Request):
    return request.app.state.studio


@router.post("/select-model", response_model=SelectModelResponse, responses={400: ERRORS[400], 413: ERRORS[413]})
def select_model_route(body: SelectModelRequest, _: ApiKey = Depends(api_key()),
                       studio=Depends(get_studio)) -> SelectModelResponse:
    """Recommend a model for a prompt, duration, resolution and GPU budget.

    - ``complexity`` / ``confidence``: simple, moderate or complex from counted prompt features
      (subjects, actions, camera moves, scene changes, length); confidence is 0.5 on a class
      boundary and approaches 1 far from it.
    - ``vram_required_gb``: peak GPU memory (GiB) of weights + activations + VAE decode in the
      fastest memory profile that fits (full GPU, text encoder offload, model CPU offload, group
      offload), at the server's precisions (``ECHOEL_FP8``, ``ECHOEL_VAE_DTYPE``).
    - ``estimated_time_seconds``: FLOPs per step x steps / this GPU's measured FLOP/s (until a
      model has run here, the H200 prior times the measured speed-up of the server's settings),
      plus load, a compiled model's first-run compile, weight transfers and decode/encode.
    - ``alternatives[].speed_factor``: recommended model's time / the alternative's time.
    - ``reasons``: how each number was reached, in words.

    ``max_vram_gb`` defaults to this server's free GPU memory, or with Celery workers the
    largest worker GPU (every worker's heartbeat reports its device); without a GPU (and no
    ``max_vram_gb``) the answer is the offline ``tiny`` model, and the reasons say so.
    """
    services = studio.services
    return select_model(services.costs, body, device=device_of_workers(services.worker_devices()))
