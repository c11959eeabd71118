"""Text-to-video runs: denoise with live previews, then decode and encode frame by frame.

A run covers one task, or a group of same-shaped tasks denoised in one batched pipeline call.

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

from studio.engine import step_cache
from studio.engine.decode import free_gpu_bytes, iter_decoded_frames, tiling_note
from studio.engine.output_frames import THUMBNAIL_WIDTH, LearnedNetworks, OutputFrames
from studio.engine.plan import GenerationPlan
from studio.engine.preview import estimate_denoised, previewer_of
from studio.engine.run import seeded_generator
from studio.engine.state_cache import start_at_step
from studio.engine.text_cache import TextEmbeddingCache, encode_prompt_embeds
from studio.media.frame_boards import FINAL, PREVIEW
from studio.media.video import Mp4Writer, fit_width, write_jpeg
from studio.models.loader import LoadedModel
from studio.vision.pixels import cover_resize

# Share of the progress bar given to denoising; the rest is decode + encode.
DENOISE_SHARE = 0.9


class Cancelled(Exception):
    """Raised inside the sampler's callback to stop a run between two steps."""


class RunHooks(Protocol):
    def should_cancel(self) -> bool: ...
    def on_phase(self, status: str, message: str) -> None: ...
    def on_step(self, step: int, total: int, step_seconds: float, preview: np.ndarray | None) -> None: ...
    def on_encoded(self, frames_done: int, total: int) -> None: ...
    def streaming(self) -> bool: ...
    def on_stream_frame(self, frame_index: int, quality: str, rgb: np.ndarray, progress: float) -> None: ...


class QuietHooks:
    """Hooks that ignore every report and never cancel: a base for callers (tests, benchmarks)
    that override only what they watch."""

    def should_cancel(self) -> bool:
        return False

    def on_phase(self, status: str, message: str) -> None:
        pass

    def on_step(self, step: int, total: int, step_seconds: float, preview: np.ndarray | None) -> None:
        pass

    def on_encoded(self, frames_done: int, total: int) -> None:
        pass

    def streaming(self) -> bool:
        return False

    def on_stream_frame(self, frame_index: int, quality: str, rgb: np.ndarray, progress: float) -> None:
        pass


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
    decoder: step_cache.DecoderStats | None = None  # step-cache stats (acceleration), of the whole call
    group_size: int = 1  # tasks denoised together in this pipeline call
    text_encoding_reused: bool = False  # the prompt's text encoding came from the cache
    states: dict[int, torch.Tensor] = field(default_factory=dict)  # steps done -> latents (CPU), if captured
    # A chained run (studio.engine.long_video): each finished window (Window.to_dict() + colour
    # correction + seconds); partial: a cancel kept only these; the continuation model's load.
    windows: list[dict] = field(default_factory=list)
    # An autoregressive run (studio.engine.chunked): each finished chunk (index, frames, seconds).
    chunks: list[dict] = field(default_factory=list)
    partial: bool = False
    continuation_load_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what the run itself decided (a tiled decode), for metadata


@dataclass(frozen=True)
class FrameImages:
    """An image-to-video run's frames (RGB uint8): the first, and the last for FLF2V models."""

    first: np.ndarray
    last: np.ndarray | None = None

    def pipeline_inputs(self, width: int, height: int) -> dict:
        """``image`` / ``last_image`` for ``WanImageToVideoPipeline`` at the generation size
        (cover-cropped to its aspect ratio, so nothing is stretched)."""
        from PIL import Image

        def picture(frame: np.ndarray):
            return Image.fromarray(np.ascontiguousarray(cover_resize(frame[..., :3], width, height)))

        inputs = {"image": picture(self.first)}
        if self.last is not None:
            inputs["last_image"] = picture(self.last)
        return inputs


def image_pipeline(pipe):
    """The pipeline that takes an image for ``pipe``: itself (``WanImageToVideoPipeline``), or, for
    a TI2V text-to-video pipeline (``expand_timesteps``), an image-to-video pipeline over the same
    modules, in which the image's latents are the first latent frame all along."""
    from diffusers import WanImageToVideoPipeline

    if isinstance(pipe, WanImageToVideoPipeline):
        return pipe
    if not getattr(pipe.config, "expand_timesteps", False):
        raise ValueError(f"{type(pipe).__name__} takes no image")
    if getattr(pipe, "_studio_image_pipe", None) is None:  # built once per loaded model: it only holds references
        pipe._studio_image_pipe = WanImageToVideoPipeline(
            tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae, scheduler=pipe.scheduler,
            transformer=pipe.transformer, expand_timesteps=True)
    return pipe._studio_image_pipe


