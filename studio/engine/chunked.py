"""Autoregressive runs (Helios): one pipeline call makes the whole clip, chunk by chunk, and
every chunk is encoded and streamed as soon as it is decoded.

``HeliosPipeline`` / ``HeliosPyramidPipeline`` (diffusers 0.42) denoise 9 latent frames (33
frames) at a time, each chunk conditioned on a compressed history of the clip so far, and decode
each chunk right after it is denoised, but keep every decoded frame until the call returns: a
minute at 640x384 would hold ~4 GB of float frames, and nothing would reach the user before the
end. So the run takes each chunk's frames at the VAE's ``decode`` (the one place the pipeline
hands them over) and sends them on through ``OutputFrames`` to the encoder and the stream,
handing the pipeline an empty tensor back; the pipeline's own output (``output_type="latent"``)
is not used. Memory holds one chunk of frames, whatever the duration.

Progress counts every chunk's steps (the pyramid models' stages too: step ``s`` of
``plan.total_steps``). Previews show the current chunk's latents (the Helios schedulers' steps
are not Euler steps, so the engine's one-step denoised estimate does not apply). A cancel after
the first chunk keeps the finished chunks as a partial result (``RunOutput.partial``), as a
chain keeps its finished windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from studio.engine import step_cache
from studio.engine.decode import to_uint8_frames
from studio.engine.output_frames import ClipSink, LearnedNetworks
from studio.engine.plan import GenerationPlan
from studio.engine.preview import previewer_of
from studio.engine.t2v import DENOISE_SHARE, Cancelled, FrameImages, RunHooks, RunOutput, TextEncoding, encode_texts
from studio.engine.text_cache import TextEmbeddingCache
from studio.media.frame_boards import PREVIEW
from studio.media.video import Mp4Writer
from studio.models.loader import LoadedModel


class _ChunkedRun:
    """The step callback and the chunk sink of one run."""

    def __init__(self, model: LoadedModel, plan: GenerationPlan, hooks: RunHooks, sink: ClipSink,
                 preview_width: int, min_preview_interval: float):
        self.model, self.plan, self.hooks, self.sink = model, plan, hooks, sink
        self.previewer = previewer_of(model)  # fitted before the first step's clock starts
        self.preview_width, self.min_preview_interval = preview_width, min_preview_interval
        self.step = 0
        self.step_seconds: list[float] = []
        self.chunks_done: list[dict] = []
        self.chunk_started = self.last_step_at = time.perf_counter()
        self.last_preview_at = 0.0
        self.clock_started = False

    def start_clock(self, module, args) -> None:
        """Forward pre-hook of the transformer: step 1's clock starts at its first pass."""
        if not self.clock_started:
            self.clock_started = True
            self.chunk_started = self.last_step_at = time.perf_counter()

    def on_step_end(self, pipe, i: int, t, kwargs: dict) -> dict:
        """``callback_on_step_end``: progress, a preview when due, cancellation."""
        now = time.perf_counter()
        self.step_seconds.append(now - self.last_step_at)
        self.step += 1
        total = self.plan.total_steps
        due = self.step == 1 or self.step == total or (
            self.step % self.plan.preview_every == 0 and now - self.last_preview_at >= self.min_preview_interval)
        preview = None
        if due:
            latents = kwargs["latents"]
            preview = self.previewer.to_rgb(latents, width=self.preview_width)
            self.last_preview_at = now
            if self.hooks.streaming():
                self._stream_previews(latents)
        self.hooks.on_step(self.step, total, self.step_seconds[-1], preview)
        if self.hooks.should_cancel():
            raise Cancelled()
        self.last_step_at = time.perf_counter()  # hook time is not step time
        return {}

    def on_chunk(self, video: torch.Tensor) -> None:
        """One chunk decoded (``[1, 3, frames, H, W]`` in [-1, 1]): on to the encoder and stream."""
        index = len(self.chunks_done)
        frames = list(to_uint8_frames(video))
        self.sink.push(frames, DENOISE_SHARE * (index + 1) / self.plan.chunks)
        now = time.perf_counter()
        self.chunks_done.append({"index": index, "frames": len(frames),
                                 "clip_frames": [index * self.plan.chunk_frames, index * self.plan.chunk_frames
                                                 + len(frames)],
                                 "seconds": round(now - self.chunk_started, 3)})
        self.chunk_started = now

    def _stream_previews(self, latents: torch.Tensor) -> None:
        """The current chunk's latent frames as previews of the output frames they start."""
        first_clip_frame = len(self.chunks_done) * self.plan.chunk_frames
        progress = DENOISE_SHARE * self.step / self.plan.total_steps
        for latent_index in range(latents.shape[2]):
            rgb = self.previewer.to_rgb(latents, frame=latent_index, width=self.preview_width)
            clip_index = min(first_clip_frame + latent_index * 4, self.plan.clip_frames - 1)
            self.hooks.on_stream_frame(self.plan.output_index(clip_index), PREVIEW, rgb, progress)


