"""V2V Pipeline as a queued task: ``POST /v1/genius/v2v/transform``.

The request names the source video (``source_task_id`` of a completed task, or an upload
through the UI / Gradio API), a ``mode`` and its inputs. Two paths:

- **model**, ``motion_transfer`` with ``use_model`` or a ``prompt``: Wan Animate animates the
  reference image with the source's pose and face (``studio.genius.v2v.animate`` documents it).
- **model**, ``style_transfer`` or ``colorization`` with a ``prompt`` and a reference image:
  Wan VACE from the grayscale source and the reference image (``studio.genius.v2v.vace``).
- **model** (diffusers' ``WanVideoToVideoPipeline``, built from the loaded text-to-video
  model's components, so no second copy of the weights): ``style_transfer`` or
  ``colorization`` with a ``prompt`` and no reference image. The source is re-noised by
  ``strength`` (the share of the ``num_inference_steps`` schedule that is re-run: 0.3 keeps
  most of the source, 1.0 regenerates it from noise) and denoised towards the prompt, in
  windows of at most the model's ``max_frames`` (a 4k+1 frame count), each resized to the
  model's generation size (``studio.engine.plan.generation_size`` for the source's aspect) and
  back to the source size. ``colorization`` feeds the model the grayscale source and keeps
  the source's luminance (Lab L), taking only the chroma (a, b) from the model's output.
  ``preserve_motion`` / ``temporal_consistency`` are classical-path settings. ``model`` (a
  catalog text-to-video model the pipeline supports; the server default when absent) must be
  loadable here: a hub model without network or GPU fails the task with ``ModelUnavailable``
  (the loader's message). ``seed`` (drawn and recorded when absent) makes a run repeatable.
- **classical** (``studio.genius.v2v.algorithm.transform``, whose docstrings give methods and
  measurements) for everything else. ``style_transfer`` and ``colorization`` take a reference
  image (``style_reference_url``, fetched through the guarded fetcher, or
  ``style_reference_base64``); ``motion_transfer`` takes either a reference image (animated by
  the source's motion) or a reference video (``motion_reference_task_id``: its motion animates
  the source's first frame). Without a reference and without a prompt these three have no
  path, so the request is refused with a 400 naming ``style_reference_url``: nothing is faked.

Everything a request can get wrong is checked at submission (``transform`` run on the first
source frame). At run time frames stream from the decoder through ``transform`` into the
encoder one at a time, so memory does not grow with the length of the video (a reference
video for ``motion_transfer`` is held whole, hence ``MAX_REFERENCE_FRAMES``).
"""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

# Imported at module import (the API imports this module in the main thread): diffusers' lazy
# module is not safe to import from two threads at once (see studio.models.loader).
from diffusers import WanVideoToVideoPipeline
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from studio.engine.edit import EditJob, EditOutcome, source_path, store_image, write_video
from studio.engine.plan import generation_size
from studio.engine.request import (
    HTTP_URL_PATTERN,
    NEGATIVE_PROMPT,
    NOT_BLANK,
    SEED_MAX,
    JsonModel,
    seed_or_random,
    strip_prompt,
)
from studio.engine.windows import crossfade, four_k_plus_1, sliding_windows, window_count
from studio.errors import InvalidRequest, ModelUnavailable, TaskNotReady
from studio.genius.v2v import algorithm as v2v
from studio.genius.v2v import animate as v2v_animate
from studio.genius.v2v import vace as v2v_vace
from studio.genius.edit_submit import estimate_seconds, new_inputs, store_source
from studio.jobs import store as st
from studio.media.inputs import check_upload_type, image_input
from studio.media.video import VideoInfo, probe_video, read_frames, resize
from studio.models.catalog import ANIMATE_CATALOG, CATALOG, TINY, VACE_CATALOG, ModelSpec

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

