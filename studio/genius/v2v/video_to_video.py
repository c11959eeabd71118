"""V2V's prompt model path: diffusers' ``WanVideoToVideoPipeline`` for ``style_transfer`` or
``colorization`` with a ``prompt`` and no reference image.

The pipeline is built from the loaded text-to-video model's components, so no second copy of
the weights. The source is re-noised by ``strength`` (the share of the ``num_inference_steps``
schedule that is re-run: 0.3 keeps most of the source, 1.0 regenerates it from noise) and
denoised towards the prompt, in windows of at most the model's ``max_frames`` (a 4k+1 frame
count), each resized to the model's generation size (``studio.engine.plan.generation_size`` for
the source's aspect) and back to the source size. ``colorization`` feeds the model the
grayscale source and keeps the source's luminance (Lab L), taking only the chroma (a, b) from
the model's output. ``preserve_motion`` / ``temporal_consistency`` are classical-path settings.
``model`` (a catalog text-to-video model the pipeline supports; the server default when absent)
must be loadable here: a hub model without network or GPU fails the task with
``ModelUnavailable`` (the loader's message). ``seed`` (drawn and recorded when absent) makes a
run repeatable. The model runs inside ``EditJob.model_run`` (``studio.engine.run.model_run``:
out of memory evicts it and ends the task with ``VramExceeded``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

# Imported at module import (the API imports this module in the main thread): diffusers' lazy
# module is not safe to import from two threads at once (see studio.models.loader).
from diffusers import WanVideoToVideoPipeline
from PIL import Image

from studio.engine.edit import EditJob, EditOutcome, source_path, write_video
from studio.engine.plan import generation_size
from studio.engine.request import NEGATIVE_PROMPT, seed_or_random
from studio.engine.run import seeded_generator, untrained_note
from studio.engine.text_cache import MAX_SEQUENCE_LENGTH
from studio.engine.windows import crossfade, four_k_plus_1, sliding_windows, window_count
from studio.errors import InvalidRequest, ModelUnavailable
from studio.genius.edit_submit import estimate_seconds, inputs_kept_on_success, store_source
from studio.genius.v2v.inputs import first_frame
from studio.genius.v2v.schema import KIND, V2V_MODELS, V2VRequest, V2VSpec
from studio.media.video import VideoInfo, resize
from studio.models.catalog import CATALOG, ModelSpec
from studio.vision.pixels import grayscale_rgb, with_luminance

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices
    from studio.views import SubmitResponse

WINDOW_OVERLAP = 4  # frames consecutive model windows share and cross-fade over
# Share of a window's progress given to denoising; the rest is decoding and writing its frames.
DENOISE_SHARE = 0.9


def submit(services: "FeatureServices", request: V2VRequest, owner: str, upload: Path | None) -> "SubmitResponse":
    """Queue the model path: the model, steps and seed are resolved and stored now."""
    model_id = request.model or services.default_model
    if model_id not in V2V_MODELS:
        raise InvalidRequest(f"model: the server's default model {model_id!r} has no video-to-video path; "
                             f"choose one of {', '.join(V2V_MODELS)}")
    model = CATALOG[model_id]
    steps = request.num_inference_steps or model.default_steps
    if steps_run(steps, request.strength) < 1:
        raise InvalidRequest(f"strength: {request.strength:g} of {steps} steps re-runs no denoising step; the model "
                             f"path needs strength of at least {1 / steps:.3g}")
    seed = seed_or_random(request.seed)
    with inputs_kept_on_success(services) as (inputs_id, folder):
        source = store_source(services, owner, folder, request.source_task_id, upload, field_name="source_task_id")
        first_frame(source_path(services.paths, folder, source), "source_task_id")
        spec = V2VSpec(mode=request.mode, path="model", pipeline="video_to_video", prompt=request.prompt,
                       negative_prompt=NEGATIVE_PROMPT, model=model_id, strength=request.strength,
                       num_inference_steps=steps, seed=seed, guidance_scale=model.default_guidance, source=source,
                       inputs_id=inputs_id)
    return services.submit_spec(spec, owner, estimate_seconds(services, KIND, spec.source.frames, "model"))


def steps_run(num_inference_steps: int, strength: float) -> int:
    """Denoising steps WanVideoToVideoPipeline runs: the last ``strength`` of the schedule
    (its ``get_timesteps``)."""
    return min(int(num_inference_steps * strength), num_inference_steps)


def video_to_video_pipeline(pipe) -> WanVideoToVideoPipeline:
    """A WanVideoToVideoPipeline sharing the loaded WanPipeline's components (no weights are
    copied); ``ModelUnavailable`` for a model whose pipeline needs more than it has."""
    if getattr(pipe, "transformer_2", None) is not None or pipe.config.get("expand_timesteps", False):
        raise ModelUnavailable("this model (two experts or expanded timesteps) has no video-to-video pipeline")
    expected = set(inspect.signature(WanVideoToVideoPipeline.__init__).parameters) - {"self"}
    v2v_pipe = WanVideoToVideoPipeline(**{k: v for k, v in pipe.components.items() if k in expected})
    v2v_pipe.set_progress_bar_config(disable=True)
    return v2v_pipe


def _model_frames(job: EditJob, spec: V2VSpec, pipe: WanVideoToVideoPipeline, texts: tuple, model: ModelSpec,
                  info: VideoInfo, size: tuple[int, int], generator: torch.Generator,
                  counters: dict) -> Iterator[np.ndarray]:
    """The source through the pipeline window by window, resized back to the source size."""
    colorize = spec.mode == "colorization"
    gen_w, gen_h = size
    windows = window_count(info.frames, model.max_frames, WINDOW_OVERLAP)
    steps = steps_run(spec.num_inference_steps, spec.strength)
    done = 0  # source frames whose output is final
    held: list[np.ndarray] = []  # the last window's outputs for the frames the next window repeats
    for index, window in enumerate(sliding_windows(job.source_frames(), model.max_frames, WINDOW_OVERLAP)):
        count = len(window)
        start = done - len(held)

        def on_step(_pipe, i, _t, _kwargs, count=count, index=index, start=start):
            fraction = (start + count * DENOISE_SHARE * (i + 1) / steps) / max(info.frames, 1)
            job.check(fraction, f"Window {index + 1}/{windows}: denoising step {i + 1}/{steps}")
            counters["steps"] += 1
            return {}

        inputs = [grayscale_rgb(frame) if colorize else frame for frame in window]
        inputs += [inputs[-1]] * (four_k_plus_1(count) - count)  # padded to 4k+1, the padding dropped below
        job.check(start / max(info.frames, 1), f"Window {index + 1}/{windows}: encoding {count} frames")
        with torch.inference_mode():
            output = pipe(
                video=[Image.fromarray(resize(frame, gen_w, gen_h)) for frame in inputs],
                prompt_embeds=texts[0], negative_prompt_embeds=texts[1],
                height=gen_h, width=gen_w,
                num_inference_steps=spec.num_inference_steps, strength=spec.strength,
                guidance_scale=spec.guidance_scale, generator=generator, output_type="np",
                callback_on_step_end=on_step, callback_on_step_end_tensor_inputs=["latents"],
            ).frames[0]
        counters["windows"] += 1
        outputs = []
        for k in range(count):
            frame = resize((np.clip(output[k], 0, 1) * 255).round().astype(np.uint8), info.width, info.height)
            outputs.append(with_luminance(window[k], frame) if colorize else frame)
        yield from crossfade(held, outputs[:len(held)])
        final = len(outputs) - WINDOW_OVERLAP if len(outputs) == model.max_frames else len(outputs)
        yield from outputs[len(held):final]  # a full window keeps its tail for the next one's cross-fade
        done += final - len(held)
        held = outputs[final:]
    yield from held  # the source ended exactly at a full window: its tail is final as it is


def run(job: EditJob, spec: V2VSpec) -> EditOutcome:
    """The model path: WanVideoToVideo over the source, window by window, into the encoder."""
    info = job.source_info()
    with job.model_run(spec.model, at=0.0) as running:
        loaded = running.model
        model = loaded.spec
        pipe = video_to_video_pipeline(loaded.pipe)
        size = generation_size(model, info.width, info.height)
        running.size = size
        guidance = spec.guidance_scale
        job.check(0.0, "Encoding the prompt")
        with torch.inference_mode():
            texts = loaded.pipe.encode_prompt(  # the loaded pipeline's: diffusers 0.42.1's V2V one needs ftfy
                prompt=spec.prompt, negative_prompt=spec.negative_prompt,
                do_classifier_free_guidance=guidance > 1.0, max_sequence_length=MAX_SEQUENCE_LENGTH,
                device=loaded.pipe._execution_device)
        generator = seeded_generator(spec.seed)
        counters = {"windows": 0, "steps": 0}
        frames = _model_frames(job, spec, pipe, texts, model, info, size, generator, counters)
        audio = job.source if info.has_audio else None
        video = write_video(job, frames, info.fps, info.frames, message=f"{spec.mode} (model): frame", audio=audio)
    steps = steps_run(spec.num_inference_steps, spec.strength)
    parameters = {"prompt": spec.prompt, "negative_prompt": spec.negative_prompt, "strength": spec.strength,
                  "num_inference_steps": spec.num_inference_steps, "steps_run": steps, "guidance_scale": guidance,
                  "seed": spec.seed, "model": model.id}
    details = {
        "mode": spec.mode,
        "parameters": parameters,
        "input": {"width": info.width, "height": info.height, "fps": info.fps, "frames": info.frames},
        "output": {"width": video.width, "height": video.height, "fps": video.fps, "frames": video.frames},
        "model": model.id, "model_trained": model.trained, "windows": counters["windows"],
        "window_frames": model.max_frames, "steps": steps, "steps_total": counters["steps"],
        "strength": spec.strength, "seed": spec.seed,
        "generated": {"width": size[0], "height": size[1]},
    }
    if spec.mode == "colorization":
        details["luminance"] = "source"
    notes = []
    if not model.trained:
        notes.append(untrained_note(model.id))
    if size != (info.width, info.height):
        notes.append(f"frames were resized to {size[0]}x{size[1]} ({model.id}'s generation size) and the output "
                     f"back to {info.width}x{info.height}")
    if counters["windows"] > 1:
        notes.append(f"the source ran in {counters['windows']} windows of at most {model.max_frames} frames, "
                     f"overlapping by {WINDOW_OVERLAP} frames that cross-fade from one window's output to the next")
    if spec.mode == "colorization":
        notes.append("the model saw the grayscale source; the output keeps the source's luminance and takes the "
                     "model's chroma")
    return EditOutcome(video, "model", f"WanVideoToVideo ({model.id})", details, notes)