@dataclass(frozen=True)
class Resume:
    """Start a group after ``step`` steps from ``latents`` ``[n, C, T, h, w]`` (approximate
    caching: near-identical prompts skip the early steps, see ``studio.engine.state_cache``)."""

    step: int
    latents: torch.Tensor


class StepWatcher:
    """The ``callback_on_step_end`` of the pipeline: timing, previews, cancellation.

    One watcher serves a whole group (a batched call): latents row ``i`` belongs to
    ``plans[i]`` / ``hooks[i]``. A task cancelled mid-run stops getting updates and its output
    is dropped; the call itself stops only when every task of the group is cancelled.
    """

    def __init__(self, model: LoadedModel, plans: list[GenerationPlan], hooks: list[RunHooks],
                 initial_latents: torch.Tensor, preview_width: int, min_preview_interval: float,
                 first_step: int = 0, capture_steps: tuple[int, ...] = (), total_steps: int | None = None,
                 clip_offset: int = 0):
        self.model, self.plans, self.hooks = model, plans, hooks
        self.previewer = previewer_of(model)  # fitted (once per VAE) before the first step's clock starts
        # Steps done before this call (a resumed run's skipped steps, a chain's earlier windows)
        # and in all (a chain: every window's); the clip frame this call's first frame is.
        self.first_step = first_step
        self.total_steps = total_steps or plans[0].num_inference_steps
        self.clip_offset = clip_offset
        self.capture_steps = set(capture_steps)
        self.states: dict[int, torch.Tensor] = {}  # steps done -> latents of the whole group (CPU)
        self.previous = initial_latents
        self.preview_width = preview_width
        self.min_preview_interval = min_preview_interval
        self.last_preview_at = 0.0
        self.last_step_at = time.perf_counter()
        self.clock_started = False
        self.step_seconds: list[float] = []
        self.cancelled: set[int] = set()

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
        total = self.total_steps
        step = self.first_step + i + 1  # steps done, counting skipped ones
        if step in self.capture_steps:
            self.states[step] = latents.detach().to("cpu", copy=True)
        # Which rows show this step: the first and last always; between them every
        # ``preview_every`` steps of that task, and never faster than ``min_preview_interval``.
        due = i == 0 or step == total
        wanted = [due or (step % plan.preview_every == 0
                          and now - self.last_preview_at >= self.min_preview_interval) for plan in self.plans]
        denoised = None
        if any(wanted):
            sigmas = pipe.scheduler.sigmas
            denoised = estimate_denoised(self.previous, latents, float(sigmas[i]), float(sigmas[i + 1]))
            self.last_preview_at = now
        self.previous = latents
        for row, hooks in enumerate(self.hooks):
            if row in self.cancelled:
                continue
            preview = self.previewer.to_rgb(denoised[row:row + 1], width=self.preview_width) if wanted[row] else None
            hooks.on_step(step, total, self.step_seconds[-1], preview)
            if preview is not None and hooks.streaming():
                self._stream_previews(pipe, self.plans[row], hooks, denoised[row:row + 1],
                                      DENOISE_SHARE * step / total)
            if hooks.should_cancel():
                self.cancelled.add(row)
        if len(self.cancelled) == len(self.hooks):
            raise Cancelled()
        self.last_step_at = time.perf_counter()  # hook time is not step time
        return {}

    def _stream_previews(self, pipe, plan: GenerationPlan, hooks: RunHooks, denoised: torch.Tensor,
                         progress: float) -> None:
        """Every latent frame's denoised estimate as a preview of the output frame it starts."""
        ratio = pipe.vae_scale_factor_temporal
        for latent_index in range(denoised.shape[2]):
            rgb = self.previewer.to_rgb(denoised, frame=latent_index, width=self.preview_width)
            clip_index = self.clip_offset + min(latent_index * ratio, plan.gen_frames - 1)
            hooks.on_stream_frame(plan.output_index(clip_index), PREVIEW, rgb, progress)


@dataclass
class TextEncoding:
    """What the text encoder produced for a group, and which prompts reused earlier encodings."""

    prompt_embeds: torch.Tensor | None = None
    negative_prompt_embeds: torch.Tensor | None = None
    reused: list[bool] = field(default_factory=list)


def encode_texts(pipe, plans: list[GenerationPlan], cache: TextEmbeddingCache) -> TextEncoding:
    """Prompt embeddings for a group through ``cache`` (equal prompts are encoded once)."""
    device = pipe._execution_device
    prompts, reused = cache.encode(pipe, plans[0].model, [p.prompt for p in plans], device)
    negative = None
    if plans[0].guidance_scale > 1.0:
        negative, _ = cache.encode(pipe, plans[0].model, [p.negative_prompt for p in plans], device)
    return TextEncoding(prompts, negative, reused)


