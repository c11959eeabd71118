"""Occlusion-aware optical-flow frame interpolation: a frame at any time between two others.

Used by V2V ``interpolation`` (``studio.genius.v2v.interpolation``) and by generation, where an
output frame rate above the model's native one is made of interpolated frames, never of
repeated ones (``studio.engine.output_frames``).
"""

from __future__ import annotations

import numpy as np

from studio.vision.flow import Flow
from studio.vision.pixels import blend, gray, occlusion, to_uint8, warp


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


class FramePair:
    """Two neighbouring frames with their flows, ready to synthesise any time between."""

    def __init__(self, frame0: np.ndarray, frame1: np.ndarray, flow01: np.ndarray, flow10: np.ndarray):
        self.frame0, self.frame1 = frame0, frame1
        self.flow01, self.flow10 = flow01, flow10
        self.occluded0 = occlusion(flow01, flow10)
        self.occluded1 = occlusion(flow10, flow01)

    @classmethod
    def between(cls, frame0: np.ndarray, frame1: np.ndarray, flow: Flow) -> "FramePair":
        return cls(frame0, frame1, *flow.both(gray(frame0), gray(frame1)))

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