# -- the model path ---------------------------------------------------------------------------
MODEL_MODES = ("style_transfer", "colorization", "motion_transfer")
MODEL_FIELDS = ("model", "num_inference_steps", "seed", "face_region")  # read only by the model paths
# Text-to-video models WanVideoToVideoPipeline can run: one transformer, Wan2.1's VAE. Wan2.2
# A14B (two experts, transformer_2) and TI2V-5B (expand_timesteps) need pipeline code it lacks.
V2V_MODELS = tuple(m for m in (TINY, "wan2.1-t2v-1.3b", "wan2.1-t2v-14b") if m in CATALOG)
#: motion_transfer's model path (Wan Animate).
ANIMATE_MODELS = tuple(ANIMATE_CATALOG)
#: style_transfer / colorization with a prompt and a reference image (Wan VACE).
VACE_MODELS = tuple(VACE_CATALOG)
MAX_SEQUENCE_LENGTH = 512


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
    prompt: str | None = Field(
        None, min_length=1, max_length=2000, pattern=NOT_BLANK,
        description="The model path (WanVideoToVideo): style_transfer with a prompt, or colorization with a prompt "
                    "and no reference image; strength is then the share of the denoising schedule re-run. "
                    "motion_transfer: runs Wan Animate, the prompt describing the scene")
    use_model: bool = Field(False, description="motion_transfer: animate the reference image with Wan Animate "
                                               "(driven by the source's pose and face) instead of optical flow")
    model: Literal[V2V_MODELS + ANIMATE_MODELS + VACE_MODELS] | None = Field(
        None, description="The model path's model: a text-to-video model the video-to-video pipeline supports "
                          "(style_transfer, colorization with a prompt), a Wan VACE model (the same with a reference "
                          "image) or a Wan Animate model (motion_transfer); the server default when absent")
    face_region: list[int] | None = Field(
        None, min_length=4, max_length=4,
        description="motion_transfer's model path: [x1, y1, x2, y2] pixels of the source's face when the Haar "
                    "cascade finds none (its crops drive the expression)")
    num_inference_steps: int | None = Field(
        None, ge=10, le=150, description="The model path's schedule length (10-150; strength x steps are run; "
                                         "the model's default when absent)")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="The model path's noise seed (random when absent)")

    @field_validator("prompt")
    @classmethod
    def _strip_prompt(cls, value: str | None) -> str | None:
        return None if value is None else strip_prompt(value)

    def changed(self, *names: str) -> list[str]:
        """Which of the fields ``names`` the request sets away from their defaults."""
        return [name for name in names if getattr(self, name) != type(self).model_fields[name].default]

    def model_path(self, has_reference: bool) -> Literal["animate", "vace", "v2v"] | None:
        """Which model path the request runs (see the module docstring); None: the classical one."""
        if self.mode == "motion_transfer":
            return "animate" if self.use_model or self.prompt else None
        if self.prompt and self.mode in ("style_transfer", "colorization"):
            return "vace" if has_reference else "v2v"
        return None


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
    path: str = Field(description="'classical' (no model) or 'model' (WanVideoToVideo; Wan Animate for "
                                  "motion_transfer)")
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
    studio.refuse_new_work()
    spec = v2v.MODES[request.mode]
    _check_mode_fields(request, reference_upload)
    has_image_reference = bool(request.style_reference_url or request.style_reference_base64)
    path = request.model_path(has_image_reference)
    if path == "animate":
        if reference_upload is not None:
            raise InvalidRequest("motion_reference_task_id: the model path animates a reference image with the "
                                 "source's motion, not a reference video")
        return v2v_animate.submit(studio, request, owner, upload)
    if path == "vace":
        return v2v_vace.submit(studio, request, owner, upload)
    if path == "v2v":
        return _submit_model(studio, request, owner, upload)
    has_video_reference = bool(request.motion_reference_task_id or reference_upload)
    if spec.reference is not None and not has_video_reference and not has_image_reference:
        if request.mode == "motion_transfer":
            raise InvalidRequest("style_reference_url: mode 'motion_transfer' needs a reference image to animate "
                                 "(style_reference_url or style_reference_base64; with use_model too) or "
                                 "motion_reference_task_id (a video whose motion animates the source's first frame)")
        raise InvalidRequest(f"style_reference_url: mode {request.mode!r} needs a reference image "
                             "(style_reference_url or style_reference_base64) or a prompt (the model path); with "
                             "neither there is nothing to take the colours or the style from")
    if spec.reference is None and (request.style_reference_url or request.style_reference_base64):
        sent = "style_reference_url" if request.style_reference_url else "style_reference_base64"
        raise InvalidRequest(f"{sent}: mode {request.mode!r} takes no reference image")
    reference = _reference_image(studio, request)
    inputs_id, folder = new_inputs(studio.services)
    try:
        stored, expected = _store_inputs(studio, request, owner, folder, upload, reference_upload, reference)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    stored["inputs_id"] = inputs_id
    return studio.submit_edit(KIND, stored, owner, estimate_seconds(studio.services, KIND, expected))


