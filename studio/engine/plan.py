"""Turn a request into what the model actually runs and what the output file will be.

The output size comes from ``resolution`` x ``aspect_ratio`` and the output frame count from
``duration_seconds`` x ``fps``. The model runs at most at its native pixel area and frame rate;
beyond that, more frames are made by optical-flow interpolation and a larger size by upscaling
(``temporal`` / ``spatial``, carried out by ``studio.engine.output_frames``).

A duration longer than one pass (``max_frames``) is generated as a chain of :class:`Window` s
when the model has a continuation model (``ModelSpec.continuation``: a VACE sibling, or an
image-to-video model, possibly the model itself, that starts from the previous window's last
frame; run by
``studio.engine.long_video``): the clip's frames at the native fps are all generated. A model
without one generates one pass, interpolated over the duration. An autoregressive model
(``ModelSpec.chunked``: Helios) needs neither: its one pass generates the whole clip chunk by
chunk (``studio.engine.chunked``). ``notes`` says which, in plain words, so the result metadata
never overstates what was generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from fractions import Fraction

from studio.engine.genres import apply_genre
from studio.engine.request import GenerationRequest
from studio.engine.run import untrained_note
from studio.engine.windows import CONTEXT_FRAMES, balanced_windows, four_k_plus_1
from studio.errors import InvalidRequest
from studio.models.catalog import CATALOG, FastMode, ModelSpec, get_spec

SHORT_SIDE = {"480p": 480, "720p": 720, "1080p": 1080, "1440p": 1440, "4k": 2160, "8k": 4320}
ASPECT = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3)}

# A request this close to the native area is generated at its own size instead of being
# generated smaller and upscaled (e.g. 848x480 on a model trained at 832x480).
NATIVE_AREA_TOLERANCE = 1.1


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def output_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) of the delivered video, multiples of 16; the short side is the resolution."""
    short = SHORT_SIDE[resolution]
    a, b = ASPECT[aspect_ratio]
    if a >= b:
        return _round_to(short * a / b, 16), _round_to(short, 16)
    return _round_to(short, 16), _round_to(short * b / a, 16)


def generation_size(spec: ModelSpec, out_w: int, out_h: int) -> tuple[int, int]:
    """(width, height) the model runs at: the output size when it fits the native area,
    otherwise the native area at the output's aspect ratio."""
    m = spec.size_multiple
    if out_w * out_h <= spec.native_area * NATIVE_AREA_TOLERANCE:
        return _round_to(out_w, m), _round_to(out_h, m)
    ratio = out_w / out_h
    return _round_to(math.sqrt(spec.native_area * ratio), m), _round_to(math.sqrt(spec.native_area / ratio), m)


def generation_frames(spec: ModelSpec, duration_seconds: float) -> int:
    """Frames the model generates: enough for the duration at its native fps, on the 4k+1
    grid of Wan's causal VAE (one latent frame per 4 video frames, plus the first), capped; for
    an autoregressive model, in whole chunks."""
    wanted = duration_seconds * spec.native_fps
    if spec.chunked:
        return min(math.ceil(max(wanted, 1) / spec.chunked.frames) * spec.chunked.frames, spec.max_frames)
    return min(four_k_plus_1(max(wanted, 2)), spec.max_frames)


def continuation_of(spec: ModelSpec, duration_seconds: float) -> ModelSpec | None:
    """The model that continues ``spec``'s clip past one pass, when ``duration_seconds`` needs
    more than one and ``spec`` has a continuation model (else None: one pass)."""
    if spec.continuation is None or duration_seconds * spec.native_fps <= spec.max_frames:
        return None
    return get_spec(spec.continuation)


def continuation_kind(spec: ModelSpec) -> str:
    """How a continuation model takes the previous window: ``vace`` (its last frames as known
    frames) or ``image`` (its last frame as the first frame: image-to-video, TI2V)."""
    return "vace" if spec.task == "vace" else "image"


#: Frames of the previous window a later window re-renders, by continuation kind.
CONTEXT = {"vace": CONTEXT_FRAMES, "image": 1}


def window_seed(seed: int, index: int) -> int:
    """The seed of a chain's window ``index``: the task's seed, then the next ones (each window
    draws its own noise; window 0 draws what a one-pass run of the seed would)."""
    return (seed + index) % 2**32


