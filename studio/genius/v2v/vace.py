"""V2V's reference-image model path: Wan VACE for ``style_transfer`` and ``colorization`` with a
``prompt`` *and* a reference image (``style_reference_url`` / ``style_reference_base64``).

VACE generates every frame (the mask is 1 everywhere) from two conditions it was trained on:
the source as a **grayscale control video** (VACE's "gray" condition, the one its colorization
task uses: it carries the structure and the lighting, not the colours) and the reference image
as its **reference image** (appearance, palette, style), plus the prompt. ``colorization``
then keeps the source's own luminance (Lab L) and takes only the chroma from the model, as the
WanVideoToVideo path does; ``style_transfer`` takes the model's frames as they are.

Clips longer than the model's ``max_frames`` run in windows that continue from the previous
window's last frames (``studio.engine.vace``). ``strength``, ``preserve_motion`` and
``temporal_consistency`` do not apply here: VACE regenerates whole frames (a note says so when
a request sets them away from their defaults). ``model`` names a VACE model (the server's
default for the ``vace`` task when absent); one that cannot load here is refused with
``ModelUnavailable`` (503). ``tiny-vace`` is untrained: offline, the path runs end to end but
its frames are noise-like.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.engine import vace
from studio.engine.edit import EditJob, EditOutcome, store_image, write_video
from studio.engine.request import NEGATIVE_PROMPT, seed_or_random
from studio.engine.run import untrained_note
from studio.engine.text_cache import encode_prompt_embeds
from studio.errors import InvalidRequest
from studio.genius.edit_submit import estimate_seconds, inputs_kept_on_success, store_source
from studio.genius.v2v.inputs import REFERENCE_IMAGE, reference_image
from studio.genius.v2v.schema import KIND, V2VRequest, V2VSpec
from studio.models.loader import runnable_spec
from studio.vision.pixels import grayscale_rgb, with_luminance

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices
    from studio.views import SubmitResponse

MAX_FRAMES = 600  # source frames held for the windows (the control video is read whole)


def submit(services: "FeatureServices", request: V2VRequest, owner: str,
           upload: Path | None = None) -> "SubmitResponse":
    """Check and store a reference-image model-path request and queue it."""
    model = runnable_spec("vace", request.model, f"{request.mode} with a prompt and a reference image")
    reference = reference_image(services, request)
    with inputs_kept_on_success(services) as (inputs_id, folder):
        source = store_source(services, owner, folder, request.source_task_id, upload, field_name="source_task_id")
        if source.frames > MAX_FRAMES:
            raise InvalidRequest(f"source_task_id: this model path takes at most {MAX_FRAMES} frames, the source has "
                                 f"{source.frames}")
        store_image(folder, REFERENCE_IMAGE, reference)
        spec = V2VSpec(mode=request.mode, path="model", pipeline="vace", model=model.id, prompt=request.prompt,
                       negative_prompt=NEGATIVE_PROMPT,
                       num_inference_steps=request.num_inference_steps or model.default_steps,
                       guidance_scale=model.default_guidance, seed=seed_or_random(request.seed), source=source,
                       inputs_id=inputs_id, reference_image=REFERENCE_IMAGE,
                       unused=request.changed("strength", "preserve_motion", "temporal_consistency"))
    return services.submit_spec(spec, owner, estimate_seconds(services, KIND, spec.source.frames, "model"))


def run(job: EditJob, spec: V2VSpec) -> EditOutcome:
    """The grayscale source and the reference through VACE, window by window, into the encoder."""
    import torch

    info = job.source_info()
    frames = job.read_source(until=0.05)
    reference = job.image(spec.reference_image)
    with job.model_run(spec.model, at=0.05, advice=vace.ADVICE) as running:
        model = running.model
        catalog = model.spec
        windows = vace.plan(model, len(frames), info.width, info.height)
        running.size = windows.size
        steps, guidance, seed = spec.num_inference_steps, spec.guidance_scale, spec.seed
        colorize = spec.mode == "colorization"
        control = [grayscale_rgb(frame) for frame in frames]
        everywhere = [np.ones(frames[0].shape[:2], np.uint8)] * len(frames)

        def output(texts: tuple):
            made = vace.generate(job, model, windows, control, everywhere, texts, steps=steps, guidance=guidance,
                                 seed=seed, reference=reference, progress=(0.1, 1.0))
            for source, frame in zip(frames, made):
                frame = vace.resize(frame, info.width, info.height)
                yield with_luminance(source, frame) if colorize else frame

        with torch.inference_mode():
            texts = (encode_prompt_embeds(model.pipe, spec.prompt),
                     encode_prompt_embeds(model.pipe, spec.negative_prompt) if guidance > 1 else None)
            video = write_video(job, output(texts), info.fps, len(frames), progress=(0.1, 1.0),
                                message=f"{spec.mode} (Wan VACE): frame",
                                audio=job.source if info.has_audio else None)
    parameters = {"prompt": spec.prompt, "negative_prompt": spec.negative_prompt,
                  "num_inference_steps": steps, "guidance_scale": guidance, "seed": seed, "model": catalog.id}
    details = {"mode": spec.mode, "parameters": parameters,
               "input": {"width": info.width, "height": info.height, "fps": info.fps, "frames": info.frames},
               "output": {"width": video.width, "height": video.height, "fps": video.fps, "frames": video.frames},
               "model": catalog.id, "model_trained": catalog.trained,
               "conditioning": ["gray control video", "reference image"],
               "steps": steps, "seed": seed, **windows.details()}
    if colorize:
        details["luminance"] = "source"
    notes = []
    if not catalog.trained:
        notes.append(untrained_note(catalog.id))
    if tuple(windows.size) != (info.width, info.height):
        notes.append(f"frames were generated at {windows.size[0]}x{windows.size[1]} ({catalog.id}'s generation "
                     f"size) and resized to {info.width}x{info.height}")
    if len(windows.spans) > 1:
        notes.append(f"the source ran in {len(windows.spans)} windows, each continuing from the previous one's last "
                     f"{vace.CONTEXT_FRAMES} frames")
    if spec.unused:
        notes.append(f"{', '.join(spec.unused)} not used: Wan VACE regenerates whole frames from the grayscale "
                     "source and the reference image")
    return EditOutcome(video, "model", f"Wan VACE ({catalog.id}): grayscale source as control, reference image",
                       details, notes)
