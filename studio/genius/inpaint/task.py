"""Video Inpainting as a queued task: ``POST /v1/genius/inpaint/process``.

The request names the input video (``task_id`` of a completed task, or an upload through the
UI / Gradio API), a ``mode`` and its inputs. Boxes in the API are ``[x1, y1, x2, y2]`` pixel
corners of the first frame (``x2``/``y2`` exclusive), tracked across frames when the object
moves. Which path runs is decided by ``studio.genius.inpaint.algorithm.plan_inpaint``; the classical
algorithms and their thresholds are documented there.

Model path (Wan VACE through diffusers' ``WanVACEPipeline``): ``replace``, ``background`` with a
prompt (and no image) and ``extend`` with a prompt; ``remove`` and ``extend`` without a prompt
only when the request asks (``use_model``), since the classical remove shows the real
background. ``model`` is a VACE catalog id (default: ``tiny-vace`` without a GPU,
``wan2.1-vace-1.3b`` with one); a model that cannot be loaded here fails the submission with
``ModelUnavailable`` (503): nothing is faked. ``tiny-vace`` is untrained: what it paints is
noise-like (it exists to run the whole path offline).

What the model regenerates, per frame, at the source size (weights in [0, 1]; the model sees
the binary region ``weight > 0`` with those pixels set to grey, VACE's "to generate" value):

- ``replace`` / ``remove``: the tracked box grown by ``inpaint.MASK_DILATION_PX`` plus the
  ``feather_radius`` cosine band (``inpaint.make_masks``); ``replace`` passes the overlay (or
  background) image, when given, as VACE's ``reference_images``;
- ``background``: everything outside the GrabCut foreground (``inpaint.segment_foreground``),
  feathered ``feather_radius`` px into the object's edge, like the classical background mode;
- ``extend``: the new border of the target canvas, the video placed at its centre.

The clip runs in windows of at most the model's ``max_frames`` (balanced, each padded to 4k+1
frames by repeating its last frame). Every window after the first starts with the last
``studio.engine.vace.CONTEXT_FRAMES`` frames the previous window painted, given to VACE as known frames (mask 0):
the model continues what it painted instead of starting afresh, so no seam opens between
windows. The model runs at its generation size
(``studio.engine.plan.generation_size``: the canvas, or the model's native area at its aspect),
resized in and back out. The output is composited explicitly: ``weight * generated +
(1 - weight) * source`` where ``weight > 0``; every other pixel is the source's, exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from pydantic import ConfigDict, Field

from studio.engine import vace
from studio.engine.edit import EditJob, EditOutcome, store_image, write_video
from studio.engine.plan import ASPECT
from studio.engine.request import HTTP_URL_PATTERN, NEGATIVE_PROMPT, NOT_BLANK, SEED_MAX, JsonModel, seed_or_random
from studio.engine.text_cache import encode_prompt_embeds
from studio.errors import InvalidRequest, ModelUnavailable
from studio.genius.inpaint import algorithm as inpaint
from studio.genius.edit_submit import estimate_seconds, new_inputs, store_source
from studio.media.inputs import image_input
from studio.models.catalog import VACE_CATALOG, ModelSpec, get_spec

if TYPE_CHECKING:
    from studio.core import Studio
    from studio.views import SubmitResponse

KIND = "inpaint"
MAX_FRAMES = 720  # the classical paths hold the clip in memory (30 s at 24 fps)
TASK_ID_PATTERN = r"^[A-Za-z0-9-]+$"
VaceModel = Literal[tuple(VACE_CATALOG)]
TEXT_TOKENS = 512  # WanVACEPipeline's max_sequence_length default


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
                               description="replace / background / extend with Wan VACE: what to paint")
    model: VaceModel | None = Field(None, description="Wan VACE model of the model path (default: tiny-vace "
                                    "without a GPU, wan2.1-vace-1.3b with one)")
    use_model: bool = Field(False, description="remove / extend without a prompt: run Wan VACE instead of the "
                            "classical path")
    num_inference_steps: int | None = Field(None, ge=1, le=100, description="Model path: sampling steps "
                                            "(default: the model's)")
    guidance_scale: float | None = Field(None, ge=1, le=20, description="Model path: prompt adherence "
                                         "(default: the model's)")
    seed: int | None = Field(None, ge=0, le=SEED_MAX,
                             description="Model path: reproducibility seed (random when absent)")
    overlay_image_base64: str | None = Field(None, max_length=30_000_000,
                                             description="blend: the overlay; replace: a reference image")
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
    studio.refuse_new_work()
    image_field = _image_field(request)
    image = _image(studio, request, image_field)
    path = inpaint.plan_inpaint(request.mode, has_prompt=request.prompt is not None, has_image=image is not None,
                                model_available=request.use_model)
    spec = _vace_spec(request) if path == "model" else None
    inputs_id, folder = new_inputs(studio.services)
    source = store_source(studio.services, owner, folder, request.task_id, upload)
    if source["frames"] > MAX_FRAMES:
        raise InvalidRequest(f"task_id: the video has {source['frames']} frames; inpainting takes at most {MAX_FRAMES}")
    shape = (source["height"], source["width"], 3)
    stored = {"mode": request.mode, "feather_radius": request.feather_radius, "blend_method": request.blend_method,
              "inputs_id": inputs_id, "source": source, "path": path}
    if spec is not None:
        stored.update(model=spec.id, prompt=request.prompt or "",
                      steps=request.num_inference_steps or spec.default_steps,
                      guidance_scale=request.guidance_scale or spec.default_guidance,
                      seed=seed_or_random(request.seed))
    if request.mode == "extend":
        stored["target_size"] = list(inpaint.validate_target_size(_target_size(request, shape), shape))
    else:
        if request.bbox is None:
            raise InvalidRequest(f"bbox: mode {request.mode!r} needs a bbox [x1, y1, x2, y2]")
        x1, y1, x2, y2 = request.bbox
        stored["bbox_xywh"] = list(inpaint.validate_bbox((x1, y1, x2 - x1, y2 - y1), shape))
        inpaint.validate_feather_radius(request.feather_radius, shape)
    if image is not None:
        store_image(folder, f"{image_field}.png", image)
        stored["image"] = f"{image_field}.png"
    return studio.submit_edit(KIND, stored, owner, estimate_seconds(studio.services, KIND, source["frames"], path))


def _vace_spec(request: InpaintRequest) -> ModelSpec:
    """The VACE model of a model-path request, refused with ModelUnavailable when it cannot load here."""
    from studio.models.loader import runnable_spec

    what = f"mode {request.mode!r}" + (" with a prompt" if request.prompt else "")
    try:
        return runnable_spec("vace", request.model, what)
    except ModelUnavailable as error:
        if request.mode != "background":
            raise
        raise ModelUnavailable(f"{error.detail}; or give an image instead (background)") from None


def _image_field(request: InpaintRequest) -> str:
    """blend's overlay; replace's reference (the overlay, else the background fields); background's."""
    if request.mode == "blend":
        return "overlay"
    if request.mode == "replace" and not (request.background_image_base64 or request.background_url):
        return "overlay"
    return "background"


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
    """Read the clip, run the mode's path (classical or Wan VACE), write the result."""
    request = job.request
    info = job.source_info()
    frames = []
    for index, frame in enumerate(job.source_frames()):
        frames.append(frame)
        job.check(0.1 * (index + 1) / info.frames, f"Reading frame {index + 1}/{info.frames}")
    image = None
    if request.get("image"):
        image = job.image(request["image"])
    if request.get("path") == "model":
        return _run_model(job, frames, info.fps, image if request["mode"] == "replace" else None)
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



