"""Extending the canvas classically: reflection at the edges, cross-faded into a heavy blur.

Extend (:func:`extend`): a classical approximation of outpainting
------------------------------------------------------------------
The frame is placed centred on the target canvas (offset ``((TW - W) // 2, (TH - H) // 2)``),
the new border is filled by mirror reflection at the frame's edges (``BORDER_REFLECT_101``,
so edges continue across the seam) and cross-faded into a heavily blurred copy (Gaussian,
sigma = max(4, largest border / 2)) with weight ``1 - mask(d)`` (``studio.vision.masks.cosine_ramp``, with
``r + 1 = ramp``), ``d`` = distance to the original, ``ramp = max(8, largest border // 2)``:
sharp reflection at the seam, all blur from ``ramp`` pixels out. It invents no content: it is a backdrop
that keeps the colours and light of the edges. The VACE model path does real outpainting.
The original pixels are copied unchanged; the target must be even and at least the frame size.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.genius.inpaint.checks import check_frames
from studio.vision.masks import cosine_ramp, distance_to_rect

MAX_EXTEND_FACTOR = 4
MAX_EXTEND_SIDE = 4096


def validate_target_size(target_size: Sequence[int], frame_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(width, height)``: even integers, at least the frame, at most 4x it and 4096."""
    height, width = frame_shape[:2]
    try:
        tw, th = (int(v) for v in target_size)
    except (TypeError, ValueError):
        raise InvalidRequest("target_size: must be [width, height] integers") from None
    if tw % 2 or th % 2:
        raise InvalidRequest(f"target_size: width and height must be even (got {tw}x{th})")
    if tw < width or th < height:
        raise InvalidRequest(f"target_size: {tw}x{th} is smaller than the {width}x{height} video; extend only grows")
    if tw > min(MAX_EXTEND_SIDE, MAX_EXTEND_FACTOR * width) or th > min(MAX_EXTEND_SIDE, MAX_EXTEND_FACTOR * height):
        raise InvalidRequest(f"target_size: at most {MAX_EXTEND_FACTOR}x the video and {MAX_EXTEND_SIDE} px per side")
    return tw, th


def extend(frames: Sequence[np.ndarray], target_width: int, target_height: int) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Outpaint classically to ``target_width x target_height``: (frames, (offset_x, offset_y))."""
    frames = check_frames(frames)
    height, width = frames[0].shape[:2]
    tw, th = validate_target_size((target_width, target_height), frames[0].shape)
    left, top = (tw - width) // 2, (th - height) // 2
    right, bottom = tw - width - left, th - height - top
    border = max(left, right, top, bottom)
    if border == 0:
        return [f.copy() for f in frames], (0, 0)
    sigma = max(4.0, border / 2)
    ramp = int(max(8, border // 2))
    d = distance_to_rect((0, 0, tw, th), (left, top, left + width, top + height))
    sharp = cosine_ramp(d, ramp - 1)  # 1 on the original, 0 (all blur) from d >= ramp
    out = []
    for frame in frames:
        canvas = cv2.copyMakeBorder(frame, top, bottom, left, right, cv2.BORDER_REFLECT_101)
        result = cv2.blendLinear(canvas, _heavy_blur(canvas, sigma), sharp, 1.0 - sharp)
        result[top:top + height, left:left + width] = frame
        out.append(result)
    return out, (left, top)


def _heavy_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of large sigma, computed on a copy shrunk by ``f = sigma // 3`` (the blur
    there has sigma ~3 px, so the shrunk grid still resolves it; work falls by ~f^2)."""
    h, w = image.shape[:2]
    f = max(1, int(sigma // 3))
    small = cv2.resize(image, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
