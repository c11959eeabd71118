"""Following the user's box through the clip: one box and a confidence per frame.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import cv2
import numpy as np

from studio.genius.inpaint.checks import Box, check_frames, validate_bbox
from studio.vision.tracking import track_points

LOST_SCORE = 0.5
TEMPLATE_TRIM = 0.15
UPDATE_SCORE = 0.8
FB_MAX_PX = 0.5
LK_LEVELS = 4  # pyramid levels of the point tracker: an object or the camera may move fast


@dataclass(frozen=True)
class Track:
    """A box per frame and the tracker's confidence in it (see the module docstring)."""

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
    frames = check_frames(frames)
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
