"""V2V Pipeline as a queued task: ``POST /v1/genius/v2v/transform``.

The request names the source video (``source_task_id`` of a completed task, or an upload
through the UI / Gradio API), a ``mode`` and its inputs; the algorithms are the classical ones
of ``studio.genius.v2v`` (``transform``, whose docstrings give methods and measurements).
``style_transfer`` and ``colorization`` take a reference image (``style_reference_url``, fetched
through the guarded fetcher, or ``style_reference_base64``); ``motion_transfer`` takes either a
reference image (animated by the source's motion) or a reference video
(``motion_reference_task_id``: its motion animates the source's first frame). Without a
reference these three have no classical path and no model is wired for them, so the request
is refused with a 400 naming ``style_reference_url``: nothing is faked.

Everything a request can get wrong is checked at submission (``transform`` run on the first
source frame). At run time frames stream from the decoder through ``transform`` into the
encoder one at a time, so memory does not grow with the length of the video (a reference
video for ``motion_transfer`` is held whole, hence ``MAX_REFERENCE_FRAMES``).
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from studio.engine.edit import (
    EditJob,
    EditOutcome,
    estimate_seconds,
    new_inputs,
    source_path,
    store_source,
    write_video,
)
from studio.engine.request import HTTP_URL_PATTERN, JsonModel
from studio.errors import InvalidRequest, TaskNotReady
from studio.genius import v2v
from studio.jobs import store as st
from studio.media.inputs import check_upload_type, image_input
from studio.media.video import probe_video, read_frames

if TYPE_CHECKING:
    from studio.core import Studio
    from studio.views import SubmitResponse

KIND = "v2v"
TASK_ID_PATTERN = r"^[A-Za-z0-9-]+$"
REFERENCE_IMAGE = "reference.png"
REFERENCE_VIDEO = "motion_reference.mp4"
MAX_REFERENCE_FRAMES = 300  # a motion reference video is held in memory by v2v.transform
# Request fields each mode reads beyond strength / temporal_consistency / preserve_motion
# (which have defaults and are ignored where a mode does not use them; see v2v.MODES).
MODE_FIELDS = {
    "upscale": ("scale", "width", "height"),
    "interpolation": ("factor", "target_fps"),
    "motion_transfer": ("motion_reference_task_id",),
}
# transform's field names -> this API's
_FIELD_NAMES = {"reference": "style_reference_url", "source": "source_task_id", "fps": "source_task_id"}


class V2VRequest(JsonModel):
    """The seed's V2V fields, plus the parameters the classical modes take."""

    model_config = ConfigDict(extra="forbid")

    source_task_id: str | None = Field(None, min_length=1, max_length=64, pattern=TASK_ID_PATTERN,
                                       description="A completed task whose video is transformed (or upload one "
                                                   "in the UI)")
    mode: Literal["style_transfer", "motion_transfer", "enhancement", "upscale", "interpolation", "colorization"]
    strength: float = Field(0.7, ge=0, le=1, description="style_transfer / enhancement: how far to go (0 = unchanged)")
    style_reference_url: str | None = Field(
        None, max_length=2048, pattern=HTTP_URL_PATTERN,
        description="Reference image: required by style_transfer and colorization, the appearance for "
                    "motion_transfer")
    style_reference_base64: str | None = Field(None, max_length=30_000_000,
                                               description="The reference image as base64 (instead of the URL)")
    motion_reference_task_id: str | None = Field(
        None, min_length=1, max_length=64, pattern=TASK_ID_PATTERN,
        description=f"motion_transfer: a completed task whose video's motion animates the source's first frame "
                    f"(at most {MAX_REFERENCE_FRAMES} frames), instead of a reference image")
    preserve_motion: bool = Field(True, description="style_transfer / colorization: temporal smoothing follows the "
                                                    "source's optical flow (false: plain moving average)")
    temporal_consistency: float = Field(0.8, ge=0, le=1,
                                        description="style_transfer / colorization: flicker smoothing (0 = none)")
    scale: float | None = Field(None, gt=1, le=4, description="upscale: factor (default 2), or give width/height")
    width: int | None = Field(None, ge=16, le=4096, multiple_of=2, description="upscale: output width (even)")
    height: int | None = Field(None, ge=16, le=4096, multiple_of=2, description="upscale: output height (even)")
    factor: Literal[2, 4] | None = Field(None, description="interpolation: frame-rate multiplier (default 2)")
    target_fps: float | None = Field(None, gt=0, le=v2v.MAX_TARGET_FPS,
                                     description="interpolation: output frame rate (instead of factor)")


