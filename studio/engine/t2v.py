"""One text-to-video run: denoise with live previews, then decode and encode frame by frame.

The engine knows nothing about tasks, HTTP or the UI: it takes a plan, a loaded model and a
``RunHooks`` object, and calls the hooks as it goes. The hooks are where progress is stored,
events are published and cancellation is checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from studio.engine.decode import iter_decoded_frames
from studio.engine.plan import GenerationPlan
from studio.engine.preview import estimate_denoised
from studio.genius import decoder
from studio.media.video import Mp4Writer, fit_width, resize, write_jpeg
from studio.models.loader import LoadedModel

# Share of the progress bar given to denoising; the rest is decode + encode.
DENOISE_SHARE = 0.9
THUMBNAIL_WIDTH = 320


class Cancelled(Exception):
    """Raised inside the sampler's callback to stop a run between two steps."""


class RunHooks(Protocol):
    def should_cancel(self) -> bool: ...
    def on_phase(self, status: str, message: str) -> None: ...
    def on_step(self, step: int, total: int, step_seconds: float, preview: np.ndarray | None) -> None: ...
    def on_encoded(self, frames_done: int, total: int) -> None: ...


@dataclass
class RunOutput:
    video_path: Path
    thumbnail_path: Path
    frames: int
    width: int
    height: int
    fps: int
    denoise_seconds: float
    decode_encode_seconds: float
    mean_step_seconds: float
    step_seconds: list[float] = field(default_factory=list)  # per denoising step, hooks excluded
    decoder: decoder.DecoderStats | None = None  # step-cache stats (acceleration)


class _StepWatcher:
    """The ``callback_on_step_end`` of the pipeline: timing, previews, cancellation."""

    def __init__(self, model: LoadedModel, plan: GenerationPlan, hooks: RunHooks,
                 initial_latents: torch.Tensor, preview_width: int, min_preview_interval: float):
        self.model, self.plan, self.hooks = model, plan, hooks
        self.previous = initial_latents
        self.preview_width = preview_width
        self.min_preview_interval = min_preview_interval
        self.last_preview_at = 0.0
        self.last_step_at = time.perf_counter()
        self.clock_started = False
        self.step_seconds: list[float] = []

    def start_clock(self, module, args) -> None:
        """Forward pre-hook of the denoisers: step 1's clock starts at its first transformer
        pass, so prompt encoding and latent preparation are not billed to a step."""
        if not self.clock_started:
            self.clock_started = True
            self.last_step_at = time.perf_counter()

    def __call__(self, pipe, i: int, t, kwargs: dict) -> dict:
        now = time.perf_counter()
        self.step_seconds.append(now - self.last_step_at)
        self.last_step_at = now
        latents = kwargs["latents"]
        total = self.plan.num_inference_steps
        preview = None
        last_step = i == total - 1
        if i == 0 or last_step or now - self.last_preview_at >= self.min_preview_interval:
            sigmas = pipe.scheduler.sigmas
            denoised = estimate_denoised(self.previous, latents, float(sigmas[i]), float(sigmas[i + 1]))
            preview = self.model.previewer.to_rgb(denoised, width=self.preview_width)
            self.last_preview_at = now
        self.previous = latents
        self.hooks.on_step(i + 1, total, self.step_seconds[-1], preview)
        if self.hooks.should_cancel():
            raise Cancelled()
        self.last_step_at = time.perf_counter()  # hook time is not step time
        return {}


