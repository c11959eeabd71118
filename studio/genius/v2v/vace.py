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

import shutil
from typing import TYPE_CHECKING

import numpy as np

from studio.engine import vace
from studio.engine.edit import EditJob, EditOutcome, store_image, write_video
from studio.engine.request import NEGATIVE_PROMPT, seed_or_random
from studio.engine.text_cache import encode_prompt_embeds
from studio.errors import InvalidRequest
from studio.genius.v2v import algorithm as v2v
from studio.genius.edit_submit import estimate_seconds, new_inputs, store_source
from studio.media.inputs import image_input
from studio.models.loader import runnable_spec

if TYPE_CHECKING:
    from studio.core import Studio
    from studio.genius.v2v.task import V2VRequest
    from studio.views import SubmitResponse

KIND = "v2v"
REFERENCE_IMAGE = "reference.png"
MAX_FRAMES = 600  # source frames held for the windows (the control video is read whole)


def submit(studio: "Studio", request: "V2VRequest", owner: str, upload=None) -> "SubmitResponse":
    """Check and store a reference-image model-path request and queue it."""
    spec = runnable_spec("vace", request.model, f"{request.mode} with a prompt and a reference image")
    reference = image_input(request.style_reference_base64, request.style_reference_url, studio.fetch_policy,
                            "style_reference_base64", "style_reference_url")
    inputs_id, folder = new_inputs(studio.services)
    try:
        source = store_source(studio.services, owner, folder, request.source_task_id, upload, field_name="source_task_id")
        if source["frames"] > MAX_FRAMES:
            raise InvalidRequest(f"source_task_id: this model path takes at most {MAX_FRAMES} frames, the source has "
                                 f"{source['frames']}")
        store_image(folder, REFERENCE_IMAGE, reference)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    stored = {"mode": request.mode, "path": "model", "pipeline": "vace", "model": spec.id, "prompt": request.prompt,
              "negative_prompt": NEGATIVE_PROMPT, "num_inference_steps": request.num_inference_steps or
              spec.default_steps, "guidance_scale": spec.default_guidance,
              "seed": seed_or_random(request.seed),
              "source": source, "inputs_id": inputs_id, "reference_image": REFERENCE_IMAGE,
              "unused": request.changed("strength", "preserve_motion", "temporal_consistency")}
    return studio.submit_edit(KIND, stored, owner, estimate_seconds(studio.services, KIND, source["frames"], "model"))


def run(job: EditJob) -> EditOutcome:
    """The grayscale source and the reference through VACE, window by window, into the encoder."""
    import torch

    request = job.request
    info = job.source_info()
    frames = job.read_source(until=0.05)
    reference = job.image(request["reference_image"])
    with job.model_run(request["model"], at=0.05, advice=vace.ADVICE) as running:
        model = running.model
        spec = model.spec
        run = vace.plan(model, len(frames), info.width, info.height)
        running.size = run.size
        steps, guidance, seed = request["num_inference_steps"], request["guidance_scale"], request["seed"]
        colorize = request["mode"] == "colorization"
        control = [v2v.grayscale_rgb(frame) for frame in frames]
        everywhere = [np.ones(frames[0].shape[:2], np.uint8)] * len(frames)

        def output(texts: tuple):
            made = vace.generate(job, model, run, control, everywhere, texts, steps=steps, guidance=guidance,
                                 seed=seed, reference=reference, progress=(0.1, 1.0))
            for source, frame in zip(frames, made):
                frame = vace.resize(frame, info.width, info.height)
                yield v2v.with_luminance(source, frame) if colorize else frame

        with torch.inference_mode():
            texts = (encode_prompt_embeds(model.pipe, request["prompt"]),
                     encode_prompt_embeds(model.pipe, request["negative_prompt"]) if guidance > 1 else None)
            video = write_video(job, output(texts), info.fps, len(frames), progress=(0.1, 1.0),
                                message=f"{request['mode']} (Wan VACE): frame",
                                audio=job.source if info.has_audio else None)
    parameters = {"prompt": request["prompt"], "negative_prompt": request["negative_prompt"],
                  "num_inference_steps": steps, "guidance_scale": guidance, "seed": seed, "model": spec.id}
    details = {"mode": request["mode"], "parameters": parameters,
               "input": {"width": info.width, "height": info.height, "fps": info.fps, "frames": info.frames},
               "output": {"width": video.width, "height": video.height, "fps": video.fps, "frames": video.frames},
               "model": spec.id, "model_trained": spec.trained, "conditioning": ["gray control video",
                                                                                 "reference image"],
               "steps": steps, "seed": seed, **run.details()}
    if colorize:
        details["luminance"] = "source"
    notes = []
    if not spec.trained:
        notes.append(f"{spec.id} is an untrained offline model: its output is noise-like by design")
    if tuple(run.size) != (info.width, info.height):
        notes.append(f"frames were generated at {run.size[0]}x{run.size[1]} ({spec.id}'s generation size) and "
                     f"resized to {info.width}x{info.height}")
    if len(run.spans) > 1:
        notes.append(f"the source ran in {len(run.spans)} windows, each continuing from the previous one's last "
                     f"{vace.CONTEXT_FRAMES} frames")
    if request["unused"]:
        notes.append(f"{', '.join(request['unused'])} not used: Wan VACE regenerates whole frames from the grayscale "
                     "source and the reference image")
    return EditOutcome(video, "model", f"Wan VACE ({spec.id}): grayscale source as control, reference image",
                       details, notes)