class V2VStream(BaseModel):
    width: int
    height: int
    fps: float
    frames: int


class V2VSummary(BaseModel):
    """A finished V2V task, seed-style: what ran and what it made."""

    task_id: str
    status: str
    mode: str
    path: str = Field(description="'classical' (no model)")
    method: str = Field(description="The algorithm that ran")
    parameters: dict = Field(description="The values the mode used")
    input: V2VStream
    output: V2VStream
    frames: int = Field(description="Frames written (output.frames)")
    video_url: str
    thumbnail_url: str
    generation_time_seconds: float


def submit(studio: "Studio", request: V2VRequest, owner: str, upload: Path | None = None,
           reference_upload: Path | None = None) -> "SubmitResponse":
    """Validate ``request``, store its inputs and queue the V2V task. ``reference_upload`` is a
    motion reference video uploaded through the UI (instead of ``motion_reference_task_id``)."""
    studio.refuse_when_draining()
    spec = v2v.MODES[request.mode]
    _check_mode_fields(request, reference_upload)
    has_video_reference = bool(request.motion_reference_task_id or reference_upload)
    if spec.reference is not None and not has_video_reference \
            and not (request.style_reference_url or request.style_reference_base64):
        also = " (or motion_reference_task_id, a reference video)" if request.mode == "motion_transfer" else ""
        raise InvalidRequest(f"style_reference_url: mode {request.mode!r} needs a reference image "
                             f"(style_reference_url or style_reference_base64){also}; without one it has no "
                             "classical path and no model for it is loaded on this server")
    if spec.reference is None and (request.style_reference_url or request.style_reference_base64):
        raise InvalidRequest(f"style_reference_url: mode {request.mode!r} takes no reference image")
    reference = _reference_image(studio, request)
    inputs_id, folder = new_inputs(studio)
    try:
        stored, expected = _store_inputs(studio, request, owner, folder, upload, reference_upload, reference)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    stored["inputs_id"] = inputs_id
    return studio.submit_edit(KIND, stored, owner, estimate_seconds(studio, KIND, expected))


def _store_inputs(studio: "Studio", request: V2VRequest, owner: str, folder: Path, upload: Path | None,
                  reference_upload: Path | None, reference: np.ndarray | None) -> tuple[dict, int]:
    """Resolve and store the source and reference, validate the whole request on the first
    source frame; (the stored request, the frames the run will write)."""
    source = store_source(studio, owner, folder, request.source_task_id, upload, field_name="source_task_id")
    stored = {"mode": request.mode, "strength": request.strength, "preserve_motion": request.preserve_motion,
              "temporal_consistency": request.temporal_consistency, "scale": request.scale, "width": request.width,
              "height": request.height, "factor": request.factor, "target_fps": request.target_fps,
              "source": source}
    if request.motion_reference_task_id or reference_upload:
        stored["reference_video"] = _store_reference_video(studio, owner, folder, request, reference_upload)
        reference = [_first_frame(folder / REFERENCE_VIDEO, "motion_reference_task_id")]
    elif reference is not None:
        cv2.imwrite(str(folder / REFERENCE_IMAGE), cv2.cvtColor(v2v.as_rgb_image(reference), cv2.COLOR_RGB2BGR))
        stored["reference_image"] = REFERENCE_IMAGE
    first = _first_frame(source_path(studio.paths, folder, source), "source_task_id")
    _transform(stored, [first], source["fps"], reference)  # validates everything; does no work
    return stored, expected_frames(stored, source["frames"], source["fps"])


def _check_mode_fields(request: V2VRequest, reference_upload: Path | None) -> None:
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


def _reference_image(studio: "Studio", request: V2VRequest) -> np.ndarray | None:
    return image_input(request.style_reference_base64, request.style_reference_url, studio.fetch_policy,
                       "style_reference_base64", "style_reference_url")


