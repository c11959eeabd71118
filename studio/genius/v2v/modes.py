"""V2V Pipeline, classical (model-free) paths: the six modes and ``transform``, their dispatcher.

Every mode is a generator over RGB ``uint8`` frames ``(H, W, 3)`` that holds only the frames it
needs (one or two), so a long video streams through in constant memory. ``transform`` is the
dispatcher the API and the UI call; ``MODES`` says what each mode needs.

Optical flow, warping and occlusion are ``studio.vision.pixels`` (its docstring has the
consistency test); each mode is its own module, named below.

Modes (``MODES``):

- ``interpolation`` (``interpolation.interpolate``): occlusion-aware flow interpolation, x2/x4 or any target fps.
- ``upscale`` (``upscale.upscale``): bicubic resampling + edge-guided unsharp mask, even output sizes.
- ``enhancement`` (``enhancement.enhance``): motion-compensated recursive denoise, edge-guided sharpen, CLAHE.
- ``colorization`` (``colour.colorize``): Welsh et al. style luminance/texture -> chroma lookup from a
  reference photo.
- ``style_transfer`` (``colour.style_transfer``): Reinhard Lab statistics + high-frequency energy
  transfer, statistics smoothed over time.
- ``motion_transfer`` (``motion.motion_transfer``): the motion video's flow, accumulated from its first
  frame, warps an appearance image. The seed lists a video reference; ``transform`` takes
  either an image (animated by the source's motion) or a video (its motion animates the
  source's first frame).

``temporal_consistency`` (0-1) is ``temporal.temporal_smooth``: the previous output warped onto the
current frame and blended where the warp is reliable. ``preserve_motion`` says where that warp
comes from: ``True`` warps along the *source* video's optical flow, so the output moves exactly
as the source did and smoothing never drags content along; ``False`` blends with the unwarped
previous output (a plain exponential moving average: no flow, cheaper, but moving content
ghosts). It applies to ``style_transfer`` and ``colorization``, whose per-frame appearance is
synthesised and can flicker. ``enhancement`` is already temporal (its denoiser follows the flow),
``interpolation`` and ``motion_transfer`` are made of motion, so there it is inherent; ``upscale``
is per frame and ignores both.

Speed through ``transform`` at 854x480 on the 2-core development machine (shared, best of 3,
output frames/s): interpolation x2 17, upscale x2 12, enhancement 16, colorization 19,
style_transfer 12, motion_transfer 27 (to a 600x400 image), temporal_smooth alone 44.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from studio.errors import InvalidRequest
from studio.genius.v2v.colour import colorize, style_transfer
from studio.genius.v2v.enhancement import enhance
from studio.genius.v2v.interpolation import interpolate, interpolation_step
from studio.genius.v2v.motion import even_crop, motion_transfer
from studio.genius.v2v.temporal import temporal_smooth
from studio.genius.v2v.upscale import upscale, upscale_size
from studio.vision.pixels import Frames, as_rgb_image


@dataclass(frozen=True)
class Mode:
    """A seed transformation mode: its classical method and what a request must bring."""

    name: str
    method: str
    reference: str | None  # what ``reference`` must be: None (not used), "image", "image or video"
    parameters: tuple[str, ...]  # request fields the mode reads
    temporal: str  # how temporal_consistency / preserve_motion apply


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode(
            "style_transfer",
            "Reinhard Lab colour statistics + detail energy transfer, statistics smoothed over time",
            "image",
            ("strength", "temporal_consistency", "preserve_motion"),
            "temporal_smooth after styling; along the source's flow when preserve_motion",
        ),
        Mode(
            "motion_transfer",
            "chained + refined DIS optical flow from the first frame warps the appearance image",
            "image or video",
            (),
            "inherent: the output is the motion",
        ),
        Mode(
            "enhancement",
            "motion-compensated recursive denoise + bilateral, edge-guided unsharp mask, CLAHE on L",
            None,
            ("strength",),
            "inherent: the denoiser follows the flow",
        ),
        Mode(
            "upscale",
            "bicubic resampling + edge-guided unsharp mask",
            None,
            ("scale", "width", "height"),
            "none: per frame",
        ),
        Mode(
            "interpolation",
            "bidirectional DIS optical flow, occlusion-aware warping to intermediate times",
            None,
            ("factor", "target_fps"),
            "inherent: synthesised frames follow the flow",
        ),
        Mode(
            "colorization",
            "Welsh-style lightness/texture -> chroma lookup from the reference, lightness kept",
            "image",
            ("temporal_consistency", "preserve_motion"),
            "temporal_smooth after colouring; along the source's flow when preserve_motion",
        ),
    )
}


@dataclass
class _Request:
    strength: float
    reference: np.ndarray | list[np.ndarray] | None
    temporal_consistency: float
    preserve_motion: bool
    scale: float | None
    width: int | None
    height: int | None
    target_fps: float | None
    factor: int | None


_Output = tuple[Iterator[np.ndarray], float, dict]
_Runner = Callable[[Iterator[np.ndarray], float, _Request], _Output]


def _unit(name: str, value: float) -> float:
    if value is None or not 0.0 <= float(value) <= 1.0:
        raise InvalidRequest(f"{name}: must be between 0 and 1, got {value}")
    return float(value)


def _check_frame(frame: np.ndarray, field: str = "source") -> np.ndarray:
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
        raise InvalidRequest(f"{field}: frames must be RGB uint8 arrays (H, W, 3)")
    if min(frame.shape[:2]) < 16:
        raise InvalidRequest(f"{field}: frames must be at least 16x16 pixels, got {frame.shape[1]}x{frame.shape[0]}")
    return frame


def _same_size(frames: Iterable[np.ndarray], shape: tuple[int, ...], field: str = "source") -> Iterator[np.ndarray]:
    for frame in frames:
        if frame.shape != shape:
            raise InvalidRequest(
                f"{field}: every frame must be {shape[1]}x{shape[0]}, got {frame.shape[1]}x{frame.shape[0]}"
            )
        yield frame


def _stylised(
    frames: Iterator[np.ndarray], request: _Request, make: Callable[[Iterable[np.ndarray]], Iterator[np.ndarray]]
) -> Iterator[np.ndarray]:
    """``make`` applied to the source, then ``temporal_smooth`` guided by the source's own flow."""
    source, guide = itertools.tee(frames)
    return temporal_smooth(
        make(source), request.temporal_consistency, guide=guide, follow_motion=request.preserve_motion
    )