# -- the Wan VACE path ------------------------------------------------------------------------------

@dataclass
class _Region:
    """What the model paints: the canvas it sees (source pixels, grey where it generates) and
    the per-frame composite weights (0 = keep the source pixel exactly)."""

    canvas: list[np.ndarray]
    weights: list[np.ndarray]
    details: dict


def _region(request: dict, frames: list[np.ndarray]) -> _Region:
    mode, r = request["mode"], request["feather_radius"]
    if mode == "extend":
        tw, th = request["target_size"]
        height, width = frames[0].shape[:2]
        left, top = (tw - width) // 2, (th - height) // 2
        weight = np.ones((th, tw), np.float32)
        weight[top:top + height, left:left + width] = 0.0
        canvas = []
        for frame in frames:
            placed = np.full((th, tw, 3), vace.GREY, np.uint8)
            placed[top:top + height, left:left + width] = frame
            canvas.append(placed)
        return _Region(canvas, [weight] * len(frames), {"target_size": [tw, th], "offset": [left, top]})
    track = inpaint.track_bbox(frames, request["bbox_xywh"])
    details = {"boxes": [[x, y, x + w, y + h] for x, y, w, h in track.boxes], "feather_radius": r,
               "track_confidence_min": min(track.confidences),
               "track_confidence_mean": float(np.mean(track.confidences))}
    if mode == "background":  # regenerate all but the object; feathered into its edge as classically
        weights = []
        foreground = inpaint.segment_foreground(frames, track.boxes)
        for fg in foreground:
            d_in = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            weights.append(np.where(fg, inpaint._ramp(d_in, r), 1.0).astype(np.float32))
        details["foreground_fraction_mean"] = float(np.mean([fg.mean() for fg in foreground]))
    else:  # replace, remove: the box, grown and feathered
        weights = inpaint.make_masks(frames[0].shape, track.boxes, r, dilate=inpaint.MASK_DILATION_PX)
    canvas = []
    for frame, weight in zip(frames, weights):
        grey = frame.copy()
        grey[weight > 0] = vace.GREY
        canvas.append(grey)
    return _Region(canvas, weights, details)


