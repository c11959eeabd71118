"""Consistency Tracker: finding an entity in a frame (detection on keyframes) and following
it between keyframes (tracking).

**Detection** (on frames ``0, N, 2N, ...`` for ``detect_every = N``), per entity:

1. features (references with at least :data:`MIN_FEATURES` ORB keypoints): ORB on the frame,
   brute-force Hamming matches with Lowe's ratio test (0.75), a RANSAC homography (3 px) -- or,
   when the homography's projected reference is not a plausible quad (not convex, or opposite
   sides differing by 1.5x or more: matches bunched in one corner let it extrapolate wildly),
   a RANSAC similarity transform. With at least :data:`MIN_INLIERS` inliers the box is the
   bounding box of the projected reference corners and
   ``confidence = inlier ratio x min(1, inliers / 20)``. A confident feature detection is
   taken as it is; otherwise the more confident of 2 and 3 wins.
2. face (``character`` with a face in the reference): frontal faces in the frame, each compared
   with the reference face (mean of the grey 64 px crops' normalised correlation and the HSV
   histogram similarity below); the best face is mapped to the whole entity box with the
   reference's face-to-image geometry and ``confidence`` = that similarity;
3. template (any entity; the one that works for small or low-texture references): the match
   score ``sqrt(max(0, NCC(grey)) x max(0, NCC(detail)))`` (:func:`match_map`; NCC =
   ``TM_CCOEFF_NORMED``, detail = grey minus its Gaussian blur, sigma
   :data:`HIGH_PASS_SIGMA`) of each pyramid level over the frame shrunk to
   :data:`DETECT_MAX_SIDE` px; the best place is refined at full resolution within a few
   pixels and at the pyramid scale times 2^(-1/8), 1 and 2^(1/8); ``confidence`` = its score.
   Colour is left out on purpose: an entity whose colours drift must still be found, so that
   the drift shows in its score.

A detection counts when ``confidence >= DETECTION_THRESHOLD`` (0.5). A keyframe where the
entity is not detected ends its track: detection is the authority, tracking only fills in.

**Tracking** (frames between keyframes): up to 40 Shi-Tomasi corners in the inner 80 % of the
box, pyramidal Lucas-Kanade to the next frame and back; points whose forward-backward error
is under 1 px move the box by their median shift and scale it by the median ratio of their
distances to their median point (limited to 0.9-1.1 per frame). ``confidence`` = the last
detection's confidence x the share of points kept. With fewer than :data:`MIN_TRACK_POINTS`
points (a flat object) the box follows the best template match score within half its size
of where it was (``confidence`` = that score). A frame whose confidence is under
:data:`TRACK_THRESHOLD` (0.3) ends the track until the next successful detection. Frames
without the entity are left out of its timeline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.genius.consistency.reference import (
    MIN_TEMPLATE_SIDE,
    TEMPLATE_SCALES,
    BBox,
    EntityModel,
    Frame,
    Template,
    colour_similarity,
    face_features,
    match_map,
    orb_detector,
    resized,
)
from studio.vision.faces import detect_faces
from studio.vision.tracking import track_points

REFINE_STEPS = (2 ** -0.125, 1.0, 2 ** 0.125)
DETECT_MAX_SIDE = 400
DETECTION_THRESHOLD = 0.5
TRACK_THRESHOLD = 0.3
MIN_FEATURES = 20
MIN_INLIERS = 10
MIN_TRACK_POINTS = 5



class FrameView:
    """A frame with the derived images detection needs, each computed at most once."""

    def __init__(self, rgb: Frame):
        self.rgb = rgb
        self.gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = self.gray.shape
        self.factor = min(1.0, DETECT_MAX_SIDE / max(h, w))
        self._small: Template | None = None
        self._orb: tuple[Any, Any] | None = None
        self._faces: np.ndarray | None = None

    @property
    def small(self) -> Template:
        """The grey frame shrunk to at most DETECT_MAX_SIDE px, with its detail."""
        if self._small is None:
            self._small = Template.of(self.gray if self.factor == 1.0 else resized(self.gray, self.factor))
        return self._small

    @property
    def orb(self) -> tuple[Any, Any]:
        if self._orb is None:
            self._orb = orb_detector(1500).detectAndCompute(self.gray, None)
        return self._orb

    @property
    def faces(self) -> np.ndarray:
        """Faces as full-resolution (x, y, w, h) rows."""
        if self._faces is None:
            self._faces = np.rint(detect_faces(self.small.gray, min_side=20) / self.factor).astype(np.int64)
        return self._faces


@dataclass
class Detection:
    """One entity found in one frame: its box, how sure, and by which method."""

    bbox: BBox
    confidence: float
    method: str


def _clip_box(box: BBox, shape: tuple[int, ...]) -> BBox | None:
    h, w = shape[:2]
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(w), box[0] + box[2]), min(float(h), box[1] + box[3])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


# ---------------------------------------------------------------------------------------------
# Detection


DETECTION_METHODS = ("features", "face", "template")


def detect(entity: EntityModel, view: FrameView, methods: Iterable[str] = DETECTION_METHODS) -> Detection | None:
    """The entity's box in one frame, or ``None`` (see the module docstring for the methods).

    ``methods`` restricts the methods tried (a subset of :data:`DETECTION_METHODS`); features
    that succeed are taken as they are, otherwise the more confident of face and template wins.
    """
    methods = set(methods)
    if methods - set(DETECTION_METHODS):
        raise InvalidRequest(f"detection methods must be among {', '.join(DETECTION_METHODS)}")
    if "features" in methods and entity.descriptors is not None and len(entity.keypoints) >= MIN_FEATURES:
        found = _detect_features(entity, view)
        if found is not None and found.confidence >= DETECTION_THRESHOLD:
            return found
    candidates = []
    if "template" in methods:
        candidates.append(_detect_template(entity, view))
    if "face" in methods and entity.face is not None:
        candidates.append(_detect_face(entity, view))
    best = max((c for c in candidates if c is not None), key=lambda c: c.confidence, default=None)
    return best if best is not None and best.confidence >= DETECTION_THRESHOLD else None


def _detect_features(entity: EntityModel, view: FrameView) -> Detection | None:
    frame_kp, frame_desc = view.orb
    if frame_desc is None or len(frame_kp) < MIN_INLIERS:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(entity.descriptors, frame_desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    src = entity.keypoints[[m.queryIdx for m in good]]
    dst = np.float32([frame_kp[m.trainIdx].pt for m in good])
    w, h = entity.size
    ref_corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    homography, mask = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    corners = cv2.perspectiveTransform(ref_corners, homography) if homography is not None else None
    if corners is None or not _plausible_quad(corners.reshape(-1, 2)):
        # Matches bunched in one part of the reference let a homography extrapolate wildly;
        # a similarity (rotation, scale, shift) cannot.
        similarity, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
        if similarity is None:
            return None
        corners = cv2.transform(ref_corners, similarity)
    inliers = int(mask.sum())
    if inliers < MIN_INLIERS:
        return None
    x, y, bw, bh = cv2.boundingRect(corners.astype(np.float32))
    box = _clip_box((float(x), float(y), float(bw), float(bh)), view.gray.shape)
    if box is None:
        return None
    confidence = inliers / len(good) * min(1.0, inliers / 20)
    return Detection(box, confidence, "features")


def _plausible_quad(quad: np.ndarray) -> bool:
    """A convex quad whose opposite sides differ by less than 1.5x (no extreme perspective)."""
    if not cv2.isContourConvex(quad.astype(np.float32)):
        return False
    sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1)
    if sides.min() < 2:
        return False
    return max(sides[0] / sides[2], sides[2] / sides[0], sides[1] / sides[3], sides[3] / sides[1]) < 1.5


def _base_scale(entity: EntityModel, shape: tuple[int, ...]) -> float:
    # The largest template must fit in the frame: a big reference is matched shrunk.
    w, h = entity.size
    return min(1.0, 0.9 * shape[0] / (h * TEMPLATE_SCALES[-1]), 0.9 * shape[1] / (w * TEMPLATE_SCALES[-1]))


def _detect_template(entity: EntityModel, view: FrameView) -> Detection | None:
    base = _base_scale(entity, view.gray.shape)
    small = view.small
    best = None
    for s, template in entity.pyramid(base * view.factor):
        th, tw = template.gray.shape
        if th > small.gray.shape[0] or tw > small.gray.shape[1]:
            continue
        _, score, _, loc = cv2.minMaxLoc(match_map(small, template))
        if best is None or score > best[0]:
            best = (score, base * s, loc)
    if best is None:
        return None
    _, scale, (x, y) = best
    w, h = entity.size
    coarse = (x / view.factor, y / view.factor, w * scale, h * scale)
    # Refine at full resolution, also between the pyramid's scales (2^(1/8) apart).
    margin = math.ceil(2 / view.factor) + 2
    tries = [_match_near(entity, view.gray, _scaled_box(coarse, k), margin) for k in REFINE_STEPS]
    box, score = max((t for t in tries if t is not None), key=lambda t: t[1], default=(coarse, best[0]))
    return Detection(box, float(np.clip(score, 0.0, 1.0)), "template")


def _scaled_box(box: BBox, k: float) -> BBox:
    x, y, w, h = box
    return (x + w * (1 - k) / 2, y + h * (1 - k) / 2, w * k, h * k)


def _match_near(entity: EntityModel, gray: np.ndarray, box: BBox, margin: int) -> tuple[BBox, float] | None:
    """Best :func:`match_map` score for a box of ``box``'s size within ``margin`` px of it."""
    tw, th = round(box[2]), round(box[3])
    if min(tw, th) < MIN_TEMPLATE_SIDE:
        return None
    h, w = gray.shape
    x0, y0 = max(0, round(box[0]) - margin), max(0, round(box[1]) - margin)
    x1, y1 = min(w, round(box[0]) + tw + margin), min(h, round(box[1]) + th + margin)
    if x1 - x0 < tw or y1 - y0 < th:
        return None
    window = Template.of(gray[y0:y1, x0:x1])
    _, score, _, (x, y) = cv2.minMaxLoc(match_map(window, entity.template_at(tw, th)))
    return (float(x0 + x), float(y0 + y), float(tw), float(th)), float(score)


