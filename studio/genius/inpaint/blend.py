"""Blending an overlay image into the tracked box: feathered alpha or Poisson.

Blend (:func:`blend`)
---------------------
The overlay is resized to the box (``INTER_AREA``) and extended into the feather band by
edge replication. ``method="feather"``: ``out = mask * overlay + (1 - mask) * frame`` with the
mask of the exact box (``dilate = 0``; an RGBA overlay's alpha multiplies the mask).
``method="poisson"``: ``cv2.seamlessClone`` (``NORMAL_CLONE``) over box + band with the overlay
as source inside the box and the frame itself in the band, so the colour mismatch at the box
edge is spread over the band (a wider ``feather_radius`` keeps more of the overlay's own
colours); then the same feathered composite, so pixels outside box + band are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.genius.inpaint.checks import Box, check_frames, check_image, validate_bbox, validate_feather_radius
from studio.vision.masks import composite, soft_mask_roi


def _overlay_canvas(overlay: np.ndarray, box: Box, roi: tuple[int, int, int, int], r: int) -> np.ndarray:
    """The overlay resized to the box and edge-replicated over the roi (box + band)."""
    x, y, w, h = box
    x0, y0, x1, y1 = roi
    resized = cv2.resize(overlay, (w, h), interpolation=cv2.INTER_AREA)
    pad = r + 1
    padded = cv2.copyMakeBorder(resized, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return padded[y0 - y + pad:y1 - y + pad, x0 - x + pad:x1 - x + pad]


def _poisson(frame: np.ndarray, canvas: np.ndarray, weight: np.ndarray, hard: np.ndarray,
             roi: tuple[int, int, int, int]) -> np.ndarray:
    """seamlessClone over box + band: the source is the overlay in the box and the frame in the
    band, so the colour correction spreads over the band. A 1 px replicated border lets the
    region touch the frame edge (OpenCV needs the mask strictly inside the destination)."""
    x0, y0, x1, y1 = roi
    here = np.ascontiguousarray(frame[y0:y1, x0:x1])
    inside = weight * hard
    src = cv2.blendLinear(np.ascontiguousarray(canvas), here, inside, 1.0 - inside)
    dst = cv2.copyMakeBorder(here, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    src = cv2.copyMakeBorder(src, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    mask = np.zeros(dst.shape[:2], np.uint8)
    mask[1:-1, 1:-1] = (weight > 0).astype(np.uint8) * 255
    bx, by, bw, bh = cv2.boundingRect(mask)
    # OpenCV places the mask's bounding rect at center - size // 2: this keeps it in place.
    cloned = cv2.seamlessClone(src, dst, mask, (bx + bw // 2, by + bh // 2), cv2.NORMAL_CLONE)
    return cloned[1:-1, 1:-1]


def blend(frames: Sequence[np.ndarray], boxes: Sequence[Box], overlay_image: np.ndarray, feather_radius: int,
          method: Literal["feather", "poisson"] = "feather") -> list[np.ndarray]:
    """Composite ``overlay_image`` into each frame's box (feathered alpha or Poisson)."""
    frames = check_frames(frames)
    boxes = [validate_bbox(b, frames[0].shape) for b in boxes]
    r = validate_feather_radius(feather_radius, frames[0].shape)
    if method not in ("feather", "poisson"):
        raise InvalidRequest(f"method: must be 'feather' or 'poisson' (got {method!r})")
    overlay = check_image(overlay_image, "overlay")
    rgb, alpha = overlay[..., :3], (overlay[..., 3] if overlay.shape[2] == 4 else None)
    out = []
    for frame, box in zip(frames, boxes):
        roi, soft, hard = soft_mask_roi(frame.shape, box, r, 0)
        canvas = _overlay_canvas(rgb, box, roi, r)
        weight = soft
        if alpha is not None:
            weight = soft * _overlay_canvas(alpha[..., None], box, roi, r).astype(np.float32) / 255.0
        if method == "poisson":
            canvas = _poisson(frame, canvas, weight, hard, roi)
            weight = soft
        out.append(composite(frame, canvas, weight, roi))
    return out
