"""Replacing the background behind the tracked object: GrabCut foreground, new image behind it.

Background (:func:`segment_foreground`, :func:`replace_background`)
-------------------------------------------------------------------
GrabCut on a crop of the box grown by ``max(10, 0.25 * max(w, h))`` px (the ring is what the
background colour model learns from): frame 0 is initialised with the rectangle
(``GC_INIT_WITH_RECT``, 5 iterations); each later frame with the previous foreground moved
by the tracked box's displacement as "probably foreground", the rest of the box as "probably
background", the ring as background (``GC_INIT_WITH_MASK``, 2 iterations: the models start
close to the answer, so fewer iterations are needed). The largest connected component is kept.
Composite: ``alpha = 1 - mask(d_in)`` with ``d_in`` the distance of a foreground pixel to the
background, so the feather band lies *inside* the object's edge (an outward band would show
the old background); every pixel outside the segmented foreground is exactly the new
background, which is resized to cover the frame and centre-cropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.genius.inpaint.checks import Box, check_frames, check_image, validate_bbox, validate_feather_radius
from studio.vision.masks import cosine_ramp
from studio.vision.pixels import cover_resize

GRABCUT_MAX_SIDE = 200


def _grown_roi(box: Box, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    height, width = frame_shape[:2]
    x, y, w, h = box
    pad = max(10, int(0.25 * max(w, h)))
    return max(0, x - pad), max(0, y - pad), min(width, x + w + pad), min(height, y + h + pad)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == keep


def _moved_prior(prev: np.ndarray, prev_roi: tuple[int, int, int, int], shift: tuple[int, int], box: Box,
                 roi: tuple[int, int, int, int]) -> np.ndarray:
    """GrabCut init mask for ``roi``: ring = BGD, box = PR_BGD, and the previous foreground
    (``prev`` on ``prev_roi``) moved by the box displacement = PR_FGD."""
    x0, y0, x1, y1 = roi
    x, y, w, h = box
    init = np.full((y1 - y0, x1 - x0), cv2.GC_BGD, np.uint8)
    init[y - y0:y + h - y0, x - x0:x + w - x0] = cv2.GC_PR_BGD
    moved = np.zeros(init.shape, bool)
    ox, oy = prev_roi[0] + shift[0] - x0, prev_roi[1] + shift[1] - y0  # prev origin in roi coords
    ph, pw = prev.shape
    dx0, dy0 = max(0, ox), max(0, oy)
    dx1, dy1 = min(init.shape[1], ox + pw), min(init.shape[0], oy + ph)
    if dx1 > dx0 and dy1 > dy0:
        moved[dy0:dy1, dx0:dx1] = prev[dy0 - oy:dy1 - oy, dx0 - ox:dx1 - ox]
    init[moved & (init == cv2.GC_PR_BGD)] = cv2.GC_PR_FGD
    return init


def _grabcut(crop: np.ndarray, init: np.ndarray | None, rect: tuple[int, int, int, int]) -> np.ndarray:
    """GrabCut at a working size of at most GRABCUT_MAX_SIDE px; boolean foreground at crop size."""
    h, w = crop.shape[:2]
    scale = min(1.0, GRABCUT_MAX_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA) if scale < 1 else np.ascontiguousarray(crop)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    if init is None:
        gc = np.zeros(small.shape[:2], np.uint8)
        r = tuple(round(v * scale) for v in rect)
        cv2.grabCut(small, gc, (r[0], r[1], max(1, r[2]), max(1, r[3])), bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
    else:
        gc = cv2.resize(init, size, interpolation=cv2.INTER_NEAREST) if scale < 1 else init
        cv2.grabCut(small, gc, None, bgd, fgd, 2, cv2.GC_INIT_WITH_MASK)
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.float32)
    if scale < 1:
        fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR)
    return _largest_component(fg > 0.5)


def _segment_rois(frames: list[np.ndarray], boxes: list[Box]) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Foreground per frame as (roi, boolean mask on the roi); see the module docstring."""
    result: list[tuple[tuple[int, int, int, int], np.ndarray]] = []
    for k, (frame, box) in enumerate(zip(frames, boxes)):
        roi = _grown_roi(box, frame.shape)
        x0, y0, x1, y1 = roi
        if (x1 - x0, y1 - y0) == box[2:]:
            raise InvalidRequest("bbox: background mode needs some background around the box to learn its colours")
        init = None
        if k and result[-1][1].any():
            shift = (box[0] - boxes[k - 1][0], box[1] - boxes[k - 1][1])
            init = _moved_prior(result[-1][1], result[-1][0], shift, box, roi)
            if not (init == cv2.GC_PR_FGD).any():
                init = None
        rect = (box[0] - x0, box[1] - y0, box[2], box[3])
        result.append((roi, _grabcut(frame[y0:y1, x0:x1], init, rect)))
    return result


def segment_foreground(frames: Sequence[np.ndarray], boxes: Sequence[Box]) -> list[np.ndarray]:
    """Boolean foreground mask (H, W) per frame by GrabCut in the tracked boxes."""
    frames = check_frames(frames)
    boxes = [validate_bbox(b, frames[0].shape) for b in boxes]
    masks = []
    for (x0, y0, x1, y1), fg in _segment_rois(frames, boxes):
        full = np.zeros(frames[0].shape[:2], bool)
        full[y0:y1, x0:x1] = fg
        masks.append(full)
    return masks


def replace_background(frames: Sequence[np.ndarray], boxes: Sequence[Box], background_image: np.ndarray,
                       feather_radius: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Keep the segmented object, put ``background_image`` behind it: (frames, fg masks)."""
    frames = check_frames(frames)
    r = validate_feather_radius(feather_radius, frames[0].shape)
    height, width = frames[0].shape[:2]
    new_bg = cover_resize(check_image(background_image, "background")[..., :3], width, height)
    boxes = [validate_bbox(b, frames[0].shape) for b in boxes]
    out, masks = [], []
    for frame, (roi, fg) in zip(frames, _segment_rois(frames, boxes)):
        x0, y0, x1, y1 = roi
        d_in = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        alpha = np.where(fg, 1.0 - cosine_ramp(d_in, r), 0.0).astype(np.float32)
        result = new_bg.copy()
        result[y0:y1, x0:x1] = cv2.blendLinear(np.ascontiguousarray(frame[y0:y1, x0:x1]),
                                               np.ascontiguousarray(new_bg[y0:y1, x0:x1]), alpha, 1.0 - alpha)
        out.append(result)
        full = np.zeros(frame.shape[:2], bool)
        full[y0:y1, x0:x1] = fg
        masks.append(full)
    return out, masks
