"""Running Wan Animate (diffusers' ``WanAnimatePipeline``) for the features' model paths.

Wan2.2-Animate makes a video of a character image that follows a **pose video** (the body
skeleton, drawn OpenPose-style on black) and a **face video** (square crops of the face, which
drive expression and mouth); both come from a source video through
``studio.engine.motion_signals.driving_signals``. Two modes, as the authors define them:

- ``animate``: the character image moves as the source's person does (V2V ``motion_transfer``);
- ``replace``: the character is painted into the source video inside a mask, over the source's
  background (Lip-Sync: the person of the source re-rendered in the face region, driven by face
  crops whose mouths follow the speech).

The pipeline generates in segments of the model's ``max_frames`` (77 for the real model), each
after the first continuing from the previous segment's last :data:`SEGMENT_CONTEXT` frames
(the authors recommend 1 or 5; 5 carries motion across the seam). The driving videos are
padded (last frame repeated) to at least one segment and the output is cut back to the
source's length. Frames are generated at the model's generation size for the source's aspect
(``studio.engine.plan.generation_size``) and resized back to the source size.

Wan Animate runs without classifier-free guidance (``guidance_scale`` 1, the authors'
setting), so a prompt only sets the scene's description; the default is the authors' own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from studio.engine.edit import EditJob
from studio.engine.plan import generation_size
from studio.engine.run import seeded_generator, untrained_note
from studio.engine.text_cache import encode_prompt_embeds
from studio.engine.windows import window_count
from studio.errors import ModelUnavailable
from studio.media.video import resize
from studio.models import pose
from studio.models.catalog import ModelSpec
from studio.models.loader import LoadedModel, runnable_spec

if TYPE_CHECKING:  # the signals are made by studio.engine.motion_signals; the engine only runs them
    from studio.engine.motion_signals import DrivingSignals

#: Frames of the previous segment each later segment continues from (4k+1; authors: 1 or 5).
SEGMENT_CONTEXT = 5
#: The prompt of the authors' examples ("the person in the video is doing actions").
DEFAULT_PROMPT = "The person in the video is doing actions."
#: What to try when a run of the model runs out of GPU memory.
ADVICE = "try a shorter or smaller clip"
#: Longest source the model paths take: the pipeline holds every output frame until it ends.
MAX_FRAMES = 300


@dataclass
class AnimateRun:
    """What one pipeline run made: frames at the source size, and how it ran."""

    frames: list[np.ndarray]
    segments: int
    steps_total: int
    generated: tuple[int, int]  # (width, height) the model generated at

    def details(self, spec: ModelSpec, mode: str, prompt: str, steps: int, seed: int) -> dict:
        """The result metadata's account of the run."""
        return {"model": spec.id, "model_trained": spec.trained, "animate_mode": mode, "prompt": prompt,
                "num_inference_steps": steps, "seed": seed, "guidance_scale": spec.default_guidance,
                "segments": self.segments, "segment_frames": spec.max_frames,
                "segment_context_frames": SEGMENT_CONTEXT, "steps_total": self.steps_total,
                "generated": {"width": self.generated[0], "height": self.generated[1]}}

    def notes(self, spec: ModelSpec, size: tuple[int, int]) -> list[str]:
        """What a user should know about the run (untrained model, resizing, segments)."""
        notes = []
        if not spec.trained:
            notes.append(untrained_note(spec.id))
        if self.generated != size:
            notes.append(f"frames were generated at {self.generated[0]}x{self.generated[1]} ({spec.id}'s "
                         f"generation size) and resized to {size[0]}x{size[1]}")
        if self.segments > 1:
            notes.append(f"generated in {self.segments} segments of {spec.max_frames} frames, each continuing "
                         f"from the previous one's last {SEGMENT_CONTEXT} frames")
        return notes


def animate_spec(model_id: str | None, what: str) -> ModelSpec:
    """The Animate model a feature's model path runs (``model_id`` or the server's default),
    refused with ``ModelUnavailable`` (503) when it, or the pose model its driving signals need,
    cannot be loaded here; ``what`` names the path in the message."""
    spec = runnable_spec("animate", model_id, what)
    reason = pose.unavailable_reason(spec.trained)
    if reason is not None:
        raise ModelUnavailable(f"{what} reads body poses and {reason}")
    return spec


def segment_count(frames: int, segment: int, context: int = SEGMENT_CONTEXT) -> int:
    """Segments ``WanAnimatePipeline`` runs for ``frames`` driving frames (at least ``segment``
    after padding): its segments are sliding windows, each adding ``segment - context`` frames."""
    return window_count(frames, segment, context)


def animate(job: EditJob, model: LoadedModel, image: np.ndarray, signals: DrivingSignals, *, prompt: str,
            steps: int, seed: int, size: tuple[int, int], progress: tuple[float, float],
            background: list[np.ndarray] | None = None, mask: list[np.ndarray] | None = None) -> AnimateRun:
    """Run the loaded Wan Animate model: ``image`` (RGB uint8, the character) driven by
    ``signals``; ``animate`` mode, or ``replace`` when ``background`` frames and ``mask``
    frames (uint8, 255 = repaint) are given. Returns ``len(signals.pose)`` frames at ``size``
    (width, height). Progress goes from ``progress[0]`` to ``progress[1]`` over the
    denoising steps of all segments; cancellation is checked at every step."""
    spec, pipe = model.spec, model.pipe
    if spec.task != "animate":
        raise ModelUnavailable(f"{spec.id} is not a Wan Animate model")
    n = len(signals.pose)
    gen_w, gen_h = generation_size(spec, *size)
    segments = segment_count(n, spec.max_frames)
    first, last = progress
    counter = {"steps": 0}

    def on_step(_pipe, i: int, _t, _kwargs: dict) -> dict:
        counter["steps"] += 1
        segment = (counter["steps"] - 1) // steps
        job.check(first + (last - first) * counter["steps"] / (segments * steps),
                  f"Segment {segment + 1}/{segments}: denoising step {i + 1}/{steps}")
        return {}

    def pil(frames: list[np.ndarray], width: int, height: int) -> list[Image.Image]:
        padded = frames + [frames[-1]] * max(0, spec.max_frames - len(frames))
        return [Image.fromarray(resize(frame, width, height)) for frame in padded]

    face_side = pipe.transformer.config.motion_encoder_size
    replace = background is not None
    kwargs = {
        "image": Image.fromarray(image), "pose_video": pil(signals.pose, gen_w, gen_h),
        "face_video": pil(signals.face, face_side, face_side),
        "background_video": pil(background, gen_w, gen_h) if replace else None,
        "mask_video": pil(mask, gen_w, gen_h) if replace else None,
        "mode": "replace" if replace else "animate", "height": gen_h, "width": gen_w,
        "segment_frame_length": spec.max_frames, "prev_segment_conditioning_frames": SEGMENT_CONTEXT,
        "num_inference_steps": steps, "guidance_scale": spec.default_guidance,
        "generator": seeded_generator(seed), "output_type": "np",
        "callback_on_step_end": on_step, "callback_on_step_end_tensor_inputs": ["latents"],
    }
    with torch.inference_mode():  # out of memory: the caller's model_run (studio.engine.run) evicts
        output = pipe(prompt_embeds=encode_prompt_embeds(pipe, prompt), **kwargs).frames[0]
    frames = [resize((np.clip(frame, 0, 1) * 255).round().astype(np.uint8), *size) for frame in output[:n]]
    return AnimateRun(frames, segments, counter["steps"], (gen_w, gen_h))