def _temporal_parameters(request: _Request) -> dict:
    return {"temporal_consistency": request.temporal_consistency, "preserve_motion": request.preserve_motion}


def _run_style_transfer(frames: Iterator[np.ndarray], fps: float, request: _Request) -> _Output:
    reference = as_rgb_image(request.reference)
    output = _stylised(frames, request, lambda f: style_transfer(f, reference, request.strength))
    return output, fps, {"strength": request.strength, **_temporal_parameters(request)}


def _run_colorization(frames: Iterator[np.ndarray], fps: float, request: _Request) -> _Output:
    reference = as_rgb_image(request.reference)
    output = _stylised(frames, request, lambda f: colorize(f, reference))
    return output, fps, _temporal_parameters(request)


def _run_enhancement(frames: Iterator[np.ndarray], fps: float, request: _Request) -> _Output:
    return enhance(frames, request.strength), fps, {"strength": request.strength}


def _run_upscale(frames: Iterator[np.ndarray], fps: float, request: _Request) -> _Output:
    return upscale(frames, request.scale, request.width, request.height), fps, {}


def _run_interpolation(frames: Iterator[np.ndarray], fps: float, request: _Request) -> _Output:
    interpolation_step(fps, request.factor, request.target_fps)  # validate now, not at the first frame
    if request.target_fps is not None:
        output_fps, factor = float(request.target_fps), None
    else:
        factor = request.factor or 2
        output_fps = fps * factor
    output = interpolate(frames, source_fps=fps, factor=factor, target_fps=request.target_fps)
    return output, output_fps, {"factor": factor, "target_fps": request.target_fps}


