"""Video Inpainting as a queued task: ``POST /v1/genius/inpaint/process``.

The request names the input video (``task_id`` of a completed task, or an upload through the
UI / Gradio API), a ``mode`` and its inputs. Boxes in the API are ``[x1, y1, x2, y2]`` pixel
corners of the first frame (``x2``/``y2`` exclusive), tracked across frames when the object
moves. Which path runs is decided by ``studio.genius.inpaint.plan_inpaint``; the classical
algorithms and their thresholds are documented there. Requests that need Wan VACE (``replace``;
``background``/``extend`` driven by a prompt) fail at submission with ``ModelUnavailable``
while no VACE model is loaded: nothing is faked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from pydantic import ConfigDict, Field

from studio.engine.edit import EditJob, EditOutcome, estimate_seconds, new_inputs, store_source, write_video
from studio.engine.plan import ASPECT
from studio.engine.request import HTTP_URL_PATTERN, NOT_BLANK, JsonModel
from studio.errors import InvalidRequest, ModelUnavailable
from studio.genius import inpaint
from studio.media.inputs import image_input

if TYPE_CHECKING:
    from studio.core import Studio
    from studio.views import SubmitResponse

KIND = "inpaint"
MAX_FRAMES = 720  # the classical paths hold the clip in memory (30 s at 24 fps)
TASK_ID_PATTERN = r"^[A-Za-z0-9-]+$"


class InpaintRequest(JsonModel):
    """The seed's inpaint fields, plus the inputs each mode needs."""

    model_config = ConfigDict(extra="forbid")

    task_id: str | None = Field(None, min_length=1, max_length=64, pattern=TASK_ID_PATTERN,
                                description="A completed task whose video is edited (or upload one in the UI)")
    mode: Literal["remove", "replace", "blend", "background", "extend"]
    bbox: list[int] | None = Field(None, min_length=4, max_length=4,
                                   description="[x1, y1, x2, y2] in pixels of the first frame; tracked over time")
    feather_radius: int = Field(10, ge=0, le=64, description="Soft mask edge in pixels")
    prompt: str | None = Field(None, min_length=1, max_length=2000, pattern=NOT_BLANK,
                               description="replace / background / extend with Wan VACE")
    overlay_image_base64: str | None = Field(None, max_length=30_000_000, description="blend: the overlay")
    overlay_url: str | None = Field(None, max_length=2048, pattern=HTTP_URL_PATTERN)
    background_image_base64: str | None = Field(None, max_length=30_000_000, description="background: the new one")
    background_url: str | None = Field(None, max_length=2048, pattern=HTTP_URL_PATTERN)
    blend_method: Literal["feather", "poisson"] = "feather"
    target_width: int | None = Field(None, ge=16, le=4096, description="extend: output width (even)")
    target_height: int | None = Field(None, ge=16, le=4096, description="extend: output height (even)")
    target_aspect_ratio: Literal["16:9", "9:16", "1:1", "4:3"] | None = Field(
        None, description="extend: grow one side to reach this aspect (instead of a size)")


def submit(studio: "Studio", request: InpaintRequest, owner: str, upload: Path | None = None) -> "SubmitResponse":
    """Validate ``request``, store its inputs and queue the inpainting task."""
    studio.refuse_when_draining()
    image_field = "overlay" if request.mode == "blend" else "background"
    image = _image(studio, request, image_field)
    path = inpaint.plan_inpaint(request.mode, has_prompt=request.prompt is not None, has_image=image is not None)
    if path == "model":
        raise ModelUnavailable(f"mode {request.mode!r} with a prompt needs the Wan VACE model (masked video "
                               "generation), which this server has not loaded; use an image instead where the "
                               "mode allows it (background, blend) or run on a GPU server with VACE")
    inputs_id, folder = new_inputs(studio)
    source = store_source(studio, owner, folder, request.task_id, upload)
    if source["frames"] > MAX_FRAMES:
        raise InvalidRequest(f"task_id: the video has {source['frames']} frames; inpainting takes at most {MAX_FRAMES}")
    shape = (source["height"], source["width"], 3)
    stored = {"mode": request.mode, "feather_radius": request.feather_radius, "blend_method": request.blend_method,
              "inputs_id": inputs_id, "source": source}
    if request.mode == "extend":
        stored["target_size"] = list(inpaint.validate_target_size(_target_size(request, shape), shape))
    else:
        if request.bbox is None:
            raise InvalidRequest(f"bbox: mode {request.mode!r} needs a bbox [x1, y1, x2, y2]")
        x1, y1, x2, y2 = request.bbox
        stored["bbox_xywh"] = list(inpaint.validate_bbox((x1, y1, x2 - x1, y2 - y1), shape))
        inpaint.validate_feather_radius(request.feather_radius, shape)
    if image is not None:
        cv2.imwrite(str(folder / f"{image_field}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        stored["image"] = f"{image_field}.png"
    return studio.submit_edit(KIND, stored, owner, estimate_seconds(studio, KIND, source["frames"]))


def _image(studio: "Studio", request: InpaintRequest, name: str) -> np.ndarray | None:
    return image_input(getattr(request, f"{name}_image_base64"), getattr(request, f"{name}_url"),
                       studio.fetch_policy, f"{name}_image_base64", f"{name}_url")


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


def run(job: EditJob) -> EditOutcome:
    """Read the clip, run the classical path of the mode, write the result."""
    request = job.request
    info = job.source_info()
    frames = []
    for index, frame in enumerate(job.source_frames()):
        frames.append(frame)
        job.check(0.1 * (index + 1) / info.frames, f"Reading frame {index + 1}/{info.frames}")
    image = None
    if request.get("image"):
        image = cv2.cvtColor(cv2.imread(str(job.inputs / request["image"])), cv2.COLOR_BGR2RGB)
    job.check(0.1, f"Inpainting ({request['mode']})")
    out, details = inpaint.inpaint(
        request["mode"], frames, bbox=request.get("bbox_xywh"), feather_radius=request["feather_radius"],
        overlay=image if request["mode"] == "blend" else None,
        background=image if request["mode"] == "background" else None,
        target_size=request.get("target_size"), blend_method=request["blend_method"])
    if "boxes" in details:  # the API speaks corners
        details["boxes"] = [[x, y, x + w, y + h] for x, y, w, h in details["boxes"]]
    details.pop("path", None)
    method = details.pop("method")
    video = write_video(job, out, info.fps, len(out), progress=(0.8, 1.0), message="Encoding frame")
    return EditOutcome(video, "classical", method, details)