def _submit_model(studio: "Studio", request: V2VRequest, owner: str, upload: Path | None) -> "SubmitResponse":
    """Queue the model path: the model, steps and seed are resolved and stored now."""
    model_id = request.model or studio.default_model
    if model_id not in V2V_MODELS:
        raise InvalidRequest(f"model: the server's default model {model_id!r} has no video-to-video path; "
                             f"choose one of {', '.join(V2V_MODELS)}")
    spec = CATALOG[model_id]
    steps = request.num_inference_steps or spec.default_steps
    if steps_run(steps, request.strength) < 1:
        raise InvalidRequest(f"strength: {request.strength:g} of {steps} steps re-runs no denoising step; the model "
                             f"path needs strength of at least {1 / steps:.3g}")
    seed = seed_or_random(request.seed)
    inputs_id, folder = new_inputs(studio.services)
    try:
        source = store_source(studio.services, owner, folder, request.source_task_id, upload, field_name="source_task_id")
        _first_frame(source_path(studio.paths, folder, source), "source_task_id")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    stored = {"mode": request.mode, "path": "model", "prompt": request.prompt, "negative_prompt": NEGATIVE_PROMPT,
              "model": model_id, "strength": request.strength, "num_inference_steps": steps, "seed": seed,
              "guidance_scale": spec.default_guidance, "source": source, "inputs_id": inputs_id}
    return studio.submit_edit(KIND, stored, owner, estimate_seconds(studio.services, KIND, source["frames"], "model"))


def steps_run(num_inference_steps: int, strength: float) -> int:
    """Denoising steps WanVideoToVideoPipeline runs: the last ``strength`` of the schedule
    (its ``get_timesteps``)."""
    return min(int(num_inference_steps * strength), num_inference_steps)


def _store_inputs(studio: "Studio", request: V2VRequest, owner: str, folder: Path, upload: Path | None,
                  reference_upload: Path | None, reference: np.ndarray | None) -> tuple[dict, int]:
    """Resolve and store the source and reference, validate the whole request on the first
    source frame; (the stored request, the frames the run will write)."""
    source = store_source(studio.services, owner, folder, request.source_task_id, upload, field_name="source_task_id")
    stored = {"mode": request.mode, "strength": request.strength, "preserve_motion": request.preserve_motion,
              "temporal_consistency": request.temporal_consistency, "scale": request.scale, "width": request.width,
              "height": request.height, "factor": request.factor, "target_fps": request.target_fps,
              "source": source}
    if request.motion_reference_task_id or reference_upload:
        stored["reference_video"] = _store_reference_video(studio, owner, folder, request, reference_upload)
        reference = [_first_frame(folder / REFERENCE_VIDEO, "motion_reference_task_id")]
    elif reference is not None:
        store_image(folder, REFERENCE_IMAGE, v2v.as_rgb_image(reference))
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
        wanted = {"animate": ANIMATE_MODELS, "vace": VACE_MODELS, "v2v": V2V_MODELS}[path]
        if request.model not in wanted:
            raise InvalidRequest(f"model: {request.mode}'s model path runs one of {', '.join(wanted)}, "
                                 f"not {request.model!r}")


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
    if job.request.get("path") == "model":
        if job.request.get("pipeline") == "vace":
            return v2v_vace.run(job)
        return v2v_animate.run(job) if job.request["mode"] == "motion_transfer" else _run_model(job)
    request = job.request
    info = job.source_info()
    reference = None
    if request.get("reference_image"):
        reference = job.image(request["reference_image"])
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