def select_texts(texts: TextEncoding | None, rows: list[int]) -> TextEncoding | None:
    """The encodings of some rows of a group (a sub-group run on its own)."""
    if texts is None:
        return None
    negative = texts.negative_prompt_embeds
    return TextEncoding(texts.prompt_embeds[rows], None if negative is None else negative[rows],
                        [texts.reused[r] for r in rows])


def initial_latents(pipe, plan: GenerationPlan, device) -> torch.Tensor:
    """The plan's starting noise from its own seed (what a single run of it would use): the
    shape and draw of ``WanPipeline.prepare_latents``, with the VAE's latent channels (the
    transformer's input channels too, except for image-to-video, whose input adds the image's)."""
    from diffusers.utils.torch_utils import randn_tensor

    shape = (1, pipe.vae.config.z_dim, (plan.gen_frames - 1) // pipe.vae_scale_factor_temporal + 1,
             plan.gen_height // pipe.vae_scale_factor_spatial, plan.gen_width // pipe.vae_scale_factor_spatial)
    return randn_tensor(shape, generator=seeded_generator(plan.seed), device=torch.device("cpu"),
                        dtype=torch.float32).to(device)


def _denoise(model: LoadedModel, plans: list[GenerationPlan], hooks: list[RunHooks], preview_width: int,
             min_preview_interval: float, texts: TextEncoding | None, resume: Resume | None,
             capture_steps: tuple[int, ...], images: FrameImages | None = None
             ) -> tuple[torch.Tensor, StepWatcher, step_cache.DecoderStats]:
    pipe = model.pipe
    device = pipe._execution_device
    if resume is not None:
        initial, first_step = resume.latents.to(device), resume.step
    else:  # our own starting noise, so the first step's denoised estimate can be computed too
        initial, first_step = torch.cat([initial_latents(pipe, plan, device) for plan in plans]), 0
    watcher = StepWatcher(model, plans, hooks, initial, preview_width, min_preview_interval,
                           first_step, capture_steps)
    clocks = [m.register_forward_pre_hook(watcher.start_clock) for m in step_cache.denoisers(pipe)]
    try:
        with step_cache.apply(pipe, plans[0].acceleration) as recorder, start_at_step(pipe.scheduler, first_step):
            latents = _call_pipe(pipe, plans, initial, watcher, texts, images)
    finally:
        for handle in clocks:
            handle.remove()
    # A/B: cached runs report their speedup against measured off runs of the same shape.
    shape = baseline_shape(plans, first_step)
    stats = recorder.stats(watcher.step_seconds, step_cache.BASELINES.get(shape))
    if stats.method is None and stats.steps:  # only completed denoises get here (a cancel raises)
        step_cache.BASELINES.add(shape, stats.denoise_seconds)
    return latents, watcher, stats


def baseline_shape(plans: list[GenerationPlan], first_step: int = 0) -> tuple:
    """What two runs must share for one's denoising time to be the other's uncached baseline:
    model, generated size and frames, steps, guidance, group size and the step resumed from."""
    plan = plans[0]
    return (plan.model, plan.gen_width, plan.gen_height, plan.gen_frames, plan.num_inference_steps,
            plan.guidance_scale, len(plans), first_step)


def _call_pipe(pipe, plans: list[GenerationPlan], initial: torch.Tensor, watcher: StepWatcher,
               texts: TextEncoding | None, images: FrameImages | None = None) -> torch.Tensor:
    plan = plans[0]  # the group shares shape, steps, guidance and acceleration
    if texts is None and images is not None:  # WanImageToVideoPipeline's own prompt encoder needs ftfy
        negative = encode_prompt_embeds(pipe, plan.negative_prompt) if plan.guidance_scale > 1.0 else None
        texts = TextEncoding(encode_prompt_embeds(pipe, plan.prompt), negative, [False])
    if texts is not None:
        prompts = {"prompt_embeds": texts.prompt_embeds, "negative_prompt_embeds": texts.negative_prompt_embeds}
    else:
        prompts = {"prompt": [p.prompt for p in plans], "negative_prompt": [p.negative_prompt for p in plans]}
    if images is not None:  # image-to-video: the pipeline encodes the frames (CLIP tokens, latents)
        prompts |= images.pipeline_inputs(plan.gen_width, plan.gen_height)
        pipe = image_pipeline(pipe)
    return pipe(
        **prompts,
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
                       video_path: Path, thumbnail_path: Path, learned: LearnedNetworks | None = None
                       ) -> tuple[int, list[str]]:
    """Decode latent chunks, resample/resize them to the output plan and pipe them to the encoder;
    returns the frames written and what the decode had to do (``tiling_note``)."""
    thumb_index = plan.out_frames // 2
    out_index = 0
    output = OutputFrames(plan, learned)  # interpolation above the native fps, upscaling above the native size
    vae = model.pipe.vae
    tiling = tiling_note(vae, latents, free_gpu_bytes(vae))
    with Mp4Writer(video_path, plan.out_width, plan.out_height, plan.fps) as writer:
        for chunk in iter_decoded_frames(vae, latents, tiled=tiling is not None):
            streaming = hooks.streaming()
            for generated in chunk:
                for frame in output.push(generated):
                    writer.write(frame)
                    if streaming:
                        progress = DENOISE_SHARE + (1 - DENOISE_SHARE) * (out_index + 1) / plan.out_frames
                        hooks.on_stream_frame(out_index, FINAL, frame, progress)
                    if out_index == thumb_index:
                        write_jpeg(thumbnail_path, fit_width(frame, min(THUMBNAIL_WIDTH, plan.out_width)))
                    out_index += 1
            hooks.on_encoded(out_index, plan.out_frames)
            if hooks.should_cancel():
                raise Cancelled()
    return writer.frames_written, [tiling] if tiling else []


def run_text_to_video(model: LoadedModel, plan: GenerationPlan, hooks: RunHooks, video_path: Path,
                      thumbnail_path: Path, preview_width: int = 256,
                      min_preview_interval: float = 0.2) -> RunOutput:
    """Generate ``plan`` with ``model`` into ``video_path`` (H.264 mp4) and ``thumbnail_path``.

    Raises ``Cancelled`` when ``hooks.should_cancel()`` turns true (checked after every step
    and every decoded chunk); the partial video is removed.
    """
    output = run_group(model, [plan], [hooks], [video_path], [thumbnail_path], preview_width,
                       min_preview_interval)[0]
    if output is None:
        raise Cancelled()
    return output


def run_group(model: LoadedModel, plans: list[GenerationPlan], hooks: list[RunHooks], video_paths: list[Path],
              thumbnail_paths: list[Path], preview_width: int = 256, min_preview_interval: float = 0.2,
              texts: TextEncoding | None = None, resume: Resume | None = None,
              capture_steps: tuple[int, ...] = (), learned: LearnedNetworks | None = None,
              images: FrameImages | None = None) -> list[RunOutput | None]:
    """Generate several plans of one shape (model, size, frames, steps, guidance, acceleration)
    in ONE batched pipeline call, then decode and encode each video.

    Returns one ``RunOutput`` per plan, or None for a task cancelled along the way; raises
    ``Cancelled`` when all of them were. ``texts``: prompt encodings made beforehand (see
    ``encode_texts``; without them the pipeline encodes the prompts). ``resume``: start from
    cached latents after some steps. ``capture_steps``: keep the latents after these steps
    (``RunOutput.states``). ``learned``: the server's networks (upscaler, interpolator), for plans that ask for them.
    ``images``: the frames of an image-to-video run (a group of one).
    """
    for h, plan in zip(hooks, plans):
        done = resume.step if resume else 0
        h.on_phase("generating_base", f"Denoising step {done}/{plan.num_inference_steps}")
    started = time.perf_counter()
    with torch.inference_mode():
        latents, watcher, decoder_stats = _denoise(model, plans, hooks, preview_width, min_preview_interval,
                                                   texts, resume, capture_steps, images)
    denoised_at = time.perf_counter()
    outputs: list[RunOutput | None] = []
    for row, (plan, h, video_path, thumbnail_path) in enumerate(zip(plans, hooks, video_paths, thumbnail_paths)):
        if row in watcher.cancelled:
            outputs.append(None)
            continue
        encode_started = time.perf_counter()
        h.on_phase("encoding", f"Decoding and encoding {plan.out_frames} frames")
        try:
            frames, notes = _decode_and_encode(model, plan, latents[row:row + 1], h, video_path, thumbnail_path,
                                               learned)
        except Cancelled:
            outputs.append(None)
            continue
        outputs.append(RunOutput(
            video_path=video_path,
            thumbnail_path=thumbnail_path,
            frames=frames,
            width=plan.out_width,
            height=plan.out_height,
            fps=plan.fps,
            denoise_seconds=denoised_at - started,
            decode_encode_seconds=time.perf_counter() - encode_started,
            mean_step_seconds=float(np.mean(watcher.step_seconds)) if watcher.step_seconds else 0.0,
            step_seconds=watcher.step_seconds,
            decoder=decoder_stats,
            group_size=len(plans),
            text_encoding_reused=texts.reused[row] if texts else False,
            states={step: state[row:row + 1] for step, state in watcher.states.items()},
            notes=notes,
        ))
    if all(o is None for o in outputs):
        raise Cancelled()
    return outputs