def _detect_face(entity: EntityModel, view: FrameView) -> Detection | None:
    ref = entity.face
    best = None
    for box in view.faces:
        face_gray, hist = face_features(view.rgb, view.gray, box)
        ncc = float(cv2.matchTemplate(face_gray, ref.gray, cv2.TM_CCOEFF_NORMED)[0, 0])
        similarity = (max(0.0, ncc) + colour_similarity(hist, ref.histogram)) / 2
        if best is None or similarity > best[0]:
            best = (similarity, box)
    if best is None:
        return None
    similarity, (fx, fy, fw, _) = best
    rx, ry, rw, _ = ref.box
    s = float(fw) / rw
    w, h = entity.size
    box = _clip_box((float(fx) - rx * s, float(fy) - ry * s, w * s, h * s), view.gray.shape)
    return Detection(box, similarity, "face") if box is not None else None


# ---------------------------------------------------------------------------------------------
# Tracking between detections


@dataclass
class Track:
    """An entity being followed: where it is, and the confidence of the detection that started it."""

    bbox: BBox
    detection_confidence: float


def follow(entity: EntityModel, track: Track, prev_gray: np.ndarray, gray: np.ndarray) -> tuple[BBox, float] | None:
    """The track's box moved from ``prev_gray`` to ``gray``, with its confidence, or ``None``."""
    moved = _follow_points(track.bbox, prev_gray, gray)
    if moved is not None:
        box, kept = moved
        clipped = _clip_box(box, gray.shape)
        return (clipped, track.detection_confidence * kept) if clipped is not None else None
    _, _, w, h = track.bbox
    return _match_near(entity, gray, track.bbox, margin=round(max(w, h) / 2))


