"""Removing an object from a clip: background propagated from other frames, the rest filled spatially.

Remove (:func:`remove`): flow-guided background propagation
------------------------------------------------------------
1. Up to ``MAX_CORNERS`` (200) Shi-Tomasi corners are found outside each frame's masked
   region (hard mask grown by the feather band) and tracked into the next frame by pyramidal
   Lucas-Kanade; corners that do not come back within ``FB_MAX_PX`` (0.5 px) when tracked
   backwards are dropped, and a homography is fitted to the rest with RANSAC (2 px). A link is
   *reliable* with at least ``MIN_INLIERS`` (15) inliers that are at least 30 % of the tracked
   corners; an unreliable link cuts the chain (frames across it are not used as sources for
   each other). LK correspondences are sub-pixel: on the static-camera test the chained
   links are close enough to the identity that ``cv2.remap`` copies pixels exactly.
2. ``H(t -> s)`` is the product of the consecutive homographies (each estimated once and
   reused by every pair of frames that spans it).
3. For each frame the pixels to fill (hard mask + band) are taken from the nearest frames first
   (t-1, t+1, t-2, ...; at most ``MAX_NEIGHBOURS`` = 30): a target pixel is filled from source
   ``s`` when its back-projection lands inside ``s`` (bilinear support included) and outside
   ``s``'s own hard mask, i.e. where ``s`` saw the background there.
4. Hard-mask pixels that no frame saw are filled spatially (``cv2.inpaint``, Telea, radius 5)
   on a crop around them; band pixels that no frame saw keep their own (background) value.
5. ``out = mask * fill + (1 - mask) * frame`` with the feathered mask.

Fill statistics (over all hard-mask pixels of all frames): ``temporal_fraction`` = filled from
other frames / masked, ``spatial_fraction`` = filled by ``cv2.inpaint`` / masked (they sum to
1); ``reliable_links`` = reliable consecutive homographies / (frames - 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.genius.inpaint.checks import Box, check_frames, validate_bbox, validate_feather_radius
from studio.genius.inpaint.masks import MASK_DILATION_PX
from studio.genius.inpaint.tracking import FB_MAX_PX, LK_LEVELS
from studio.vision.masks import composite, soft_mask_roi
from studio.vision.tracking import track_points

MIN_INLIERS = 15
MAX_CORNERS = 200
MAX_NEIGHBOURS = 30
INPAINT_RADIUS = 5


@dataclass(frozen=True)
class RemoveStats:
    """Where the removed region's pixels came from (fractions of all hard-mask pixels)."""

    temporal_fraction: float
    spatial_fraction: float
    reliable_links: float


def _feature_mask(frame_shape: tuple[int, ...], box: Box, r: int) -> np.ndarray:
    mask = np.full(frame_shape[:2], 255, np.uint8)
    (x0, y0, x1, y1), _, _ = soft_mask_roi(frame_shape, box, r, MASK_DILATION_PX)
    mask[y0:y1, x0:x1] = 0
    return mask


def _pair_homographies(grays: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray | None]:
    """``H(k -> k+1)`` for each consecutive pair, or None where the fit is unreliable."""
    return [_fit_link(grays[k], grays[k + 1], masks[k]) for k in range(len(grays) - 1)]