def _store_reference_video(studio: "Studio", owner: str, folder: Path, request: V2VRequest,
                           reference_upload: Path | None) -> dict:
    """Copy the motion reference video into the task's inputs (it must outlive its task/upload)."""
    field = "motion_reference_task_id"
    if reference_upload is not None:
        check_upload_type(Path(reference_upload), "video")
        origin, described = Path(reference_upload), {"upload": REFERENCE_VIDEO}
    else:
        task = studio.task(request.motion_reference_task_id, owner)
        origin = studio.paths.video(task.id)
        if task.status != st.COMPLETED or not origin.is_file():
            raise TaskNotReady(f"{field}: task {task.id} is {task.status}; its video is not ready")
        described = {"task_id": task.id}
    info = probe_video(origin, MAX_REFERENCE_FRAMES)
    shutil.copyfile(origin, folder / REFERENCE_VIDEO)
    return {**described, "frames": info.frames, "fps": info.fps, "width": info.width, "height": info.height}


def _first_frame(path: Path, field: str) -> np.ndarray:
    frames = read_frames(path)
    try:
        first = next(frames, None)
    finally:
        frames.close()
    if first is None:
        raise InvalidRequest(f"{field}: the video has no frames")
    return first


def _transform(stored: dict, frames, fps: float, reference):
    """``v2v.transform`` with the stored request; its errors name this API's fields."""
    try:
        return v2v.transform(
            stored["mode"], frames, fps, strength=stored["strength"], reference=reference,
            temporal_consistency=stored["temporal_consistency"], preserve_motion=stored["preserve_motion"],
            scale=stored["scale"], width=stored["width"], height=stored["height"],
            target_fps=stored["target_fps"], factor=stored["factor"])
    except InvalidRequest as error:
        name, _, rest = error.detail.partition(":")
        if name in _FIELD_NAMES and rest:
            name = "motion_reference_task_id" if name == "reference" and "reference_video" in stored \
                else _FIELD_NAMES[name]
            raise InvalidRequest(f"{name}:{rest}") from None
        raise


def expected_frames(stored: dict, source_frames: int, fps: float) -> int:
    """Frames the mode writes: the source's, except interpolation (``floor((N - 1) / step) + 1``
    with ``step`` source frames per output frame: x2 gives 2N - 1) and motion transfer driven
    by a reference video (the reference's)."""
    if stored["mode"] == "interpolation":
        step = v2v.interpolation_step(fps, stored["factor"], stored["target_fps"])
        return int(Fraction(max(source_frames - 1, 0)) / step) + 1
    if "reference_video" in stored:
        return stored["reference_video"]["frames"]
    return source_frames


def run(job: EditJob) -> EditOutcome:
    """Stream the source through the mode into the encoder (no frame list is built)."""
    request = job.request
    info = job.source_info()
    reference = None
    if request.get("reference_image"):
        reference = cv2.cvtColor(cv2.imread(str(job.inputs / request["reference_image"])), cv2.COLOR_BGR2RGB)
    elif request.get("reference_video"):
        reference = []
        for index, frame in enumerate(read_frames(job.inputs / REFERENCE_VIDEO)):
            reference.append(frame)
            job.check(0.0, f"Reading reference frame {index + 1}/{request['reference_video']['frames']}")
    job.check(0.0, f"Transforming ({request['mode']})")
    frames, output_fps, details = _transform(request, job.source_frames(), info.fps, reference)
    expected = expected_frames(request, info.frames, info.fps)
    # The soundtrack is kept where the output spans the source's time (all but a reference video's motion).
    audio = job.source if info.has_audio and "reference_video" not in request else None
    video = write_video(job, frames, output_fps, expected, message=f"{request['mode']}: frame", audio=audio)
    path, method = details.pop("path"), details.pop("method")
    details["input"]["frames"] = info.frames
    details["output"].update(width=video.width, height=video.height, fps=video.fps, frames=video.frames)
    return EditOutcome(video, path, method, details)


def summary(studio: "Studio", task_id: str, owner: str) -> V2VSummary:
    """The seed-style view of a finished V2V task of ``owner``'s (404 for another kind or owner,
    409 until it has completed)."""
    result = studio.result(task_id, owner, kind=KIND)
    meta, details = result.metadata, result.metadata.details
    return V2VSummary(task_id=result.task_id, status=result.status, mode=details["mode"], path=meta.path,
                      method=meta.method, parameters=details["parameters"], input=details["input"],
                      output=details["output"], frames=meta.frames, video_url=result.video_url,
                      thumbnail_url=result.thumbnail_url, generation_time_seconds=result.generation_time_seconds)