def _follow_points(box: BBox, prev_gray: np.ndarray, gray: np.ndarray) -> tuple[BBox, float] | None:
    x, y, w, h = box
    # Work on a window around the box: corners and pyramids of the whole frame are wasted work.
    margin = max(16.0, 0.5 * max(w, h))
    fh, fw = gray.shape
    x0, y0 = int(max(0, x - margin)), int(max(0, y - margin))
    x1, y1 = int(min(fw, x + w + margin)), int(min(fh, y + h + margin))
    before, after = prev_gray[y0:y1, x0:x1], gray[y0:y1, x0:x1]
    mask = np.zeros_like(before)
    mask[int(y - y0 + 0.1 * h): int(y - y0 + 0.9 * h) + 1, int(x - x0 + 0.1 * w): int(x - x0 + 0.9 * w) + 1] = 255
    p0 = cv2.goodFeaturesToTrack(before, maxCorners=40, qualityLevel=0.01, minDistance=3, mask=mask)
    if p0 is None or len(p0) < MIN_TRACK_POINTS:
        return None
    p1, ok = track_points(before, after, p0, max_level=2, max_error=1.0)
    if ok.sum() < MIN_TRACK_POINTS:
        return None
    a, b = p0.reshape(-1, 2)[ok], p1.reshape(-1, 2)[ok]
    shift = np.median(b - a, axis=0)
    da = np.linalg.norm(a - np.median(a, axis=0), axis=1)
    db = np.linalg.norm(b - np.median(b, axis=0), axis=1)
    spread = da > 2
    scale = float(np.clip(np.median(db[spread] / da[spread]), 0.9, 1.1)) if spread.sum() >= MIN_TRACK_POINTS else 1.0
    cx, cy = x + w / 2 + shift[0], y + h / 2 + shift[1]
    nw, nh = w * scale, h * scale
    return (cx - nw / 2, cy - nh / 2, nw, nh), float(ok.sum() / len(p0))

