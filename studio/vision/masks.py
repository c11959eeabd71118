"""Feathered masks of boxes and the composites that use them: shared by the features that
paint inside a box (inpainting's masks, lip-sync's repainted face).

Masks (:func:`feathered_box_masks`)
-----------------------------------
The hard mask is the box grown by ``dilate`` pixels. With ``d`` the Euclidean distance of a
pixel to the hard mask (0 inside) and ``r`` the feather radius::

    mask(d) = 0.5 * (1 + cos(pi * min(d, r + 1) / (r + 1)))

so the mask is 1 on the hard mask, 0 from ``d >= r + 1`` on, and a smooth ramp in the *edge
band* ``0 < d < r + 1`` outside the box. Changing ``r`` therefore changes only pixels in the
band of the larger radius; ``r = 0`` gives the binary hard mask.

Boxes are ``(x, y, w, h)`` in pixels; frames and images are ``uint8`` RGB ``(H, W, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Box = tuple[int, int, int, int]


def cosine_ramp(d: np.ndarray, r: int) -> np.ndarray:
    """1 at d = 0, smooth cosine fall to 0 at d = r + 1 (see the module docstring)."""
    return (0.5 * (1.0 + np.cos(np.pi * np.minimum(d, r + 1) / (r + 1)))).astype(np.float32)


def distance_to_rect(roi: tuple[int, int, int, int], rect: tuple[int, int, int, int]) -> np.ndarray:
    """Euclidean distance of each roi pixel to the rectangle [x0, x1) x [y0, y1) (0 inside).

    The distance to a rectangle is separable, so it is computed from a row and a column.
    """
    x0, y0, x1, y1 = roi
    hx0, hy0, hx1, hy1 = rect
    xs = np.arange(x0, x1, dtype=np.float32)
    ys = np.arange(y0, y1, dtype=np.float32)
    dx = np.maximum(np.maximum(hx0 - xs, 0), xs - (hx1 - 1))
    dy = np.maximum(np.maximum(hy0 - ys, 0), ys - (hy1 - 1))
    return np.hypot(dy[:, None], dx[None, :])


def soft_mask_roi(frame_shape: tuple[int, ...], box: Box, r: int, dilate: int) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The feathered mask on its support only: (roi x0, y0, x1, y1), soft mask, hard mask."""
    height, width = frame_shape[:2]
    x, y, w, h = box
    hard = max(0, x - dilate), max(0, y - dilate), min(width, x + w + dilate), min(height, y + h + dilate)
    roi = max(0, hard[0] - r - 1), max(0, hard[1] - r - 1), min(width, hard[2] + r + 1), min(height, hard[3] + r + 1)
    d = distance_to_rect(roi, hard)
    return roi, cosine_ramp(d, r), d == 0


def feathered_box_masks(frame_shape: tuple[int, ...], boxes: Sequence[Box], radius: int,
                        dilate: int) -> list[np.ndarray]:
    """Per-frame float32 masks (H, W) in [0, 1]: 1 on each box grown by ``dilate``, a cosine
    ramp over the ``radius`` band outside it, 0 beyond (``radius >= 0``: callers check it)."""
    masks = []
    for box in boxes:
        (x0, y0, x1, y1), soft, _ = soft_mask_roi(frame_shape, box, radius, dilate)
        mask = np.zeros(frame_shape[:2], np.float32)
        mask[y0:y1, x0:x1] = soft
        masks.append(mask)
    return masks


def paste(source: np.ndarray, generated: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``weight * generated + (1 - weight) * source`` where ``weight > 0`` (an (H, W) mask in
    [0, 1]); the source's pixels, exactly, elsewhere."""
    out = source.copy()
    inside = weight > 0
    w = weight[inside][:, None]
    out[inside] = np.clip(np.rint(w * generated[inside] + (1.0 - w) * source[inside]), 0, 255).astype(np.uint8)
    return out


def composite(frame: np.ndarray, fill: np.ndarray, soft: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """``mask * fill + (1 - mask) * frame`` on the roi; the rest of ``frame`` is copied."""
    x0, y0, x1, y1 = roi
    out = frame.copy()
    out[y0:y1, x0:x1] = cv2.blendLinear(np.ascontiguousarray(fill), np.ascontiguousarray(frame[y0:y1, x0:x1]), soft, 1.0 - soft)
    return out
