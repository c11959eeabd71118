"""Inpainting's model path: Wan VACE (diffusers' ``WanVACEPipeline``) paints a masked region.

It runs ``replace``, ``background`` with a prompt (and no image) and ``extend`` with a prompt;
``remove`` and ``extend`` without a prompt only when the request asks (``use_model``), since the
classical remove shows the real background. ``model`` is a VACE catalog id (default:
``tiny-vace`` without a GPU, ``wan2.1-vace-1.3b`` with one); a model that cannot be loaded here
fails the submission with ``ModelUnavailable`` (503): nothing is faked. ``tiny-vace`` is
untrained: what it paints is noise-like (it exists to run the whole path offline).

What the model regenerates, per frame, at the source size (weights in [0, 1]; the model sees
the binary region ``weight > 0`` with those pixels set to grey, VACE's "to generate" value):

- ``replace`` / ``remove``: the tracked box grown by ``masks.MASK_DILATION_PX`` plus the
  ``feather_radius`` cosine band (``masks.make_masks``); ``replace`` passes the overlay (or
  background) image, when given, as VACE's ``reference_images``;
- ``background``: everything outside the GrabCut foreground (``background.segment_foreground``),
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

import cv2
import numpy as np

from studio.engine import vace
from studio.engine.edit import EditJob, EditOutcome, write_video
from studio.engine.request import NEGATIVE_PROMPT
from studio.engine.run import untrained_note
from studio.engine.text_cache import encode_prompt_embeds
from studio.genius.inpaint.background import segment_foreground
from studio.genius.inpaint.masks import MASK_DILATION_PX, make_masks
from studio.genius.inpaint.schema import InpaintSpec
from studio.genius.inpaint.tracking import track_bbox
from studio.models.catalog import get_spec
from studio.vision.masks import cosine_ramp, paste


@dataclass
class Region:
    """What the model paints: the canvas it sees (source pixels, grey where it generates) and
    the per-frame composite weights (0 = keep the source pixel exactly)."""

    canvas: list[np.ndarray]
    weights: list[np.ndarray]
    details: dict


def region(spec: InpaintSpec, frames: list[np.ndarray]) -> Region:
    """The region ``spec``'s mode regenerates in ``frames`` (see the module docstring)."""
    mode, r = spec.mode, spec.feather_radius
    if mode == "extend":
        tw, th = spec.target_size
        height, width = frames[0].shape[:2]
        left, top = (tw - width) // 2, (th - height) // 2
        weight = np.ones((th, tw), np.float32)
        weight[top:top + height, left:left + width] = 0.0
        canvas = []
        for frame in frames:
            placed = np.full((th, tw, 3), vace.GREY, np.uint8)
            placed[top:top + height, left:left + width] = frame
            canvas.append(placed)
        return Region(canvas, [weight] * len(frames), {"target_size": [tw, th], "offset": [left, top]})
    track = track_bbox(frames, spec.bbox_xywh)
    details = {"boxes": [[x, y, x + w, y + h] for x, y, w, h in track.boxes], "feather_radius": r,
               "track_confidence_min": min(track.confidences),
               "track_confidence_mean": float(np.mean(track.confidences))}
    if mode == "background":  # regenerate all but the object; feathered into its edge as classically
        weights = []
        foreground = segment_foreground(frames, track.boxes)
        for fg in foreground:
            d_in = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            weights.append(np.where(fg, cosine_ramp(d_in, r), 1.0).astype(np.float32))
        details["foreground_fraction_mean"] = float(np.mean([fg.mean() for fg in foreground]))
    else:  # replace, remove: the box, grown and feathered
        weights = make_masks(frames[0].shape, track.boxes, r, dilate=MASK_DILATION_PX)
    canvas = []
    for frame, weight in zip(frames, weights):
        grey = frame.copy()
        grey[weight > 0] = vace.GREY
        canvas.append(grey)
    return Region(canvas, weights, details)


def run_model(job: EditJob, frames: list[np.ndarray], fps: float, reference: np.ndarray | None) -> EditOutcome:
    """Paint ``job.spec``'s region of ``frames`` with Wan VACE (``reference``: replace's image)
    and write the composite."""
    import torch

    spec: InpaintSpec = job.spec
    model_spec = get_spec(spec.model)
    job.check(0.1, f"Building the mask ({spec.mode})")
    painted_region = region(spec, frames)
    with job.model_run(model_spec.id, at=0.15, advice=vace.ADVICE) as running:
        model = running.model
        ch, cw = painted_region.canvas[0].shape[:2]
        run = vace.plan(model, len(frames), cw, ch)
        running.size = run.size
        steps, guidance, seed = spec.num_inference_steps, spec.guidance_scale, spec.seed
        total = len(frames)

        def composited(texts: tuple) -> Iterator[np.ndarray]:
            painted = vace.generate(job, model, run, painted_region.canvas, painted_region.weights, texts,
                                    steps=steps, guidance=guidance, seed=seed, reference=reference,
                                    progress=(0.2, 1.0))
            for i, frame in enumerate(painted):
                source = painted_region.canvas[i] if spec.mode == "extend" else frames[i]
                yield paste(source, vace.resize(frame, cw, ch), painted_region.weights[i])

        with torch.inference_mode():
            texts = (encode_prompt_embeds(model.pipe, spec.prompt),
                     encode_prompt_embeds(model.pipe, NEGATIVE_PROMPT) if guidance > 1 else None)
            video = write_video(job, composited(texts), fps, total, progress=(0.2, 1.0), message="Encoding frame")
    gw, gh = run.size
    details = {"mode": spec.mode, "model": model_spec.id, "model_trained": model_spec.trained, "prompt": spec.prompt,
               "reference_image": reference is not None, **run.details(), "steps": steps,
               "guidance_scale": guidance, "seed": seed,
               "mask_fraction": float(np.mean([float((w > 0).mean()) for w in painted_region.weights])),
               "memory_profile": model.memory_profile, **painted_region.details}
    notes = []
    if not model_spec.trained:
        notes.append(untrained_note(model_spec.id, "what it paints is"))
    if (gw, gh) != (cw, ch):
        notes.append(f"the model ran at {gw}x{gh} ({model_spec.id}'s size grid and native area) and its output was "
                     f"resized to {cw}x{ch}; only the masked region is taken from it, every other pixel is the "
                     "source's")
    if len(run.spans) > 1:
        notes.append(f"{total} frames ran as {len(run.spans)} windows of at most {model_spec.max_frames} frames "
                     f"({model_spec.id}'s length per pass), each continuing from the last {vace.CONTEXT_FRAMES} "
                     "frames the previous one painted")
    if model_spec.trained and round(fps) != model_spec.native_fps:
        notes.append(f"frames are processed one to one at the source's {fps:g} fps "
                     f"({model_spec.id} was trained at {model_spec.native_fps} fps)")
    return EditOutcome(video, "model", f"WanVACE ({model_spec.id})", details, notes)
