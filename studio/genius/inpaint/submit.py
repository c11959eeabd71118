"""Submitting an inpainting task: the request checked and resolved into its spec, then queued.

Which path runs is decided by ``studio.genius.inpaint.classical.plan_inpaint``; the model path
(Wan VACE) is refused here with ``ModelUnavailable`` (503) when its model cannot be loaded on
this server, so nothing is faked and nothing fails after the 202. The box is checked against
the video (``checks``), the extend target resolved to an even size (``extend``), and the mode's
image stored with the task's inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.engine.edit import store_image
from studio.engine.plan import ASPECT
from studio.engine.request import seed_or_random
from studio.errors import InvalidRequest, ModelUnavailable
from studio.genius.edit_submit import estimate_seconds, new_inputs, store_source
from studio.genius.inpaint.checks import validate_bbox, validate_feather_radius
from studio.genius.inpaint.classical import plan_inpaint
from studio.genius.inpaint.extend import validate_target_size
from studio.genius.inpaint.schema import InpaintRequest, InpaintSpec
from studio.media.inputs import image_input
from studio.models.catalog import ModelSpec

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices
    from studio.views import SubmitResponse

MAX_FRAMES = 720  # the classical paths hold the clip in memory (30 s at 24 fps)


def submit(services: "FeatureServices", request: InpaintRequest, owner: str,
           upload: Path | None = None) -> "SubmitResponse":
    """Validate ``request``, store its inputs and queue the inpainting task."""
    services.refuse_new_work()
    image_field = request.image_field()
    image = _image(services, request, image_field) if image_field else None
    path = plan_inpaint(request.mode, has_prompt=request.prompt is not None, has_image=image is not None,
                        model_available=request.use_model)
    vace = _vace_model(request) if path == "model" else None
    inputs_id, folder = new_inputs(services)
    source = store_source(services, owner, folder, request.task_id, upload)
    if source.frames > MAX_FRAMES:
        raise InvalidRequest(f"task_id: the video has {source.frames} frames; inpainting takes at most {MAX_FRAMES}")
    shape = (source.height, source.width, 3)
    resolved: dict = {}
    if vace is not None:
        resolved.update(model=vace.id, prompt=request.prompt or "",
                        num_inference_steps=request.num_inference_steps or vace.default_steps,
                        guidance_scale=request.guidance_scale or vace.default_guidance,
                        seed=seed_or_random(request.seed))
    if request.mode == "extend":
        resolved["target_size"] = validate_target_size(_target_size(request, shape), shape)
    else:
        if request.bbox is None:
            raise InvalidRequest(f"bbox: mode {request.mode!r} needs a bbox [x1, y1, x2, y2]")
        x1, y1, x2, y2 = request.bbox
        resolved["bbox_xywh"] = validate_bbox((x1, y1, x2 - x1, y2 - y1), shape)
        validate_feather_radius(request.feather_radius, shape)
    if image is not None:
        resolved["image"] = store_image(folder, f"{image_field}.png", image)
    spec = InpaintSpec(mode=request.mode, path=path, feather_radius=request.feather_radius,
                       blend_method=request.blend_method, inputs_id=inputs_id, source=source, **resolved)
    return services.submit_spec(spec, owner, estimate_seconds(services, InpaintSpec.KIND, source.frames, path))


def _vace_model(request: InpaintRequest) -> ModelSpec:
    """The VACE model of a model-path request, refused with ModelUnavailable when it cannot load here."""
    from studio.models.loader import runnable_spec

    what = f"mode {request.mode!r}" + (" with a prompt" if request.prompt else "")
    try:
        return runnable_spec("vace", request.model, what)
    except ModelUnavailable as error:
        if request.mode != "background":
            raise
        raise ModelUnavailable(f"{error.detail}; or give an image instead (background)") from None


def _image(services: "FeatureServices", request: InpaintRequest, name: str) -> np.ndarray | None:
    return image_input(getattr(request, f"{name}_image_base64"), getattr(request, f"{name}_url"),
                       services.fetch_policy, f"{name}_image_base64", f"{name}_url")


def _target_size(request: InpaintRequest, shape: tuple[int, int, int]) -> tuple[int, int]:
    height, width = shape[:2]
    if request.target_width or request.target_height:
        return request.target_width or width, request.target_height or height
    if request.target_aspect_ratio:
        aw, ah = ASPECT[request.target_aspect_ratio]
        if width * ah >= height * aw:  # wider than the aspect: grow the height
            return width, _even_up(-(-width * ah // aw))
        return _even_up(-(-height * aw // ah)), height
    raise InvalidRequest("target_width: mode 'extend' needs target_width/target_height or target_aspect_ratio")


def _even_up(value: int) -> int:
    return value + value % 2
