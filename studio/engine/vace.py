"""Running Wan VACE (diffusers' ``WanVACEPipeline``) over a clip of any length, window by window.

VACE takes a video and a mask per frame: where the mask is 0 the frame is *known* and kept as
context, where it is 1 the model generates, guided by what the video holds there (grey,
:data:`GREY`, means "nothing"; a picture there acts as a control signal) and by optional
reference images. Video Inpainting feeds it the masked source; V2V style transfer feeds it the
whole source under a full mask, with the style image as the reference.

A clip longer than the model's ``max_frames`` runs in balanced windows
(``studio.engine.windows.balanced_windows``); each window after the first starts with the last
:data:`CONTEXT_FRAMES` frames the previous one generated, given as known frames (mask 0), so
the clip has no seam where windows meet. Frames
run at the model's generation size for the clip's aspect (``studio.engine.plan.generation_size``)
and come back at it: the caller resizes and composites.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from studio.engine.edit import EditJob
from studio.engine.plan import generation_size
from studio.engine.run import seeded_generator
from studio.engine.windows import CONTEXT_FRAMES, balanced_windows
from studio.models.loader import LoadedModel

GREY = 127  # VACE's "generate here" value: 0 on the pipeline's [-1, 1] scale
#: What to try when a VACE run runs out of GPU memory.
ADVICE = "try a shorter or smaller clip or the smaller VACE model"


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` at ``width`` x ``height`` (area filter down, bilinear up: masks stay masks)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrink = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@dataclass
class VaceRun:
    """How a clip ran: its windows and generation size (filled in as the frames come)."""

    spans: list[tuple[int, int, int, int]]
    size: tuple[int, int]  # (width, height) generated at

    def details(self) -> dict:
        return {"windows": len(self.spans), "window_frames": [generated for *_, generated in self.spans],
                "window_context_frames": [context for _, _, context, _ in self.spans],
                "generation_size": list(self.size)}


def plan(model: LoadedModel, frames: int, width: int, height: int) -> VaceRun:
    """The windows and generation size a clip of ``frames`` at ``width`` x ``height`` runs at."""
    return VaceRun(balanced_windows(frames, model.spec.max_frames, CONTEXT_FRAMES),
                   generation_size(model.spec, width, height))


def generate(job: EditJob, model: LoadedModel, run: VaceRun, video: Sequence[np.ndarray], masks: Sequence[np.ndarray],
             texts: tuple, *, steps: int, guidance: float, seed: int, reference: np.ndarray | None = None,
             progress: tuple[float, float] = (0.0, 1.0), conditioning_scale: float = 1.0) -> Iterator[np.ndarray]:
    """The generated frames, one per frame of ``video``, at ``run.size``, window by window.

    ``video[i]`` (RGB uint8) and ``masks[i]`` (any array, > 0 = generate) are resized to the
    generation size; ``texts`` = (prompt embeddings, negative embeddings or None); ``reference``
    an RGB image VACE conditions every window on. Progress runs from ``progress[0]`` to
    ``progress[1]`` over the frames' denoising steps; cancellation is checked at every step.
    """
    from PIL import Image

    gw, gh = run.size
    first, last = progress
    total = len(video)
    ref = [Image.fromarray(np.ascontiguousarray(reference[..., :3]))] if reference is not None else None
    known = Image.fromarray(np.zeros((gh, gw), np.uint8))
    previous: list[np.ndarray] = []
    for k, (start, end, context, generated) in enumerate(run.spans):
        def on_step(_pipe, i: int, _t, _kwargs: dict, k=k, start=start, end=end) -> dict:
            done = start + (end - start) * (i + 1) / steps
            job.check(first + (last - first) * done / total, f"Window {k + 1}/{len(run.spans)}: step {i + 1}/{steps}")
            return {}

        pad = [min(i, end - 1) for i in range(start, start + generated - context)]  # repeat the last frame
        frames = [Image.fromarray(f) for f in previous[len(previous) - context:]] + \
            [Image.fromarray(resize(video[i], gw, gh)) for i in pad]
        mask = [known] * context + \
            [Image.fromarray(np.where(resize(masks[i], gw, gh) > 0, 255, 0).astype(np.uint8)) for i in pad]
        out = model.pipe(prompt_embeds=texts[0], negative_prompt_embeds=texts[1], video=frames, mask=mask,
                         reference_images=ref, conditioning_scale=conditioning_scale, height=gh, width=gw,
                         num_frames=generated, num_inference_steps=steps, guidance_scale=guidance,
                         generator=seeded_generator(seed), output_type="np",
                         callback_on_step_end=on_step).frames[0]
        previous = [np.clip(np.rint(f * 255), 0, 255).astype(np.uint8) for f in out[context: context + end - start]]
        yield from previous