@dataclass(frozen=True)
class Window:
    """One model pass of a clip: it generates ``frames`` frames (4k+1), the first ``context`` of
    them re-rendering the previous window's last frames (its conditioning), the rest the clip's
    new frames ``start..end-1`` (clip frames: generated frames at the native fps). Frames past
    ``context + end - start`` pad the pass to 4k+1 and are dropped."""

    index: int
    model: str
    seed: int
    start: int
    end: int
    context: int
    frames: int
    # what the window is conditioned on besides the prompt: the previous window ("vace", "image"),
    # or, for the first, the request's "first frame" / "first and last frame", or nothing ("text")
    kind: str = "text"

    @property
    def new_frames(self) -> int:
        return self.end - self.start

    @property
    def clip_start(self) -> int:
        """The clip frame this pass's first frame re-renders or makes."""
        return self.start - self.context

    def conditioning(self) -> str:
        """What the pass was conditioned on, in words (result metadata)."""
        if self.kind == "vace":
            return f"text + the previous window's last {self.context} frames (VACE known frames)"
        if self.kind == "image":
            return "text + the previous window's last frame as its first frame (image conditioning)"
        if self.kind != "text":
            return f"text + the request's {self.kind}"
        return "text"

    def to_dict(self) -> dict:
        return {"index": self.index, "model": self.model, "seed": self.seed, "generated_frames": self.frames,
                "new_frames": self.new_frames, "context_frames": self.context, "clip_frames": [self.start, self.end],
                "conditioning": self.conditioning()}