# -- the model path ---------------------------------------------------------------------------

def video_to_video_pipeline(pipe) -> WanVideoToVideoPipeline:
    """A WanVideoToVideoPipeline sharing the loaded WanPipeline's components (no weights are
    copied); ``ModelUnavailable`` for a model whose pipeline needs more than it has."""
    if getattr(pipe, "transformer_2", None) is not None or pipe.config.get("expand_timesteps", False):
        raise ModelUnavailable("this model (two experts or expanded timesteps) has no video-to-video pipeline")
    expected = set(inspect.signature(WanVideoToVideoPipeline.__init__).parameters) - {"self"}
    v2v_pipe = WanVideoToVideoPipeline(**{k: v for k, v in pipe.components.items() if k in expected})
    v2v_pipe.set_progress_bar_config(disable=True)
    return v2v_pipe


WINDOW_OVERLAP = 4  # frames consecutive model windows share and cross-fade over
# Share of a window's progress given to denoising; the rest is decoding and writing its frames.
DENOISE_SHARE = 0.9


def _model_frames(job: EditJob, pipe: WanVideoToVideoPipeline, texts: tuple, spec: ModelSpec, info: VideoInfo,
                  size: tuple[int, int], generator: torch.Generator, counters: dict) -> Iterator[np.ndarray]:
    """The source through the pipeline window by window, resized back to the source size."""
    request = job.request
    colorize = request["mode"] == "colorization"
    gen_w, gen_h = size
    windows = window_count(info.frames, spec.max_frames, WINDOW_OVERLAP)
    steps = steps_run(request["num_inference_steps"], request["strength"])
    done = 0  # source frames whose output is final
    held: list[np.ndarray] = []  # the last window's outputs for the frames the next window repeats
    for index, window in enumerate(sliding_windows(job.source_frames(), spec.max_frames, WINDOW_OVERLAP)):
        count = len(window)
        start = done - len(held)

        def on_step(_pipe, i, _t, _kwargs, count=count, index=index, start=start):
            fraction = (start + count * DENOISE_SHARE * (i + 1) / steps) / max(info.frames, 1)
            job.check(fraction, f"Window {index + 1}/{windows}: denoising step {i + 1}/{steps}")
            counters["steps"] += 1
            return {}

        inputs = [v2v.grayscale_rgb(frame) if colorize else frame for frame in window]
        inputs += [inputs[-1]] * (four_k_plus_1(count) - count)  # padded to 4k+1, the padding dropped below
        job.check(start / max(info.frames, 1), f"Window {index + 1}/{windows}: encoding {count} frames")
        with torch.inference_mode():
            output = pipe(
                video=[Image.fromarray(resize(frame, gen_w, gen_h)) for frame in inputs],
                prompt_embeds=texts[0], negative_prompt_embeds=texts[1],
                height=gen_h, width=gen_w,
                num_inference_steps=request["num_inference_steps"], strength=request["strength"],
                guidance_scale=request["guidance_scale"], generator=generator, output_type="np",
                callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"],
            ).frames[0]
        counters["windows"] += 1
        outputs = []
        for k in range(count):
            frame = resize((np.clip(output[k], 0, 1) * 255).round().astype(np.uint8), info.width, info.height)
            outputs.append(v2v.with_luminance(window[k], frame) if colorize else frame)
        yield from crossfade(held, outputs[:len(held)])
        final = len(outputs) - WINDOW_OVERLAP if len(outputs) == spec.max_frames else len(outputs)
        yield from outputs[len(held):final]  # a full window keeps its tail for the next one's cross-fade
        done += final - len(held)
        held = outputs[final:]
    yield from held  # the source ended exactly at a full window: its tail is final as it is


