"""Turn a request into what the model actually runs and what the output file will be.

The output size comes from ``resolution`` x ``aspect_ratio`` and the output frame count from
``duration_seconds`` x ``fps``. The model runs at most at its native pixel area, frame rate and
length; beyond that, more frames are made by optical-flow interpolation and a larger size by
upscaling (``temporal`` / ``spatial``, carried out by ``studio.engine.output_frames``), and
``notes`` says so in plain words, so the result metadata never overstates what was generated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

from studio.engine.genres import apply_genre
from studio.engine.request import GenerationRequest
from studio.engine.run import untrained_note
from studio.engine.windows import four_k_plus_1
from studio.models.catalog import ModelSpec

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
    grid of Wan's causal VAE (one latent frame per 4 video frames, plus the first), capped."""
    wanted = duration_seconds * spec.native_fps
    return min(four_k_plus_1(max(wanted, 2)), spec.max_frames)


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
    gen_frames: int
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

    @property
    def latent_frames(self) -> int:
        return (self.gen_frames - 1) // 4 + 1

    def position(self, out_index: int) -> Fraction:
        """Where output frame ``out_index`` sits on the generated frames when they are
        interpolated (exact: the last output frame is exactly the last generated one)."""
        if self.out_frames <= 1:
            return Fraction(0)
        return Fraction(out_index * (self.gen_frames - 1), self.out_frames - 1)

    def source_index(self, out_index: int) -> int:
        """Which generated frame output frame ``out_index`` shows, or is nearest to in time."""
        if self.temporal == "flow":
            return min(self.gen_frames - 1, round(self.position(out_index)))
        return min(self.gen_frames - 1, out_index * self.gen_frames // self.out_frames)

    def output_index(self, gen_index: int) -> int:
        """The first output frame that shows generated frame ``gen_index`` or a later one (the
        inverse of ``source_index``): where a latent frame's preview goes in the output."""
        if self.temporal == "flow":
            return min(self.out_frames - 1, -(-gen_index * (self.out_frames - 1) // max(1, self.gen_frames - 1)))
        return min(self.out_frames - 1, -(-gen_index * self.out_frames // self.gen_frames))

    def to_dict(self) -> dict:
        return asdict(self)


def make_plan(request: GenerationRequest, spec: ModelSpec, seed: int) -> GenerationPlan:
    """Resolve ``request`` for ``spec`` with a concrete ``seed``."""
    out_w, out_h = output_size(request.resolution, request.aspect_ratio)
    gen_w, gen_h = generation_size(spec, out_w, out_h)
    gen_frames = generation_frames(spec, request.duration_seconds)
    out_frames = max(1, round(request.duration_seconds * request.fps))
    prompt, negative = apply_genre(request.genre, request.prompt, request.negative_prompt)

    temporal = "flow" if out_frames > gen_frames else "nearest"
    spatial = "upscale" if out_w * out_h > gen_w * gen_h else "resize"
    notes = []
    if not spec.trained:
        notes.append(untrained_note(spec.id))
    if spatial == "upscale":
        notes.append(f"generated at {gen_w}x{gen_h} ({spec.id}'s native area), upscaled to {out_w}x{out_h} "
                     "(bicubic with edge-aware sharpening)")
    elif (gen_w, gen_h) != (out_w, out_h):
        notes.append(f"generated at {gen_w}x{gen_h}, resized to {out_w}x{out_h}")
    if request.duration_seconds > spec.max_seconds:
        notes.append(
            f"{request.duration_seconds:g} s exceeds {spec.id}'s {spec.max_seconds:g} s per pass: "
            f"{gen_frames} generated frames are stretched over {request.duration_seconds:g} s"
        )
    if temporal == "flow":
        notes.append(
            f"generated {gen_frames} frames at {spec.native_fps} fps, interpolated to {out_frames} frames "
            f"at {request.fps} fps by optical flow (no frame is shown twice)"
        )
    elif out_frames != gen_frames:
        notes.append(
            f"generated {gen_frames} frames at {spec.native_fps} fps, resampled to {out_frames} frames "
            f"at {request.fps} fps by nearest frame (frames dropped, none repeated)"
        )
    return GenerationPlan(
        model=spec.id,
        prompt=prompt,
        negative_prompt=negative,
        seed=seed,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        gen_width=gen_w,
        gen_height=gen_h,
        gen_frames=gen_frames,
        out_width=out_w,
        out_height=out_h,
        out_frames=out_frames,
        fps=request.fps,
        duration_seconds=request.duration_seconds,
        notes=notes,
        acceleration=request.acceleration,
        preview_every=request.preview_every_n_steps,
        temporal=temporal,
        spatial=spatial,
    )