def _run_model(job: EditJob, frames: list[np.ndarray], fps: float, reference: np.ndarray | None) -> EditOutcome:
    import torch

    request = job.request
    spec = get_spec(request["model"])
    job.check(0.1, f"Building the mask ({request['mode']})")
    region = _region(request, frames)
    with job.model_run(spec.id, at=0.15, advice=vace.ADVICE) as running:
        model = running.model
        ch, cw = region.canvas[0].shape[:2]
        run = vace.plan(model, len(frames), cw, ch)
        running.size = run.size
        steps, guidance, seed = request["steps"], request["guidance_scale"], request["seed"]
        total = len(frames)

        def composited(texts: tuple) -> Iterator[np.ndarray]:
            painted = vace.generate(job, model, run, region.canvas, region.weights, texts, steps=steps,
                                    guidance=guidance, seed=seed, reference=reference, progress=(0.2, 1.0))
            for i, frame in enumerate(painted):
                source = region.canvas[i] if request["mode"] == "extend" else frames[i]
                yield inpaint.paste(source, vace.resize(frame, cw, ch), region.weights[i])

        with torch.inference_mode():
            texts = (encode_prompt_embeds(model.pipe, request["prompt"]),
                     encode_prompt_embeds(model.pipe, NEGATIVE_PROMPT) if guidance > 1 else None)
            video = write_video(job, composited(texts), fps, total, progress=(0.2, 1.0), message="Encoding frame")
    gw, gh = run.size
    details = {"mode": request["mode"], "model": spec.id, "model_trained": spec.trained, "prompt": request["prompt"],
               "reference_image": reference is not None, **run.details(), "steps": steps,
               "guidance_scale": guidance, "seed": seed,
               "mask_fraction": float(np.mean([float((w > 0).mean()) for w in region.weights])),
               "memory_profile": model.memory_profile, **region.details}
    notes = []
    if not spec.trained:
        notes.append(f"{spec.id} is an untrained offline model: what it paints is noise-like by design")
    if (gw, gh) != (cw, ch):
        notes.append(f"the model ran at {gw}x{gh} ({spec.id}'s size grid and native area) and its output was resized "
                     f"to {cw}x{ch}; only the masked region is taken from it, every other pixel is the source's")
    if len(run.spans) > 1:
        notes.append(f"{total} frames ran as {len(run.spans)} windows of at most {spec.max_frames} frames "
                     f"({spec.id}'s length per pass), each continuing from the last {vace.CONTEXT_FRAMES} frames "
                     "the previous one painted")
    if spec.trained and round(fps) != spec.native_fps:
        notes.append(f"frames are processed one to one at the source's {fps:g} fps "
                     f"({spec.id} was trained at {spec.native_fps} fps)")
    return EditOutcome(video, "model", f"WanVACE ({spec.id})", details, notes)