def _run_motion_transfer(frames: Iterator[np.ndarray], fps: float, request: _Request) -> _Output:
    """An image reference is animated by the source's motion; a video reference (a list of
    frames, assumed to play at the source's fps) animates the source's first frame."""
    reference = request.reference
    if _is_image(reference):
        return motion_transfer(frames, as_rgb_image(reference)), fps, {"motion": "source", "appearance": "reference"}
    motion = [_check_frame(np.asarray(frame), "reference") for frame in reference]
    if not motion:
        raise InvalidRequest("reference: the reference video has no frames")
    appearance = next(frames)
    output = motion_transfer(_same_size(motion, motion[0].shape, "reference"), appearance)
    return output, fps, {"motion": "reference", "appearance": "source first frame"}


_RUNNERS: dict[str, _Runner] = {
    "style_transfer": _run_style_transfer,
    "motion_transfer": _run_motion_transfer,
    "enhancement": _run_enhancement,
    "upscale": _run_upscale,
    "interpolation": _run_interpolation,
    "colorization": _run_colorization,
}


def _is_image(reference) -> bool:
    return isinstance(reference, np.ndarray) and reference.ndim <= 3


def _check_reference(mode: Mode, reference) -> None:
    if mode.reference is None:
        return
    if reference is None:
        raise InvalidRequest(f"reference: mode {mode.name} needs a reference {mode.reference}")
    is_video = not _is_image(reference)
    if is_video and mode.reference == "image":
        raise InvalidRequest(f"reference: mode {mode.name} needs a reference image, not a video")
    if not is_video:
        as_rgb_image(reference)


def transform(
    mode: str,
    frames: Frames,
    fps: float,
    *,
    strength: float = 0.7,
    reference: np.ndarray | list[np.ndarray] | None = None,
    temporal_consistency: float = 0.8,
    preserve_motion: bool = True,
    scale: float | None = None,
    width: int | None = None,
    height: int | None = None,
    target_fps: float | None = None,
    factor: int | None = None,
) -> tuple[Iterator[np.ndarray], float, dict]:
    """Run one V2V mode on a video: ``(output frames, output fps, info)``.

    Validates everything a request can get wrong before any work starts (``InvalidRequest``
    naming the field: unknown ``mode``, ``strength`` / ``temporal_consistency`` outside 0-1, a
    missing or malformed ``reference``, ``factor`` not 2 or 4, bad sizes, an empty or
    non-RGB source). Reads only the first source frame to do so; the output is a generator,
    so frames flow through one at a time. Defaults follow the seed's example request
    (strength 0.7, temporal_consistency 0.8, preserve_motion true); which fields a mode reads is
    in ``MODES``. ``info``: ``mode``, ``path`` ("classical"), ``method``, ``parameters`` (the
    values the mode used), ``input`` / ``output`` (width, height, fps).
    """
    spec = MODES.get(mode)
    if spec is None:
        raise InvalidRequest(f"mode: must be one of {sorted(MODES)}, got {mode!r}")
    if not fps or fps <= 0:
        raise InvalidRequest(f"fps: must be positive, got {fps}")
    request = _Request(
        _unit("strength", strength),
        reference,
        _unit("temporal_consistency", temporal_consistency),
        bool(preserve_motion),
        scale,
        width,
        height,
        target_fps,
        factor,
    )
    _check_reference(spec, reference)
    stream = iter(frames)
    first = next(stream, None)
    if first is None:
        raise InvalidRequest("source: the source video has no frames")
    _check_frame(first)
    source_height, source_width = first.shape[:2]
    output_width, output_height = _output_size(spec, request, first)  # validates upscale sizes
    source = _same_size(itertools.chain([first], stream), first.shape)
    output, output_fps, parameters = _RUNNERS[mode](source, float(fps), request)
    info = {
        "mode": mode,
        "path": "classical",
        "method": spec.method,
        "parameters": parameters,
        "input": {"width": source_width, "height": source_height, "fps": float(fps)},
        "output": {"width": output_width, "height": output_height, "fps": output_fps},
    }
    return output, output_fps, info


def _output_size(spec: Mode, request: _Request, first: np.ndarray) -> tuple[int, int]:
    height, width = first.shape[:2]
    if spec.name == "upscale":
        return upscale_size(width, height, request.scale, request.width, request.height)
    if spec.name == "motion_transfer" and _is_image(request.reference):
        return even_crop(as_rgb_image(request.reference)).shape[1::-1]
    return width, height
