"""V2V Pipeline as a queued task: ``POST /v1/genius/v2v/transform`` checks a request, stores its
inputs and queues its typed spec (``schema.V2VSpec``).

The request names the source video (``source_task_id`` of a completed task, or an upload
through the UI / Gradio API), a ``mode`` and its inputs. Four paths:

- **model**, ``motion_transfer`` with ``use_model`` or a ``prompt``: Wan Animate animates the
  reference image with the source's pose and face (``studio.genius.v2v.animate``).
- **model**, ``style_transfer`` or ``colorization`` with a ``prompt`` and a reference image:
  Wan VACE from the grayscale source and the reference image (``studio.genius.v2v.vace``).
- **model**, ``style_transfer`` or ``colorization`` with a ``prompt`` and no reference image:
  diffusers' ``WanVideoToVideoPipeline``, ``strength`` the share of the schedule re-run
  (``studio.genius.v2v.video_to_video``).
- **classical** (``studio.genius.v2v.modes.transform``, whose modules' docstrings give methods
  and measurements) for everything else. ``style_transfer`` and ``colorization`` take a
  reference image (``style_reference_url``, fetched through the guarded fetcher, or
  ``style_reference_base64``); ``motion_transfer`` takes either a reference image (animated by
  the source's motion) or a reference video (``motion_reference_task_id``: its motion animates
  the source's first frame). Without a reference and without a prompt these three have no
  path, so the request is refused with a 400 naming ``style_reference_url``: nothing is faked.

Everything a request can get wrong is checked here, before the task is queued (the classical
transform runs on the first source frame to do so); the worker's run is ``run.run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.engine.edit import source_path, store_image
from studio.errors import InvalidRequest
from studio.genius.edit_submit import estimate_seconds, inputs_kept_on_success, store_source
from studio.genius.v2v import animate, vace, video_to_video
from studio.genius.v2v.inputs import (
    REFERENCE_IMAGE,
    REFERENCE_VIDEO,
    first_frame,
    reference_image,
    store_reference_video,
)
from studio.genius.v2v.modes import MODES
from studio.genius.v2v.run import expected_frames, transform_spec
from studio.genius.v2v.schema import (
    ANIMATE_MODELS,
    KIND,
    MODE_FIELDS,
    MODEL_FIELDS,
    MODEL_MODES,
    V2V_MODELS,
    VACE_MODELS,
    V2VRequest,
    V2VSpec,
)
from studio.vision.pixels import as_rgb_image

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices
    from studio.views import SubmitResponse


def submit(services: "FeatureServices", request: V2VRequest, owner: str, upload: Path | None = None,
           reference_upload: Path | None = None) -> "SubmitResponse":
    """Validate ``request``, store its inputs and queue the V2V task. ``reference_upload`` is a
    motion reference video uploaded through the UI (instead of ``motion_reference_task_id``)."""
    services.refuse_new_work()
    mode = MODES[request.mode]
    _check_mode_fields(request, reference_upload)
    has_image_reference = bool(request.style_reference_url or request.style_reference_base64)
    path = request.model_path(has_image_reference)
    if path == "animate":
        if reference_upload is not None:
            raise InvalidRequest("motion_reference_task_id: the model path animates a reference image with the "
                                 "source's motion, not a reference video")
        return animate.submit(services, request, owner, upload)
    if path == "vace":
        return vace.submit(services, request, owner, upload)
    if path == "video_to_video":
        return video_to_video.submit(services, request, owner, upload)
    has_video_reference = bool(request.motion_reference_task_id or reference_upload)
    if mode.reference is not None and not has_video_reference and not has_image_reference:
        if request.mode == "motion_transfer":
            raise InvalidRequest("style_reference_url: mode 'motion_transfer' needs a reference image to animate "
                                 "(style_reference_url or style_reference_base64; with use_model too) or "
                                 "motion_reference_task_id (a video whose motion animates the source's first frame)")
        raise InvalidRequest(f"style_reference_url: mode {request.mode!r} needs a reference image "
                             "(style_reference_url or style_reference_base64) or a prompt (the model path); with "
                             "neither there is nothing to take the colours or the style from")
    if mode.reference is None and has_image_reference:
        sent = "style_reference_url" if request.style_reference_url else "style_reference_base64"
        raise InvalidRequest(f"{sent}: mode {request.mode!r} takes no reference image")
    reference = reference_image(services, request)
    with inputs_kept_on_success(services) as (inputs_id, folder):
        spec, expected = _store_inputs(services, request, owner, inputs_id, folder, upload, reference_upload,
                                       reference)
    return services.submit_spec(spec, owner, estimate_seconds(services, KIND, expected))


def _store_inputs(services: "FeatureServices", request: V2VRequest, owner: str, inputs_id: str, folder: Path,
                  upload: Path | None, reference_upload: Path | None,
                  reference: np.ndarray | None) -> tuple[V2VSpec, int]:
    """Resolve and store the source and reference, validate the whole request on the first
    source frame; (the classical path's spec, the frames the run will write)."""
    source = store_source(services, owner, folder, request.source_task_id, upload, field_name="source_task_id")
    reference_video = stored_image = None
    if request.motion_reference_task_id or reference_upload:
        reference_video = store_reference_video(services, owner, folder, request, reference_upload)
        reference = [first_frame(folder / REFERENCE_VIDEO, "motion_reference_task_id")]
    elif reference is not None:
        stored_image = store_image(folder, REFERENCE_IMAGE, as_rgb_image(reference))
    spec = V2VSpec(mode=request.mode, strength=request.strength, preserve_motion=request.preserve_motion,
                   temporal_consistency=request.temporal_consistency, scale=request.scale, width=request.width,
                   height=request.height, factor=request.factor, target_fps=request.target_fps, source=source,
                   reference_video=reference_video, reference_image=stored_image, inputs_id=inputs_id)
    first = first_frame(source_path(services.paths, folder, source), "source_task_id")
    transform_spec(spec, [first], spec.source.fps, reference)  # validates everything; does no work
    return spec, expected_frames(spec, spec.source.frames, spec.source.fps)


def _check_mode_fields(request: V2VRequest, reference_upload: Path | None) -> None:
    """Refuse fields sent to a mode or path that does not read them (nothing passes silently)."""
    for mode, names in MODE_FIELDS.items():
        for name in names:
            if mode != request.mode and getattr(request, name) is not None:
                raise InvalidRequest(f"{name}: only mode {mode!r} takes it, not {request.mode!r}")
    if reference_upload is not None and request.mode != "motion_transfer":
        raise InvalidRequest(f"motion_reference_task_id: only mode 'motion_transfer' takes a reference video, "
                             f"not {request.mode!r}")
    if (request.motion_reference_task_id or reference_upload) \
            and (request.style_reference_url or request.style_reference_base64):
        raise InvalidRequest("motion_reference_task_id: give a reference video or a reference image, not both")
    if request.prompt is not None and request.mode not in MODEL_MODES:
        raise InvalidRequest(f"prompt: only modes {', '.join(MODEL_MODES)} have a model path, not {request.mode!r}")
    if request.use_model and request.mode != "motion_transfer":
        raise InvalidRequest(f"use_model: only motion_transfer takes it (style_transfer and colorization run the "
                             f"model with a prompt), not {request.mode!r}")
    for name in MODEL_FIELDS:
        if getattr(request, name) is not None and request.prompt is None and not request.use_model:
            raise InvalidRequest(f"{name}: only a model path takes it (style_transfer or colorization with a "
                                 "prompt; motion_transfer with use_model or a prompt)")
    if request.face_region is not None and request.mode != "motion_transfer":
        raise InvalidRequest(f"face_region: only motion_transfer's model path takes it, not {request.mode!r}")
    path = request.model_path(bool(request.style_reference_url or request.style_reference_base64))
    if request.model is not None and path is not None:
        wanted = {"animate": ANIMATE_MODELS, "vace": VACE_MODELS, "video_to_video": V2V_MODELS}[path]
        if request.model not in wanted:
            raise InvalidRequest(f"model: {request.mode}'s model path runs one of {', '.join(wanted)}, "
                                 f"not {request.model!r}")