def _denoise(model: LoadedModel, plan: GenerationPlan, hooks: RunHooks, preview_width: int,
             min_preview_interval: float) -> tuple[torch.Tensor, list[float], decoder.DecoderStats]:
    pipe = model.pipe
    device = pipe._execution_device
    generator = torch.Generator(device="cpu").manual_seed(plan.seed)
    # Our own starting noise, so the first step's denoised estimate can be computed too.
    initial = pipe.prepare_latents(1, pipe.transformer.config.in_channels, plan.gen_height, plan.gen_width,
                                   plan.gen_frames, torch.float32, torch.device("cpu"), generator).to(device)
    watcher = _StepWatcher(model, plan, hooks, initial, preview_width, min_preview_interval)
    clocks = [m.register_forward_pre_hook(watcher.start_clock) for m in decoder.denoisers(pipe)]
    try:
        with decoder.apply(pipe, plan.acceleration) as recorder:
            latents = _call_pipe(pipe, plan, initial, watcher)
    finally:
        for handle in clocks:
            handle.remove()
    return latents, watcher.step_seconds, recorder.stats(watcher.step_seconds)


def _call_pipe(pipe, plan: GenerationPlan, initial: torch.Tensor, watcher: _StepWatcher) -> torch.Tensor:
    return pipe(
        prompt=plan.prompt,
        negative_prompt=plan.negative_prompt,
        height=plan.gen_height,
        width=plan.gen_width,
        num_frames=plan.gen_frames,
        num_inference_steps=plan.num_inference_steps,
        guidance_scale=plan.guidance_scale,
        latents=initial,
        output_type="latent",
        callback_on_step_end=watcher,
        callback_on_step_end_tensor_inputs=["latents"],
    ).frames


def _decode_and_encode(model: LoadedModel, plan: GenerationPlan, latents: torch.Tensor, hooks: RunHooks,
                       video_path: Path, thumbnail_path: Path) -> int:
    """Decode latent chunks, resample/resize them to the output plan and pipe them to the encoder."""
    thumb_index = plan.out_frames // 2
    out_index = 0
    seen = 0  # generated frames decoded so far
    with Mp4Writer(video_path, plan.out_width, plan.out_height, plan.fps) as writer:
        for chunk in iter_decoded_frames(model.pipe.vae, latents):
            seen += len(chunk)
            while out_index < plan.out_frames and plan.source_index(out_index) < seen:
                source = chunk[plan.source_index(out_index) - (seen - len(chunk))]
                frame = resize(source, plan.out_width, plan.out_height)
                writer.write(frame)
                if out_index == thumb_index:
                    write_jpeg(thumbnail_path, fit_width(frame, min(THUMBNAIL_WIDTH, plan.out_width)))
                out_index += 1
            hooks.on_encoded(out_index, plan.out_frames)
            if hooks.should_cancel():
                raise Cancelled()
    return writer.frames_written


def run_text_to_video(model: LoadedModel, plan: GenerationPlan, hooks: RunHooks, video_path: Path,
                      thumbnail_path: Path, preview_width: int = 256,
                      min_preview_interval: float = 0.2) -> RunOutput:
    """Generate ``plan`` with ``model`` into ``video_path`` (H.264 mp4) and ``thumbnail_path``.

    Raises ``Cancelled`` when ``hooks.should_cancel()`` turns true (checked after every step
    and every decoded chunk); the partial video is removed.
    """
    hooks.on_phase("generating_base", f"Denoising step 0/{plan.num_inference_steps}")
    started = time.perf_counter()
    with torch.inference_mode():
        latents, step_seconds, decoder_stats = _denoise(model, plan, hooks, preview_width, min_preview_interval)
    denoised_at = time.perf_counter()
    hooks.on_phase("encoding", f"Decoding and encoding {plan.out_frames} frames")
    frames = _decode_and_encode(model, plan, latents, hooks, video_path, thumbnail_path)
    finished = time.perf_counter()
    return RunOutput(
        video_path=video_path,
        thumbnail_path=thumbnail_path,
        frames=frames,
        width=plan.out_width,
        height=plan.out_height,
        fps=plan.fps,
        denoise_seconds=denoised_at - started,
        decode_encode_seconds=finished - denoised_at,
        mean_step_seconds=float(np.mean(step_seconds)) if step_seconds else 0.0,
        step_seconds=step_seconds,
        decoder=decoder_stats,
    )
