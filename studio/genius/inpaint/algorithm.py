"""Video Inpainting, classical paths: remove, blend, background (with an image), extend.

The seed's ``POST /genius/inpaint/process`` takes ``mode``, ``bbox`` and ``feather_radius``.
This module holds the model-free algorithms; ``replace`` (and ``background`` / ``extend``
driven by a prompt) need a generative model (Wan VACE) and live elsewhere.
:func:`plan_inpaint` says which path a request takes, :func:`inpaint` runs the classical one.

Conventions
-----------
- Frames are ``uint8`` RGB arrays ``(H, W, 3)``, all the same shape.
- A box is ``(x, y, w, h)`` in pixels of frame 0; ``bbox`` must lie inside the frame, with
  ``w, h >= MIN_BOX_SIDE`` (4): smaller boxes carry too little texture to track.
- ``feather_radius`` is an int in ``[0, min(MAX_FEATHER_RADIUS, min(H, W) // 4)]`` (64 at most);
  beyond a quarter of the frame the "edge" band would be most of the picture.

Tracking (:func:`track_bbox`)
-----------------------------
opencv-python-headless 4.14 has no CSRT/KCF (those are opencv-contrib); its MIL/GOTURN/Nano/Vit
trackers either need model files or report no confidence. So the box is followed by

1. **prediction**: the previous box, the previous box moved by the last velocity, and the
   previous box moved by the median Lucas-Kanade displacement of up to 64 corners inside it
   (seeded with the last velocity; only corners that come back within ``FB_MAX_PX`` in a
   forward-backward check count, and at least 4 must);
2. **refinement**: template matching over the union of those predictions grown by
   ``max(8, 0.3 * max(w, h))`` pixels, against both the frame-0 crop (anchors against drift)
   and the last confident crop (follows appearance change), score map = elementwise max.
   The templates are the box without 15 % of each side (``TEMPLATE_TRIM``): a user's box is
   loose and the background in its margin does not move with the object. The score is
   normalised cross-correlation (``TM_CCOEFF_NORMED``), or ``1 - TM_SQDIFF_NORMED`` when the
   template is flat (grey std < 2, where NCC is undefined). When the best score is below
   ``LOST_SCORE`` (0.5) the search is repeated once in a window grown by a further
   ``max(w, h) + |velocity|`` (re-acquisition after a fast move or a short occlusion).
3. **confidence** = the peak score clipped to [0, 1]. Frame 0 is the user's box and the
   template *is* its crop, so its score is 1 by definition. Below ``LOST_SCORE`` the match is
   not trusted: the box coasts on the last prediction (flow, else velocity) and the template
   is not updated; the crop replaces the "recent" template when the score is at least
   ``UPDATE_SCORE`` (0.8).

The box keeps its size (no scale estimation) and is clipped to stay inside the frame.

Masks (:func:`make_masks`)
--------------------------
The hard mask is the box grown by ``dilate`` pixels (``MASK_DILATION_PX`` = 2 for remove, to
absorb tracking error and anti-aliased object edges; 0 for blend). With ``d`` the Euclidean
distance of a pixel to the hard mask (0 inside) and ``r = feather_radius``::

    mask(d) = 0.5 * (1 + cos(pi * min(d, r + 1) / (r + 1)))

so the mask is 1 on the hard mask, 0 from ``d >= r + 1`` on, and a smooth ramp in the *edge
band* ``0 < d < r + 1`` outside the box. Changing ``feather_radius`` therefore changes only
pixels in the band of the larger radius; ``r = 0`` gives the binary hard mask.

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

Blend (:func:`blend`)
---------------------
The overlay is resized to the box (``INTER_AREA``) and extended into the feather band by
edge replication. ``method="feather"``: ``out = mask * overlay + (1 - mask) * frame`` with the
mask of the exact box (``dilate = 0``; an RGBA overlay's alpha multiplies the mask).
``method="poisson"``: ``cv2.seamlessClone`` (``NORMAL_CLONE``) over box + band with the overlay
as source inside the box and the frame itself in the band, so the colour mismatch at the box
edge is spread over the band (a wider ``feather_radius`` keeps more of the overlay's own
colours); then the same feathered composite, so pixels outside box + band are never touched.

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

Extend (:func:`extend`): a classical approximation of outpainting
------------------------------------------------------------------
The frame is placed centred on the target canvas (offset ``((TW - W) // 2, (TH - H) // 2)``),
the new border is filled by mirror reflection at the frame's edges (``BORDER_REFLECT_101``,
so edges continue across the seam) and cross-faded into a heavily blurred copy (Gaussian,
sigma = max(4, largest border / 2)) with weight ``1 - mask(d)`` (the cosine ramp above with
``r + 1 = ramp``), ``d`` = distance to the original, ``ramp = max(8, largest border // 2)``:
sharp reflection at the seam, all blur from ``ramp`` pixels out. It invents no content: it is a backdrop
that keeps the colours and light of the edges. The VACE model path does real outpainting.
The original pixels are copied unchanged; the target must be even and at least the frame size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.vision.tracking import track_points

Box = tuple[int, int, int, int]

MODES = ("remove", "replace", "blend", "background", "extend")
# Modes with a model-free path, and the inputs it needs (besides frames).
CLASSICAL_MODES: dict[str, str] = {
    "remove": "bbox",
    "blend": "bbox + overlay image",
    "background": "bbox + background image",
    "extend": "target_size",
}

MIN_BOX_SIDE = 4
MAX_FEATHER_RADIUS = 64
MASK_DILATION_PX = 2
LOST_SCORE = 0.5
TEMPLATE_TRIM = 0.15
UPDATE_SCORE = 0.8
MIN_INLIERS = 15
MAX_CORNERS = 200
FB_MAX_PX = 0.5
LK_LEVELS = 4  # pyramid levels of the point tracker: an object or the camera may move fast
MAX_NEIGHBOURS = 30
INPAINT_RADIUS = 5
GRABCUT_MAX_SIDE = 200
MAX_EXTEND_FACTOR = 4
MAX_EXTEND_SIDE = 4096


# --------------------------------------------------------------------------- planning


def plan_inpaint(mode: str, has_prompt: bool, has_image: bool, model_available: bool = False) -> Literal["classical", "model"]:
    """Which path a request takes: ``"classical"`` (this module) or ``"model"`` (Wan VACE).

    - ``remove``: model when a VACE model is loaded (it synthesises plausible unseen
      background), else classical (propagation + spatial inpaint).
    - ``replace``: always model; needs a prompt or a reference image.
    - ``blend``: classical; needs the overlay image.
    - ``background``: classical with an image (its pixels are the answer), model with only a
      prompt; needs one of them.
    - ``extend``: model with a prompt or when a VACE model is loaded, else classical.

    Raises ``InvalidRequest`` naming the field for an unknown mode or a missing input.
    """
    if mode not in MODES:
        raise InvalidRequest(f"mode: must be one of {', '.join(MODES)} (got {mode!r})")
    if mode == "replace":
        if not (has_prompt or has_image):
            raise InvalidRequest("prompt: mode 'replace' needs a prompt (or a reference image) describing the replacement")
        return "model"
    if mode == "blend":
        if not has_image:
            raise InvalidRequest("overlay: mode 'blend' needs an overlay image")
        return "classical"
    if mode == "background":
        if has_image:
            return "classical"
        if has_prompt:
            return "model"
        raise InvalidRequest("background: mode 'background' needs a background image or a prompt")
    if mode == "extend":
        return "model" if (has_prompt or model_available) else "classical"
    return "model" if model_available else "classical"


# --------------------------------------------------------------------------- validation


def _check_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    frames = list(frames)
    if not frames:
        raise InvalidRequest("frames: the video has no frames")
    shape = frames[0].shape
    if len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 16:
        raise InvalidRequest(f"frames: expected RGB frames (H, W, 3) of at least 16x16, got {shape}")
    for f in frames:
        if f.shape != shape or f.dtype != np.uint8:
            raise InvalidRequest("frames: all frames must be uint8 and the same size")
    return frames


def validate_bbox(bbox: Sequence[int], frame_shape: tuple[int, ...]) -> Box:
    """Check ``bbox = (x, y, w, h)``: four integers, ``w, h >= 4``, inside the frame."""
    try:
        vals = [int(v) for v in bbox]
        ok = len(vals) == 4 and all(float(v) == int(v) for v in bbox)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidRequest("bbox: must be four integers [x, y, width, height]")
    x, y, w, h = vals
    height, width = frame_shape[:2]
    if w < MIN_BOX_SIDE or h < MIN_BOX_SIDE:
        raise InvalidRequest(f"bbox: width and height must be at least {MIN_BOX_SIDE} px (got {w}x{h})")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise InvalidRequest(f"bbox: [{x}, {y}, {w}, {h}] is not inside the {width}x{height} frame")
    return x, y, w, h


def validate_feather_radius(feather_radius: int, frame_shape: tuple[int, ...]) -> int:
    """Check ``0 <= feather_radius <= min(64, min(H, W) // 4)``."""
    limit = min(MAX_FEATHER_RADIUS, min(frame_shape[:2]) // 4)
    try:
        integral = not isinstance(feather_radius, bool) and float(feather_radius).is_integer()
    except (TypeError, ValueError):
        integral = False
    if not integral:
        raise InvalidRequest("feather_radius: must be an integer number of pixels")
    r = int(feather_radius)
    if not 0 <= r <= limit:
        raise InvalidRequest(f"feather_radius: must be between 0 and {limit} px for this frame size (got {r})")
    return r


def _check_image(image: np.ndarray, field: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InvalidRequest(f"{field}: expected a uint8 RGB or RGBA image")
    if min(image.shape[:2]) < 2:
        raise InvalidRequest(f"{field}: image is empty")
    return np.dstack([image] * 3) if image.ndim == 2 else image


# --------------------------------------------------------------------------- tracking


@dataclass(frozen=True)
class Track:
    """A box per frame and the tracker's confidence in it (see module docstring)."""

    boxes: list[Box]
    confidences: list[float]
    method: str = "lk-median+template-ncc"


def _clip_box(x: float, y: float, w: int, h: int, width: int, height: int) -> Box:
    return int(np.clip(round(x), 0, width - w)), int(np.clip(round(y), 0, height - h)), w, h


def _flow_shift(prev: np.ndarray, cur: np.ndarray, box: Box, velocity: tuple[float, float]) -> tuple[float, float] | None:
    """Median LK displacement of corners inside ``box`` that survive a forward-backward check
    (back within FB_MAX_PX); the last velocity seeds the search. None with fewer than 4."""
    x, y, w, h = box
    pts = cv2.goodFeaturesToTrack(prev[y:y + h, x:x + w], 64, 0.01, 3)
    if pts is None or len(pts) < 4:
        return None
    pts = (pts + np.float32([x, y])).astype(np.float32)
    seed = pts + np.float32(velocity)
    fwd, ok = track_points(prev, cur, pts, initial=seed, max_level=LK_LEVELS, max_error=FB_MAX_PX)
    if ok.sum() < 4:
        return None
    d = np.median((fwd - pts)[ok].reshape(-1, 2), axis=0)
    return float(d[0]), float(d[1])


def _match_scores(window: np.ndarray, template: np.ndarray) -> np.ndarray:
    if template.std() < 2.0:
        return 1.0 - cv2.matchTemplate(window, template, cv2.TM_SQDIFF_NORMED)
    return cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)


def _inner(box: Box) -> Box:
    """The box without TEMPLATE_TRIM of each side: a user's box is loose, and the background
    in its margin does not move with the object."""
    x, y, w, h = box
    dx, dy = int(TEMPLATE_TRIM * w), int(TEMPLATE_TRIM * h)
    return x + dx, y + dy, w - 2 * dx, h - 2 * dy


def _search(cur: np.ndarray, templates: list[np.ndarray], area: tuple[int, int, int, int]) -> tuple[float, int, int]:
    """Best (score, x, y) of the templates' top-left corner inside ``area`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = area
    window = cur[y0:y1, x0:x1]
    th, tw = templates[0].shape
    if window.shape[0] < th or window.shape[1] < tw:
        return -1.0, x0, y0
    scores = np.maximum.reduce([_match_scores(window, t) for t in templates])
    _, peak, _, loc = cv2.minMaxLoc(scores)
    return float(peak), x0 + loc[0], y0 + loc[1]


def _grow(boxes: list[Box], margin: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The union of ``boxes`` grown by ``margin``, clipped to the frame, as (x0, y0, x1, y1)."""
    x0 = max(0, min(b[0] for b in boxes) - margin)
    y0 = max(0, min(b[1] for b in boxes) - margin)
    x1 = min(width, max(b[0] + b[2] for b in boxes) + margin)
    y1 = min(height, max(b[1] + b[3] for b in boxes) + margin)
    return x0, y0, x1, y1


def track_bbox(frames: Sequence[np.ndarray], bbox: Sequence[int]) -> Track:
    """Follow ``bbox`` (given on frame 0) through ``frames``: one box and confidence per frame."""
    frames = _check_frames(frames)
    height, width = frames[0].shape[:2]
    box = validate_bbox(bbox, frames[0].shape)
    w, h = box[2:]
    ix, iy, iw, ih = _inner(box)
    off = (ix - box[0], iy - box[1])
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    anchor = grays[0][iy:iy + ih, ix:ix + iw].copy()
    recent = anchor
    boxes, confidences = [box], [1.0]
    velocity = (0.0, 0.0)
    margin = max(8, int(np.ceil(0.3 * max(w, h))))
    for prev, cur in pairwise(grays):
        last = boxes[-1]
        guesses = [last, _clip_box(last[0] + velocity[0], last[1] + velocity[1], w, h, width, height)]
        shift = _flow_shift(prev, cur, last, velocity)
        if shift is not None:
            guesses.append(_clip_box(last[0] + shift[0], last[1] + shift[1], w, h, width, height))
        inner = [_inner(g) for g in guesses]
        score, mx, my = _search(cur, [anchor, recent], _grow(inner, margin, width, height))
        if score < LOST_SCORE:  # lost: look again in a wide window before giving up
            wide = margin + max(w, h) + int(np.hypot(*velocity))
            score, mx, my = max((score, mx, my), _search(cur, [anchor, recent], _grow(inner, wide, width, height)))
        score = float(np.clip(score, 0.0, 1.0))
        found = _clip_box(mx - off[0], my - off[1], w, h, width, height) if score >= LOST_SCORE else guesses[-1]
        if score >= UPDATE_SCORE:
            fx, fy = found[0] + off[0], found[1] + off[1]
            recent = cur[fy:fy + ih, fx:fx + iw].copy()
        velocity = (float(found[0] - last[0]), float(found[1] - last[1]))
        boxes.append(found)
        confidences.append(score)
    return Track(boxes, confidences)


# --------------------------------------------------------------------------- masks


def _ramp(d: np.ndarray, r: int) -> np.ndarray:
    """1 at d = 0, smooth cosine fall to 0 at d = r + 1 (see module docstring)."""
    return (0.5 * (1.0 + np.cos(np.pi * np.minimum(d, r + 1) / (r + 1)))).astype(np.float32)


def _distance_to_rect(roi: tuple[int, int, int, int], rect: tuple[int, int, int, int]) -> np.ndarray:
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


def _soft_mask_roi(frame_shape: tuple[int, ...], box: Box, r: int, dilate: int) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The feathered mask on its support only: (roi x0, y0, x1, y1), soft mask, hard mask."""
    height, width = frame_shape[:2]
    x, y, w, h = box
    hard = max(0, x - dilate), max(0, y - dilate), min(width, x + w + dilate), min(height, y + h + dilate)
    roi = max(0, hard[0] - r - 1), max(0, hard[1] - r - 1), min(width, hard[2] + r + 1), min(height, hard[3] + r + 1)
    d = _distance_to_rect(roi, hard)
    return roi, _ramp(d, r), d == 0


def make_masks(frame_shape: tuple[int, ...], boxes: Sequence[Box], feather_radius: int, dilate: int = MASK_DILATION_PX) -> list[np.ndarray]:
    """Per-frame float32 masks (H, W) in [0, 1]: 1 on the box grown by ``dilate``, a cosine
    ramp over the ``feather_radius`` band outside it, 0 beyond."""
    r = validate_feather_radius(feather_radius, frame_shape)
    masks = []
    for box in boxes:
        (x0, y0, x1, y1), soft, _ = _soft_mask_roi(frame_shape, box, r, dilate)
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


def _composite(frame: np.ndarray, fill: np.ndarray, soft: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """``mask * fill + (1 - mask) * frame`` on the roi; the rest of ``frame`` is copied."""
    x0, y0, x1, y1 = roi
    out = frame.copy()
    out[y0:y1, x0:x1] = cv2.blendLinear(np.ascontiguousarray(fill), np.ascontiguousarray(frame[y0:y1, x0:x1]), soft, 1.0 - soft)
    return out


# --------------------------------------------------------------------------- remove


@dataclass(frozen=True)
class RemoveStats:
    """Where the removed region's pixels came from (fractions of all hard-mask pixels)."""

    temporal_fraction: float
    spatial_fraction: float
    reliable_links: float


def _feature_mask(frame_shape: tuple[int, ...], box: Box, r: int) -> np.ndarray:
    mask = np.full(frame_shape[:2], 255, np.uint8)
    (x0, y0, x1, y1), _, _ = _soft_mask_roi(frame_shape, box, r, MASK_DILATION_PX)
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
    roi, soft, hard = _soft_mask_roi(frame.shape, boxes[t], r, MASK_DILATION_PX)
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
    return _composite(frame, fill, soft, roi), n_hard - n_spatial, n_spatial


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
    frames = _check_frames(frames)
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


# --------------------------------------------------------------------------- blend


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
    frames = _check_frames(frames)
    boxes = [validate_bbox(b, frames[0].shape) for b in boxes]
    r = validate_feather_radius(feather_radius, frames[0].shape)
    if method not in ("feather", "poisson"):
        raise InvalidRequest(f"method: must be 'feather' or 'poisson' (got {method!r})")
    overlay = _check_image(overlay_image, "overlay")
    rgb, alpha = overlay[..., :3], (overlay[..., 3] if overlay.shape[2] == 4 else None)
    out = []
    for frame, box in zip(frames, boxes):
        roi, soft, hard = _soft_mask_roi(frame.shape, box, r, 0)
        canvas = _overlay_canvas(rgb, box, roi, r)
        weight = soft
        if alpha is not None:
            weight = soft * _overlay_canvas(alpha[..., None], box, roi, r).astype(np.float32) / 255.0
        if method == "poisson":
            canvas = _poisson(frame, canvas, weight, hard, roi)
            weight = soft
        out.append(_composite(frame, canvas, weight, roi))
    return out


# --------------------------------------------------------------------------- background


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
    frames = _check_frames(frames)
    boxes = [validate_bbox(b, frames[0].shape) for b in boxes]
    masks = []
    for (x0, y0, x1, y1), fg in _segment_rois(frames, boxes):
        full = np.zeros(frames[0].shape[:2], bool)
        full[y0:y1, x0:x1] = fg
        masks.append(full)
    return masks


def cover_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``image`` to cover ``width x height`` (keeping its aspect) and centre-crop."""
    ih, iw = image.shape[:2]
    scale = max(width / iw, height / ih)
    rw, rh = max(width, round(iw * scale)), max(height, round(ih * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (rw, rh), interpolation=interp)
    ox, oy = (rw - width) // 2, (rh - height) // 2
    return resized[oy:oy + height, ox:ox + width]


def replace_background(frames: Sequence[np.ndarray], boxes: Sequence[Box], background_image: np.ndarray,
                       feather_radius: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Keep the segmented object, put ``background_image`` behind it: (frames, fg masks)."""
    frames = _check_frames(frames)
    r = validate_feather_radius(feather_radius, frames[0].shape)
    height, width = frames[0].shape[:2]
    new_bg = cover_resize(_check_image(background_image, "background")[..., :3], width, height)
    boxes = [validate_bbox(b, frames[0].shape) for b in boxes]
    out, masks = [], []
    for frame, (roi, fg) in zip(frames, _segment_rois(frames, boxes)):
        x0, y0, x1, y1 = roi
        d_in = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        alpha = np.where(fg, 1.0 - _ramp(d_in, r), 0.0).astype(np.float32)
        result = new_bg.copy()
        result[y0:y1, x0:x1] = cv2.blendLinear(np.ascontiguousarray(frame[y0:y1, x0:x1]),
                                               np.ascontiguousarray(new_bg[y0:y1, x0:x1]), alpha, 1.0 - alpha)
        out.append(result)
        full = np.zeros(frame.shape[:2], bool)
        full[y0:y1, x0:x1] = fg
        masks.append(full)
    return out, masks


# --------------------------------------------------------------------------- extend


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
    frames = _check_frames(frames)
    height, width = frames[0].shape[:2]
    tw, th = validate_target_size((target_width, target_height), frames[0].shape)
    left, top = (tw - width) // 2, (th - height) // 2
    right, bottom = tw - width - left, th - height - top
    border = max(left, right, top, bottom)
    if border == 0:
        return [f.copy() for f in frames], (0, 0)
    sigma = max(4.0, border / 2)
    ramp = int(max(8, border // 2))
    d = _distance_to_rect((0, 0, tw, th), (left, top, left + width, top + height))
    sharp = _ramp(d, ramp - 1)  # 1 on the original, 0 (all blur) from d >= ramp
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


# --------------------------------------------------------------------------- dispatcher


def inpaint(mode: str, frames: Sequence[np.ndarray], *, bbox: Sequence[int] | None = None, feather_radius: int = 0,
            overlay: np.ndarray | None = None, background: np.ndarray | None = None,
            target_size: Sequence[int] | None = None, blend_method: Literal["feather", "poisson"] = "feather"
            ) -> tuple[list[np.ndarray], dict]:
    """Run the classical path of ``mode``; returns (frames, info).

    info: ``mode``, ``path`` ("classical"), ``method``, ``frames``, ``elapsed_s`` (wall time of
    this call), and per mode: ``boxes`` (tracked, one per frame), ``track_confidence_min`` /
    ``_mean``, ``feather_radius``; remove: ``temporal_fraction``, ``spatial_fraction``,
    ``reliable_links``; background: ``foreground_fraction_mean`` (segmented pixels / frame
    pixels); extend: ``target_size``, ``offset``. Requests without a classical path raise
    ``InvalidRequest`` naming ``mode`` (route them to the model path via :func:`plan_inpaint`).
    """
    started = time.perf_counter()
    if mode in MODES and mode not in CLASSICAL_MODES:
        raise InvalidRequest(f"mode: {mode!r} has no classical path; it needs a prompt and the Wan VACE model")
    has_image = overlay is not None if mode == "blend" else background is not None
    plan_inpaint(mode, has_prompt=False, has_image=has_image)  # unknown mode / missing image
    frames = _check_frames(frames)
    info: dict = {"mode": mode, "path": "classical", "frames": len(frames)}
    if mode == "extend":
        if target_size is None:
            raise InvalidRequest("target_size: mode 'extend' needs [width, height]")
        out, offset = extend(frames, *target_size)
        info.update(method="reflect+blur", target_size=[out[0].shape[1], out[0].shape[0]], offset=list(offset))
    else:
        if bbox is None:
            raise InvalidRequest(f"bbox: mode {mode!r} needs a bbox [x, y, width, height]")
        r = validate_feather_radius(feather_radius, frames[0].shape)
        track = track_bbox(frames, bbox)
        info.update(boxes=[list(b) for b in track.boxes], track_method=track.method, feather_radius=r,
                    track_confidence_min=min(track.confidences),
                    track_confidence_mean=float(np.mean(track.confidences)))
        out = _run_boxed(mode, frames, track.boxes, r, overlay, background, blend_method, info)
    info["elapsed_s"] = time.perf_counter() - started
    return out, info


def _run_boxed(mode: str, frames: list[np.ndarray], boxes: list[Box], r: int, overlay: np.ndarray | None,
               background: np.ndarray | None, blend_method: str, info: dict) -> list[np.ndarray]:
    if mode == "remove":
        out, stats = remove(frames, boxes, r)
        info.update(method="homography-propagation+telea", temporal_fraction=stats.temporal_fraction,
                    spatial_fraction=stats.spatial_fraction, reliable_links=stats.reliable_links)
        return out
    if mode == "blend":
        info["method"] = blend_method
        return blend(frames, boxes, overlay, r, blend_method)
    out, masks = replace_background(frames, boxes, background, r)
    info.update(method="grabcut", foreground_fraction_mean=float(np.mean([m.mean() for m in masks])))
    return out