def _run_model(job: EditJob) -> EditOutcome:
    """The model path: WanVideoToVideo over the source, window by window, into the encoder."""
    request = job.request
    info = job.source_info()
    with job.model_run(request["model"], at=0.0) as running:
        loaded = running.model
        spec = loaded.spec
        pipe = video_to_video_pipeline(loaded.pipe)
        size = generation_size(spec, info.width, info.height)
        running.size = size
        guidance = request["guidance_scale"]
        job.check(0.0, "Encoding the prompt")
        with torch.inference_mode():
            texts = loaded.pipe.encode_prompt(  # the loaded pipeline's: diffusers 0.42.1's V2V one needs ftfy
                prompt=request["prompt"], negative_prompt=request["negative_prompt"],
                do_classifier_free_guidance=guidance > 1.0, max_sequence_length=MAX_SEQUENCE_LENGTH,
                device=loaded.pipe._execution_device)
        generator = torch.Generator(device="cpu").manual_seed(request["seed"])
        counters = {"windows": 0, "steps": 0}
        frames = _model_frames(job, pipe, texts, spec, info, size, generator, counters)
        audio = job.source if info.has_audio else None
        video = write_video(job, frames, info.fps, info.frames, message=f"{request['mode']} (model): frame",
                            audio=audio)
    steps = steps_run(request["num_inference_steps"], request["strength"])
    parameters = {"prompt": request["prompt"], "negative_prompt": request["negative_prompt"],
                  "strength": request["strength"], "num_inference_steps": request["num_inference_steps"],
                  "steps_run": steps, "guidance_scale": guidance, "seed": request["seed"], "model": spec.id}
    details = {
        "mode": request["mode"],
        "parameters": parameters,
        "input": {"width": info.width, "height": info.height, "fps": info.fps, "frames": info.frames},
        "output": {"width": video.width, "height": video.height, "fps": video.fps, "frames": video.frames},
        "model": spec.id, "model_trained": spec.trained, "windows": counters["windows"],
        "window_frames": spec.max_frames, "steps": steps, "steps_total": counters["steps"],
        "strength": request["strength"], "seed": request["seed"],
        "generated": {"width": size[0], "height": size[1]},
    }
    if request["mode"] == "colorization":
        details["luminance"] = "source"
    notes = []
    if not spec.trained:
        notes.append(f"{spec.id} is an untrained offline model: its output is noise-like by design")
    if size != (info.width, info.height):
        notes.append(f"frames were resized to {size[0]}x{size[1]} ({spec.id}'s generation size) and the output "
                     f"back to {info.width}x{info.height}")
    if counters["windows"] > 1:
        notes.append(f"the source ran in {counters['windows']} windows of at most {spec.max_frames} frames, "
                     f"overlapping by {WINDOW_OVERLAP} frames that cross-fade from one window's output to the next")
    if request["mode"] == "colorization":
        notes.append("the model saw the grayscale source; the output keeps the source's luminance and takes the "
                     "model's chroma")
    return EditOutcome(video, "model", f"WanVideoToVideo ({spec.id})", details, notes)


def summary(studio: "Studio", task_id: str, owner: str) -> V2VSummary:
    """The seed-style view of a finished V2V task of ``owner``'s (404 for another kind or owner,
    409 until it has completed)."""
    result = studio.result(task_id, owner, kind=KIND)
    meta, details = result.metadata, result.metadata.details
    return V2VSummary(task_id=result.task_id, status=result.status, mode=details["mode"], path=meta.path,
                      method=meta.method, parameters=details["parameters"], input=details["input"],
                      output=details["output"], frames=meta.frames, video_url=result.video_url,
                      thumbnail_url=result.thumbnail_url, generation_time_seconds=result.generation_time_seconds)

