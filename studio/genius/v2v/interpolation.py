"""V2V ``interpolation``: occlusion-aware optical-flow frame interpolation, x2/x4 or any target fps."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from studio.errors import InvalidRequest
from studio.vision.flow import Flow
from studio.vision.interpolation import FramePair
from studio.vision.pixels import Frames

INTERPOLATION_FACTORS = (2, 4)
MAX_TARGET_FPS = 240.0


def _as_fraction(value: float) -> Fraction:
    # 29.97 -> 2997/100: exact output timestamps, no drift over long videos.
    return Fraction(value).limit_denominator(1001)


def interpolation_step(source_fps: float, factor: int | None = None, target_fps: float | None = None) -> Fraction:
    """Source frames per output frame (< 1), validated. ``factor`` and ``target_fps`` exclude each other."""
    if not source_fps or source_fps <= 0:
        raise InvalidRequest("fps: the source frame rate must be positive")
    if factor is not None and target_fps is not None:
        raise InvalidRequest("factor: give either factor or target_fps, not both")
    if target_fps is None:
        factor = 2 if factor is None else factor
        if factor not in INTERPOLATION_FACTORS:
            raise InvalidRequest(f"factor: must be one of {INTERPOLATION_FACTORS}, got {factor}")
        return Fraction(1, factor)
    if not source_fps < target_fps <= MAX_TARGET_FPS:
        raise InvalidRequest(
            f"target_fps: must be above the source's {source_fps:g} fps and at most {MAX_TARGET_FPS:g}"
        )
    return _as_fraction(source_fps) / _as_fraction(target_fps)


def interpolate(
    frames: Frames,
    *,
    source_fps: float,
    factor: int | None = None,
    target_fps: float | None = None,
    preset: str | None = None,
) -> Iterator[np.ndarray]:
    """Raise the frame rate with occlusion-aware optical-flow interpolation (streams).

    Output frame ``k`` shows time ``k / output_fps``; it lies between source frames ``i`` and
    ``i + 1`` at fraction ``t``. At ``t = 0`` the source frame is passed through, otherwise both
    neighbours are warped to ``t`` and blended by ``t`` and visibility
    (``studio.vision.interpolation.FramePair``). Output ends at the last source frame: x2 turns N frames into 2N - 1.
    Only the two current source frames and their flows are held; flows are computed once per
    pair and only for pairs that need a synthesised frame.

    Quality (``tests/test_v2v.py``): a textured 36 px square moving (6, 4) px per kept frame over
    a textured 160x112 background, odd frames dropped and re-synthesised at x2, gives 32.6 dB mean PSNR against
    the true frames, where plain blending of the neighbours gives 25.7 dB.
    """
    step = interpolation_step(source_fps, factor, target_fps)
    stream = iter(frames)
    previous = next(stream, None)
    if previous is None:
        return
    flow = Flow(preset)
    yield previous
    index, k = 0, 1
    for current in stream:
        pair = None
        while k * step <= index + 1:
            t = k * step - index
            if t == 1:
                yield current
            else:
                if pair is None:
                    pair = FramePair.between(previous, current, flow)
                yield pair.at(float(t))
            k += 1
        previous, index = current, index + 1
