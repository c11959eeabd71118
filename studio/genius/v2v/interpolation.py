"""V2V ``interpolation``: occlusion-aware optical-flow frame interpolation, x2/x4 or any target fps."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from studio.errors import InvalidRequest
from studio.genius.v2v.primitives import Frames, blend, gray, occlusion, to_uint8, warp
from studio.vision.flow import Flow

INTERPOLATION_FACTORS = (2, 4)
MAX_TARGET_FPS = 240.0


def _flow_at_time(flow_ab: np.ndarray, tau: float, iterations: int = 3) -> np.ndarray:
    """Backward flow from time ``tau`` (in A->B units) to A, assuming linear motion.

    The pixel of A at ``p`` is at ``p + tau F_ab(p)`` at time ``tau``; for an output pixel ``x``
    the fixed point ``F(x) = -tau F_ab(x + F(x))`` gives ``p = x + F(x)``. A few iterations of
    sampling ``F_ab`` where the last estimate points converge for piecewise-smooth flow and,
    unlike ``-tau F_ab(x)``, put moving edges where they are at time ``tau``.
    """
    estimate = -tau * flow_ab
    for _ in range(iterations):
        estimate = -tau * warp(flow_ab, estimate)
    return estimate


class _FramePair:
    """Two neighbouring source frames with their flows, ready to synthesise any time between."""

    def __init__(self, frame0: np.ndarray, frame1: np.ndarray, flow01: np.ndarray, flow10: np.ndarray):
        self.frame0, self.frame1 = frame0, frame1
        self.flow01, self.flow10 = flow01, flow10
        self.occluded0 = occlusion(flow01, flow10)
        self.occluded1 = occlusion(flow10, flow01)

    def at(self, t: float) -> np.ndarray:
        """Frame at ``t`` in (0, 1): both neighbours warped to ``t`` and blended.

        Weights: ``w0 = (1 - t)(1 - o1)``, ``w1 = t (1 - o0)`` (+1e-3 each), where ``o0`` is
        frame 0's occlusion mask at the point frame 0 is sampled (its content is gone in frame 1,
        so frame 1's sample there shows whatever covers it) and ``o1`` likewise for frame 1.
        """
        to0 = _flow_at_time(self.flow01, t)
        to1 = _flow_at_time(self.flow10, 1.0 - t)
        o0 = warp(self.occluded0, to0)
        o1 = warp(self.occluded1, to1)
        w0 = (1.0 - t) * (1.0 - o1) + 1e-3
        w1 = t * (1.0 - o0) + 1e-3
        warped0 = warp(self.frame0, to0)
        warped1 = warp(self.frame1, to1)
        return to_uint8(blend(warped0, warped1, w1 / (w0 + w1)))


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
    neighbours are warped to ``t`` (``_flow_at_time``) and blended by ``t`` and visibility
    (``_FramePair.at``). Output ends at the last source frame: x2 turns N frames into 2N - 1.
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
    previous_gray = gray(previous)
    yield previous
    index, k = 0, 1
    for current in stream:
        current_gray = gray(current)
        pair = None
        while k * step <= index + 1:
            t = k * step - index
            if t == 1:
                yield current
            else:
                if pair is None:
                    pair = _FramePair(previous, current, *flow.both(previous_gray, current_gray))
                yield pair.at(float(t))
            k += 1
        previous, previous_gray, index = current, current_gray, index + 1