@contextmanager
def _chunks_taken(vae, on_chunk: Callable[[torch.Tensor], None]) -> Iterator[None]:
    """While open, each ``vae.decode`` call hands its frames to ``on_chunk`` and returns no frames
    (see the module docstring); the VAE's own ``decode`` is back on exit."""
    decode = vae.decode

    def taken(z: torch.Tensor, return_dict: bool = True):
        video = decode(z, return_dict=False)[0]
        on_chunk(video)
        empty = video[:, :, :0]
        if return_dict:
            from diffusers.models.autoencoders.vae import DecoderOutput

            return DecoderOutput(sample=empty)
        return (empty,)

    vae.decode = taken
    try:
        yield
    finally:
        del vae.decode  # the instance attribute goes; the class's method shows through again


def _pipeline_inputs(model: LoadedModel, plan: GenerationPlan, texts: TextEncoding,
                     images: FrameImages | None, run: _ChunkedRun) -> dict:
    """The Helios call's arguments for ``plan``."""
    device = model.pipe._execution_device
    chunked = model.spec.chunked
    inputs = dict(
        prompt_embeds=texts.prompt_embeds, negative_prompt_embeds=texts.negative_prompt_embeds,
        height=plan.gen_height, width=plan.gen_width, num_frames=plan.gen_frames,
        guidance_scale=plan.guidance_scale,
        # On the execution device: Helios draws its image-noise levels with torch.rand on that device.
        generator=torch.Generator(device=device).manual_seed(plan.seed),
        num_latent_frames_per_chunk=(plan.chunk_frames - 1) // model.pipe.vae_scale_factor_temporal + 1,
        output_type="latent", callback_on_step_end=run.on_step_end, callback_on_step_end_tensor_inputs=["latents"],
    )
    if chunked.pyramid_steps:
        inputs |= {"pyramid_num_inference_steps_list": list(chunked.pyramid_steps),
                   "is_amplify_first_chunk": chunked.amplify_first_chunk}
    else:
        inputs["num_inference_steps"] = plan.num_inference_steps
    if images is not None:
        inputs["image"] = images.pipeline_inputs(plan.gen_width, plan.gen_height)["image"]
    return inputs


def run_chunked(model: LoadedModel, plan: GenerationPlan, hooks: RunHooks, video_path: Path, thumbnail_path: Path,
                *, text_cache: TextEmbeddingCache | None = None, preview_width: int = 256,
                min_preview_interval: float = 0.2, learned: LearnedNetworks | None = None,
                images: FrameImages | None = None) -> RunOutput:
    """Generate ``plan`` on an autoregressive ``model`` (``ModelSpec.chunked``) into ``video_path``
    and ``thumbnail_path``, each chunk encoded as it finishes.

    ``learned``: the server's networks (upscaler, interpolator), for a plan that asks for them; ``images``: the request's first
    frame (Helios is text- and image-to-video). Returns the output, ``partial`` when a cancel came
    after the first chunk; raises ``Cancelled`` when it came during the first.
    """
    pipe = model.pipe
    hooks.on_phase("generating_base", f"Denoising step 0/{plan.total_steps} (chunk 1/{plan.chunks})")
    started = time.perf_counter()
    partial = False
    with Mp4Writer(video_path, plan.out_width, plan.out_height, plan.fps) as writer:
        sink = ClipSink(plan, hooks, writer, thumbnail_path, learned)
        run = _ChunkedRun(model, plan, hooks, sink, preview_width, min_preview_interval)
        clock = pipe.transformer.register_forward_pre_hook(run.start_clock)
        try:
            with torch.inference_mode(), step_cache.apply(pipe, plan.acceleration) as recorder, \
                    _chunks_taken(pipe.vae, run.on_chunk):
                texts = encode_texts(pipe, [plan], text_cache or TextEmbeddingCache())
                pipe(**_pipeline_inputs(model, plan, texts, images, run))
        except Cancelled:
            if not run.chunks_done:
                raise
            partial = True
        finally:
            clock.remove()
        sink.finish()
    if not partial:  # once, at the end: the chunks' frames were encoded while the progress still counted steps
        hooks.on_encoded(writer.frames_written, plan.out_frames)
    elapsed = time.perf_counter() - started
    denoise = sum(run.step_seconds)
    return RunOutput(
        video_path=video_path, thumbnail_path=thumbnail_path, frames=writer.frames_written, width=plan.out_width,
        height=plan.out_height, fps=plan.fps, denoise_seconds=denoise,
        decode_encode_seconds=max(0.0, elapsed - denoise),
        mean_step_seconds=float(np.mean(run.step_seconds)) if run.step_seconds else 0.0,
        step_seconds=run.step_seconds, decoder=recorder.stats(run.step_seconds), chunks=run.chunks_done,
        partial=partial)
