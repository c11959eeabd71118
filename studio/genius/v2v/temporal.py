"""Temporal smoothing of synthesised frames: the API's ``temporal_consistency`` and ``preserve_motion``."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from studio.vision.flow import Flow
from studio.vision.pixels import Frames, blend, gray, noise_sigma, to_uint8, warp


def temporal_smooth(
    frames: Frames,
    strength: float,
    *,
    guide: Frames | None = None,
    follow_motion: bool = True,
    preset: str | None = None,
) -> Iterator[np.ndarray]:
    """Flow-guided temporal smoothing, the API's ``temporal_consistency`` (0-1) (streams).

    ``out_k = f_k + w (warp(out_{k-1}, F_{k->k-1}) - f_k)`` with ``w = 0.9 strength r``: the
    previous *output* is carried along the backward flow onto frame ``k`` and blended in where
    the warp is reliable, so moving content is smoothed along its motion instead of ghosting.
    ``r`` (``_warp_reliability``) compares the guide's structure (luma minus its blur, blind
    to the brightness flicker being removed) between frame ``k`` and the warped frame ``k-1``:
    uncovered background, where flow is smeared from the moving object, fails it.
    A forward/backward flow check instead (``occlusion``, twice the flow cost) let such
    trails through: on the test scene it left 0.89 grey levels/frame of change on pixels
    that never changed, against 0.17 for this check (strength 0.8). The 0.9 cap keeps new
    content reaching the output (an exponential moving average over ~10 frames at most).
    Flow comes from ``guide`` (the source video, the same length as ``frames``) when given,
    else from ``frames``. ``follow_motion=False`` skips the flow: a plain moving average
    (``preserve_motion=False``). ``strength = 0`` returns the frames unchanged.
    """
    if strength <= 0:
        yield from frames
        return
    weight = 0.9 * strength
    flow = Flow(preset)
    pairs = zip(frames, guide, strict=True) if guide is not None else ((f, f) for f in frames)
    previous: np.ndarray | None = None
    previous_gray: np.ndarray | None = None
    for frame, guide_frame in pairs:
        current_gray = gray(guide_frame) if follow_motion else None
        if previous is None:
            output = frame.astype(np.float32)
        elif current_gray is None:
            output = blend(frame, previous, weight)
        else:
            to_previous = flow(current_gray, previous_gray)
            reliable = _warp_reliability(current_gray, previous_gray, to_previous)
            output = blend(frame, warp(previous, to_previous), weight * reliable)
        previous, previous_gray = output, current_gray
        yield to_uint8(output)


def _structure(luma: np.ndarray) -> np.ndarray:
    """Luma minus its sigma-3 blur: detail, blind to brightness changes (flicker) by design."""
    image = luma.astype(np.float32)
    return image - cv2.GaussianBlur(image, (0, 0), 3.0)


def _warp_reliability(current: np.ndarray, previous: np.ndarray, to_previous: np.ndarray) -> np.ndarray:
    """``exp(-(m / tau)^2)``: ``m`` the 5x5 mean |structure difference| after warping, in grey
    levels; ``tau = max(6, 3 sigma)`` with ``sigma`` the frame's noise (``noise_sigma``)."""
    mismatch = cv2.blur(np.abs(_structure(current) - warp(_structure(previous), to_previous)), (5, 5))
    tau = max(6.0, 3.0 * noise_sigma(current))
    return np.exp(-((mismatch / tau) ** 2))