def _fit_link(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Corners of ``a`` outside the mask, tracked a -> b -> a by pyramidal LK (kept when they
    come back within FB_MAX_PX), then a RANSAC homography (2 px)."""
    pts = cv2.goodFeaturesToTrack(a, MAX_CORNERS, 0.01, 5, mask=mask, blockSize=5)
    if pts is None or len(pts) < MIN_INLIERS:
        return None
    fwd, ok = track_points(a, b, pts, max_level=LK_LEVELS, max_error=FB_MAX_PX)
    if ok.sum() < MIN_INLIERS:
        return None
    hom, inl = cv2.findHomography(pts[ok], fwd[ok], cv2.RANSAC, 2.0, maxIters=2000, confidence=0.999)
    if hom is None or inl.sum() < MIN_INLIERS or inl.mean() < 0.3:
        return None
    return hom


def _chain(links: list[np.ndarray | None], s: int, t: int) -> np.ndarray | None:
    """``H(t -> s)`` (maps target pixels to source pixels) from the consecutive links."""
    hom = np.eye(3)
    lo, hi = min(s, t), max(s, t)
    for k in range(lo, hi):
        if links[k] is None:
            return None
        hom = links[k] @ hom  # H(lo -> k+1)
    return hom if t < s else np.linalg.inv(hom)


def _neighbour_order(t: int, n: int) -> list[int]:
    order = sorted((s for s in range(n) if s != t), key=lambda s: (abs(s - t), s > t))
    return order[:MAX_NEIGHBOURS]


def _back_project(hom: np.ndarray, roi: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = roi
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    den = hom[2, 0] * xs + hom[2, 1] * ys + hom[2, 2]
    u = (hom[0, 0] * xs + hom[0, 1] * ys + hom[0, 2]) / den
    v = (hom[1, 0] * xs + hom[1, 1] * ys + hom[1, 2]) / den
    return u.astype(np.float32), v.astype(np.float32)


def _source_sees_background(u: np.ndarray, v: np.ndarray, frame_shape: tuple[int, ...], box: Box) -> np.ndarray:
    """Back-projected pixels whose bilinear support is inside the source frame and outside
    the source's hard mask (where the source saw the background)."""
    height, width = frame_shape[:2]
    x, y, w, h = box
    d = MASK_DILATION_PX + 1  # +1: bilinear support reaches one pixel
    inside = (u >= 0) & (v >= 0) & (u <= width - 1) & (v <= height - 1)
    covered = (u > x - d) & (u < x + w - 1 + d) & (v > y - d) & (v < y + h - 1 + d)
    return inside & ~covered


def _fill_frame(t: int, frames: list[np.ndarray], boxes: list[Box], links: list[np.ndarray | None], r: int) -> tuple[np.ndarray, int, int]:
    """Fill one frame's masked region; returns (frame, hard px filled temporally, spatially)."""
    frame = frames[t]
    roi, soft, hard = soft_mask_roi(frame.shape, boxes[t], r, MASK_DILATION_PX)
    x0, y0, x1, y1 = roi
    fill = frame[y0:y1, x0:x1].copy()
    todo = np.ones(soft.shape, bool)
    for s in _neighbour_order(t, len(frames)):
        hom = _chain(links, s, t)
        if hom is None:
            continue
        u, v = _back_project(hom, roi)
        take = todo & _source_sees_background(u, v, frame.shape, boxes[s])
        if not take.any():
            continue
        warped = cv2.remap(frames[s], u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fill[take] = warped[take]
        todo &= ~take
        if not todo.any():
            break
    holes = todo & hard
    n_spatial = int(holes.sum())
    if n_spatial:
        fill = _spatial_fill(frame, fill, holes, roi)
    n_hard = int(hard.sum())
    return composite(frame, fill, soft, roi), n_hard - n_spatial, n_spatial


def _spatial_fill(frame: np.ndarray, fill: np.ndarray, holes: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """Telea inpainting of ``holes`` on a crop padded so the fill sees real context."""
    x0, y0, x1, y1 = roi
    height, width = frame.shape[:2]
    pad = 2 * INPAINT_RADIUS
    cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)
    crop = frame[cy0:cy1, cx0:cx1].copy()
    crop[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0] = fill
    hole_mask = np.zeros(crop.shape[:2], np.uint8)
    hole_mask[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0] = holes.astype(np.uint8) * 255
    done = cv2.inpaint(crop, hole_mask, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    return done[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]


def remove(frames: Sequence[np.ndarray], boxes: Sequence[Box], feather_radius: int) -> tuple[list[np.ndarray], RemoveStats]:
    """Remove the object in ``boxes`` (one per frame) by background propagation + inpainting."""
    frames = check_frames(frames)
    boxes = [validate_bbox(b, frames[0].shape) for b in boxes]
    if len(boxes) != len(frames):
        raise InvalidRequest("bbox: need one box per frame")
    r = validate_feather_radius(feather_radius, frames[0].shape)
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    feature_masks = [_feature_mask(f.shape, b, r) for f, b in zip(frames, boxes)]
    links = _pair_homographies(grays, feature_masks)
    out, n_temporal, n_spatial = [], 0, 0
    for t in range(len(frames)):
        done, a, b = _fill_frame(t, frames, boxes, links, r)
        out.append(done)
        n_temporal += a
        n_spatial += b
    total = max(1, n_temporal + n_spatial)
    reliable = sum(link is not None for link in links) / len(links) if links else 0.0
    return out, RemoveStats(n_temporal / total, n_spatial / total, reliable)
