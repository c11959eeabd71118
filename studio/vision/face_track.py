"""One face followed through a clip: the face box of every frame, from the Haar detector
(``studio.vision.faces``) on a few sampled frames, or from the user's ``face_region``.

Lip-Sync (the mouth to animate) and the Animate model paths of Lip-Sync and V2V (the face to
repaint and drive) follow faces through this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from scipy.ndimage import median_filter

from studio.errors import InvalidRequest
from studio.vision.faces import detect_faces

FACE_MIN_FRACTION = 0.15
FACE_SAMPLES = 8
DETECT_MAX_SIDE = 360
MIN_FACE_PX = 8


def detect_face(frame: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest frontal face in an RGB frame as ``(x, y, w, h)`` pixels, or None.

    OpenCV's Haar cascade (frontalface_default) on the histogram-equalised grey image, scale
    step 1.1, at least 5 neighbours, faces at least ``max(24, 15% of the shorter side)`` px
    (a smaller face has a mouth too small to animate).
    Frames whose shorter side exceeds 360 px are searched at that size (faces that small in
    the frame are not worth animating) and the box is scaled back.
    """
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, DETECT_MAX_SIDE / min(grey.shape))
    if scale < 1.0:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    side = max(24, round(FACE_MIN_FRACTION * min(grey.shape)))
    faces = detect_faces(grey, min_side=side, min_neighbors=5, equalize=True)
    if len(faces) == 0:
        return None
    box = max(faces, key=lambda b: b[2] * b[3])
    x, y, w, h = (round(v / scale) for v in box)
    return x, y, w, h


def track_face(frames: Sequence[np.ndarray], face_region: Sequence[float] | None = None) -> np.ndarray:
    """Face box ``(x, y, w, h)`` for every frame, as an ``(n, 4)`` float array.

    ``face_region`` (pixels, from the user) is used for every frame when given. Otherwise the
    face is detected on up to ``FACE_SAMPLES`` evenly spaced frames; detections whose centre
    lies more than half a face size from the median centre are dropped as false positives, the
    rest are median-filtered over 3 neighbouring detections and linearly interpolated between
    detections, so the box moves smoothly. Raises ``InvalidRequest`` when no face is found.
    """
    height, width = frames[0].shape[:2]
    if face_region is not None:
        return np.tile(_validate_face_region(face_region, width, height), (len(frames), 1))
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), FACE_SAMPLES)).round().astype(int))
    found = [(i, box) for i in picks if (box := detect_face(frames[i])) is not None]
    if not found:
        raise InvalidRequest("no face found in the video; pass face_region [x, y, width, height] in pixels")
    index = np.array([i for i, _ in found])
    boxes = np.array([box for _, box in found], dtype=np.float64)
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    size = np.median(boxes[:, 2:], axis=0)
    offset = np.max(np.abs(centres - np.median(centres, axis=0)) / size, axis=1)
    keep = (offset <= 0.5) | (offset == offset.min())  # two far-apart detections: keep one
    index, boxes = index[keep], median_filter(boxes[keep], size=(3, 1), mode="nearest")
    every = np.arange(len(frames))
    return np.stack([np.interp(every, index, boxes[:, k]) for k in range(4)], axis=1)


def face_region_from_corners(corners: list[int], width: int, height: int) -> tuple[int, int, int, int]:
    """The API's ``[x1, y1, x2, y2]`` face box as ``(x, y, w, h)``: at least ``MIN_FACE_PX``
    each way, and that much of it inside the ``width`` x ``height`` video."""
    x1, y1, x2, y2 = corners
    least = MIN_FACE_PX
    if x2 - x1 < least or y2 - y1 < least:
        raise InvalidRequest(f"face_region: [x1, y1, x2, y2] must have x2 - x1 and y2 - y1 of at least {least} px, "
                             f"got {corners}")
    if min(x2, width) - max(x1, 0) < least or min(y2, height) - max(y1, 0) < least:
        raise InvalidRequest(f"face_region: {corners} lies outside the {width}x{height} video")
    return x1, y1, x2 - x1, y2 - y1


def _validate_face_region(face_region: Sequence[float], width: int, height: int) -> np.ndarray:
    try:
        box = np.asarray(face_region, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidRequest("face_region must be four numbers [x, y, width, height] in pixels") from None
    if box.size != 4 or not np.all(np.isfinite(box)) or box[2] < MIN_FACE_PX or box[3] < MIN_FACE_PX:
        raise InvalidRequest(f"face_region must be [x, y, width, height] in pixels with width and height "
                             f">= {MIN_FACE_PX}, got {list(face_region)}")
    visible_w = min(box[0] + box[2], width) - max(box[0], 0)
    visible_h = min(box[1] + box[3], height) - max(box[1], 0)
    if visible_w < MIN_FACE_PX or visible_h < MIN_FACE_PX:
        raise InvalidRequest(f"face_region {list(face_region)} lies outside the {width}x{height} video")
    return box