@dataclass(frozen=True)
class GenerationPlan:
    """Everything the engine needs to run one text-to-video task, fully resolved."""

    model: str
    prompt: str
    negative_prompt: str
    seed: int
    num_inference_steps: int
    guidance_scale: float
    gen_width: int
    gen_height: int
    gen_frames: int  # frames of one pass (the longest window's)
    out_width: int
    out_height: int
    out_frames: int
    fps: int
    duration_seconds: float
    notes: list[str] = field(default_factory=list)
    acceleration: str = "off"  # step-cache level (studio.engine.step_cache.CACHE_LEVELS)
    preview_every: int = 1  # a live preview every this many steps (and always at the first and last)
    temporal: str = "nearest"  # more output frames than generated ones: "flow" (interpolated)
    spatial: str = "resize"  # an output larger than the generated frames: "upscale"
    windows: tuple[Window, ...] = ()  # the passes; empty: one pass of gen_frames (a plan built by hand)
    mode: str = "standard"  # "fast": the model's few-step distillation (steps and guidance are its own)
    upscaler: str = "classical"  # spatial "upscale" by "classical" means or the server's "learned" network
    interpolator: str = "classical"  # temporal "flow" by "classical" optical flow or the server's "learned" network
    conditioning: str = "text"  # or "first frame" / "first and last frame" (image-to-video models)
    chunk_frames: int = 0  # an autoregressive model's frames per chunk (0: a pass is denoised whole)
    denoise_steps: int = 0  # denoising steps of the whole run when not num_inference_steps x passes

    @property
    def latent_frames(self) -> int:
        """Latent frames one transformer pass denoises: one pass's, or one chunk's."""
        return ((self.chunk_frames or self.gen_frames) - 1) // 4 + 1

    @property
    def chunks(self) -> int:
        """Chunks of an autoregressive model's pass (1 for the others)."""
        return -(-self.gen_frames // self.chunk_frames) if self.chunk_frames else 1

    @property
    def total_steps(self) -> int:
        """Denoising steps of the whole run: every window's, or every chunk's."""
        return self.denoise_steps or self.num_inference_steps * self.passes

    @property
    def clip_frames(self) -> int:
        """Frames generated for the whole clip at the native fps: every window's new frames."""
        return self.windows[-1].end if self.windows else self.gen_frames

    @property
    def passes(self) -> int:
        """Model passes (windows) the clip takes."""
        return max(1, len(self.windows))

    @property
    def continuation_model(self) -> str | None:
        """The model of the windows after the first (None: one pass)."""
        return self.windows[1].model if len(self.windows) > 1 else None

    def position(self, out_index: int) -> Fraction:
        """Where output frame ``out_index`` sits on the generated frames when they are
        interpolated (exact: the last output frame is exactly the last generated one)."""
        if self.out_frames <= 1:
            return Fraction(0)
        return Fraction(out_index * (self.clip_frames - 1), self.out_frames - 1)

    def source_index(self, out_index: int) -> int:
        """Which generated (clip) frame output frame ``out_index`` shows, or is nearest to in time."""
        clip = self.clip_frames
        if self.temporal == "flow":
            return min(clip - 1, round(self.position(out_index)))
        return min(clip - 1, out_index * clip // self.out_frames)

    def output_index(self, gen_index: int) -> int:
        """The first output frame that shows clip frame ``gen_index`` or a later one (the
        inverse of ``source_index``): where a latent frame's preview goes in the output."""
        clip = self.clip_frames
        if self.temporal == "flow":
            return min(self.out_frames - 1, -(-gen_index * (self.out_frames - 1) // max(1, clip - 1)))
        return min(self.out_frames - 1, -(-gen_index * self.out_frames // clip))

    def to_dict(self) -> dict:
        """The plan's fields (windows stay ``Window`` objects, so the dict builds a plan again)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def make_plan(request: GenerationRequest, spec: ModelSpec, seed: int) -> GenerationPlan:
    """Resolve ``request`` for ``spec`` with a concrete ``seed``."""
    out_w, out_h = output_size(request.resolution, request.aspect_ratio)
    gen_w, gen_h = generation_size(spec, out_w, out_h)
    images = spec.images or (1 if spec.optional_image and request.image else 0)
    conditioning = {0: "text", 1: "first frame", 2: "first and last frame"}[images]
    windows = plan_passes(spec, request.duration_seconds, seed, first=conditioning)
    gen_frames = max(w.frames for w in windows)
    clip_frames = windows[-1].end
    out_frames = max(1, round(request.duration_seconds * request.fps))
    prompt, negative = apply_genre(request.genre, request.prompt, request.negative_prompt)
    steps, guidance = request.num_inference_steps, request.guidance_scale
    if request.mode == "fast":
        fast = fast_mode_of(spec)
        steps, guidance = fast.steps, fast.guidance
    chunked = spec.chunked
    if chunked and chunked.pyramid_steps:
        steps, guidance = sum(chunked.pyramid_steps), spec.default_guidance
    acceleration = "off" if chunked else request.acceleration

    temporal = "flow" if out_frames > clip_frames else "nearest"
    spatial = "upscale" if out_w * out_h > gen_w * gen_h else "resize"
    notes = []
    if not spec.trained:
        notes.append(untrained_note(spec.id))
    if images:
        notes.append(f"conditioned on the given {conditioning} ({spec.id}): the video starts from the image"
                     + (" and ends on the last image" if images == 2 else ""))
    if request.mode == "fast":
        notes.append(f"fast mode: {steps} denoising steps without classifier-free guidance ({spec.fast.label}); "
                     f"num_inference_steps ({request.num_inference_steps}) and guidance_scale "
                     f"({request.guidance_scale:g}) are the standard mode's and were not used")
    if spatial == "upscale" and request.upscaler == "learned":
        notes.append(f"generated at {gen_w}x{gen_h} ({spec.id}'s native area), upscaled to {out_w}x{out_h} by the "
                     "server's learned upscaler (metadata.upscaler names the network)")
    elif spatial == "upscale":
        notes.append(f"generated at {gen_w}x{gen_h} ({spec.id}'s native area), upscaled to {out_w}x{out_h} "
                     "(bicubic with edge-aware sharpening)")
    elif (gen_w, gen_h) != (out_w, out_h):
        notes.append(f"generated at {gen_w}x{gen_h}, resized to {out_w}x{out_h}")
    if chunked:
        notes.extend(_chunk_notes(spec, request, gen_frames, steps))
    if len(windows) > 1:
        how = (f"last {windows[1].context} frames (VACE known frames)" if windows[1].kind == "vace"
               else "last frame as its first frame (image conditioning)")
        notes.append(
            f"{request.duration_seconds:g} s is longer than {spec.id}'s {spec.max_seconds:g} s per pass: generated as "
            f"{len(windows)} windows ({clip_frames} frames at {spec.native_fps} fps); the first by {spec.id}, each "
            f"later one by {windows[1].model} continuing from the previous window's {how}, with the overlaps "
            "blended and colour drift corrected"
        )
    elif request.duration_seconds * spec.native_fps > clip_frames:
        notes.append(
            f"{request.duration_seconds:g} s exceeds {spec.id}'s {spec.max_seconds:g} s per pass and {spec.id} has no "
            f"continuation model here: {clip_frames} generated frames are stretched over "
            f"{request.duration_seconds:g} s (choose a model with one, e.g. wan2.1-t2v-1.3b, for a clip generated "
            "in full)"
        )
    if temporal == "flow":
        how = ("the server's learned interpolator (metadata.interpolator names the network)"
               if request.interpolator == "learned" else "optical flow")
        notes.append(
            f"generated {clip_frames} frames at {spec.native_fps} fps, interpolated to {out_frames} frames "
            f"at {request.fps} fps by {how} (no frame is shown twice)"
        )
    elif out_frames != clip_frames:
        notes.append(
            f"generated {clip_frames} frames at {spec.native_fps} fps, resampled to {out_frames} frames "
            f"at {request.fps} fps by nearest frame (frames dropped, none repeated)"
        )
    return GenerationPlan(
        model=spec.id,
        prompt=prompt,
        negative_prompt=negative,
        seed=seed,
        num_inference_steps=steps,
        guidance_scale=guidance,
        gen_width=gen_w,
        gen_height=gen_h,
        gen_frames=gen_frames,
        out_width=out_w,
        out_height=out_h,
        out_frames=out_frames,
        fps=request.fps,
        duration_seconds=request.duration_seconds,
        notes=notes,
        acceleration=acceleration,
        preview_every=request.preview_every_n_steps,
        temporal=temporal,
        spatial=spatial,
        windows=windows,
        mode=request.mode,
        upscaler=request.upscaler if spatial == "upscale" else "classical",
        interpolator=request.interpolator if temporal == "flow" else "classical",
        conditioning=conditioning,
        chunk_frames=chunked.frames if chunked else 0,
        denoise_steps=chunked.steps(gen_frames // chunked.frames, steps) if chunked else 0,
    )


def _chunk_notes(spec: ModelSpec, request: GenerationRequest, gen_frames: int, steps: int) -> list[str]:
    """What an autoregressive model's run did differently, in words."""
    chunked = spec.chunked
    chunks = gen_frames // chunked.frames
    notes = [f"generated autoregressively by {spec.id}: {chunks} chunk{'s' if chunks > 1 else ''} of "
             f"{chunked.frames} frames at {spec.native_fps} fps in one pass, each chunk conditioned on the history "
             "of the clip before it (no windows to stitch); every chunk was encoded and streamed as it finished"]
    if chunked.pyramid_steps:
        stages = len(chunked.pyramid_steps)
        amplified = " (the first chunk twice as many)" if chunked.amplify_first_chunk else ""
        notes.append(f"{spec.id} samples {steps} steps per chunk over {stages} resolution stages{amplified} at "
                     f"guidance {spec.default_guidance:g}, the distilled model's own sampling: num_inference_steps "
                     f"({request.num_inference_steps}) and guidance_scale ({request.guidance_scale:g}) were not used")
    if request.acceleration != "off":
        notes.append(f"acceleration={request.acceleration} was not applied: the step cache (FirstBlockCache) does not "
                     f"support {spec.id}'s transformer blocks in diffusers")
    return notes


def fast_mode_of(spec: ModelSpec) -> FastMode:
    """``spec``'s few-step mode, or ``InvalidRequest`` naming the models that have one."""
    if spec.fast is None:
        having = ", ".join(s.id for s in CATALOG.values() if s.fast is not None)
        raise InvalidRequest(f"mode: {spec.id} has no fast mode here; models with one: {having}")
    return spec.fast


def plan_passes(spec: ModelSpec, duration_seconds: float, seed: int, first: str = "text") -> tuple[Window, ...]:
    """The passes of a clip of ``duration_seconds`` on ``spec``: one (capped at ``max_frames``)
    without a continuation, else balanced windows covering every frame at the native fps.
    ``first``: what the first window is conditioned on besides the prompt (the request's images)."""
    continuation = continuation_of(spec, duration_seconds)
    if continuation is None:
        frames = generation_frames(spec, duration_seconds)
        return (Window(0, spec.id, seed, 0, frames, 0, frames, first),)
    kind = continuation_kind(continuation)
    clip = four_k_plus_1(round(duration_seconds * spec.native_fps))
    spans = balanced_windows(clip, spec.max_frames, CONTEXT[kind])
    return tuple(Window(k, spec.id if k == 0 else continuation.id, window_seed(seed, k), start, end, context, frames,
                        kind if k else first)
                 for k, (start, end, context, frames) in enumerate(spans))
