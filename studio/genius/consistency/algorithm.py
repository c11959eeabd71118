"""Consistency Tracker: find registered entities in every frame of a video and score how
consistently each one looks.

``POST /v1/genius/consistency/register-entity`` builds an :class:`EntityModel` from a reference
image (:meth:`EntityModel.from_reference`); ``POST /v1/genius/consistency/track/{task_id}`` runs
:func:`track` over the task's frames. Frames and references are ``(H, W, 3)`` uint8 RGB arrays.

**Reference.** Each side :data:`MIN_REFERENCE_SIDE`..:data:`MAX_REFERENCE_SIDE` px, and not flat
(grey-level standard deviation at least :data:`MIN_REFERENCE_CONTRAST`). The model
keeps ORB keypoints and descriptors of the reference, its HSV hue-saturation histogram, its
multi-scale template pyramid (the grey reference and its high-pass detail at
:data:`TEMPLATE_SCALES` of its size; built for the reference's own size at registration and
once per other frame size) and, for a ``character``, the largest frontal face OpenCV's Haar
cascade finds in it.

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

**Consistency score.** For each frame ``f`` where the entity was found, the box's crop is
compared with the reference:

- ``colour_f = 1 - Bhattacharyya distance`` of their HSV hue-saturation histograms
  (:func:`colour_similarity`; weakly saturated pixels share one "grey" bin because their hue
  is noise);
- ``structure_f = max(0, normalised cross-correlation)`` of their grey images at the
  reference template size (at most 64 px);
- ``similarity_f = (colour_f + structure_f) / 2``.

``appearance = mean(similarity_f)``, ``stability = 1 - min(1, 2 std(similarity_f))`` (a
similarity that jumps between two levels 1 apart has std 0.5), and
``consistency_score = appearance x stability``: high only for an entity that both looks like
its reference and keeps looking the same. The overall score is the mean of the entities'
scores weighted by the frames each is present in; ``None`` when no entity was found (nothing was
measured). All scores are in 0..1.

**Model path** (``track(..., appearance=embedder)``, an :class:`Embedder` such as
``studio.models.appearance.ImageEmbedder``: a CLIP vision encoder). Detection and tracking are
unchanged; only ``similarity_f`` differs: it is ``max(0, cos(e_crop, e_ref))``, the cosine of
the L2-normalised embeddings of the box's crop and of the whole reference, clipped at 0 (an
anti-correlated crop counts as no likeness at all, as a negative correlation does on the
classical path). Both images go through the same preparation: shrunk (``INTER_AREA``) so their
shorter side is at most the encoder's input side, then the encoder's own preprocessing (CLIP:
shorter side resized to the input side, centre square crop, so the ends of an elongated box are
not seen). ``appearance``, ``stability`` and ``consistency_score`` follow the same formulas.
CLIP image embeddings of unrelated pictures still have clearly positive cosines, so model-path
scores run higher than classical ones and are not comparable with them; compare runs of one
path. Crops are embedded in batches of :data:`EMBED_BATCH` (only those crops are held, never
frames). The embedding is not used to reject detections: there is no threshold calibrated on
measured data to reject with, and an untrained encoder would reject at random, so detection
stays the authority on both paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from studio.errors import InvalidRequest, StudioError
from studio.vision.faces import detect_faces
from studio.vision.tracking import track_points

Frame = np.ndarray
BBox = tuple[float, float, float, float]  # x, y, w, h in frame pixels

ENTITY_TYPES = ("character", "object", "animal", "vehicle", "prop")
MIN_REFERENCE_SIDE = 16
MAX_REFERENCE_SIDE = 2048
MIN_REFERENCE_CONTRAST = 2.0  # grey-level standard deviation

TEMPLATE_SCALES = (0.71, 0.84, 1.0, 1.19, 1.41)  # 2^(k/4): a 2x range around the reference size
MIN_TEMPLATE_SIDE = 12
REFINE_STEPS = (2 ** -0.125, 1.0, 2 ** 0.125)
HIGH_PASS_SIGMA = 2.0
DETECT_MAX_SIDE = 400
DETECTION_THRESHOLD = 0.5
TRACK_THRESHOLD = 0.3
MIN_FEATURES = 20
MIN_INLIERS = 10
MIN_TRACK_POINTS = 5
SCORE_TEMPLATE_SIDE = 64
FACE_SIDE = 64
GREY_SATURATION = 40  # HSV saturation (0-255) under which a pixel's hue is not trusted
HIST_BINS = (18, 8)  # hue x saturation
HISTOGRAM = "histogram"  # the classical appearance term's name in results
EMBED_BATCH = 32  # crops embedded per forward pass on the model path


def decode_reference_image(data: str | bytes) -> Frame:
    """An RGB array from a base64 string (``data:`` URLs accepted) or the raw bytes of a PNG,
    JPEG or WebP file. Raises ``InvalidRequest`` naming ``reference_image_base64``."""
    # The studio's one decoder of user images, so every hostile input fails here the same way.
    from studio.media.inputs import decode_base64_image, decode_image

    try:
        return decode_base64_image(data) if isinstance(data, str) else decode_image(data)
    except StudioError as error:
        raise InvalidRequest(f"reference_image_base64: {error.detail}") from None


# ---------------------------------------------------------------------------------------------
# Reference model


@dataclass
class FaceReference:
    box: tuple[int, int, int, int]  # x, y, w, h of the face in the reference
    gray: np.ndarray  # FACE_SIDE x FACE_SIDE
    histogram: np.ndarray


@dataclass(eq=False)
class EntityModel:
    """A registered entity: its reference and the features precomputed from it."""

    entity_type: str
    reference: Frame
    gray: np.ndarray
    histogram: np.ndarray
    keypoints: np.ndarray  # (N, 2) float32 keypoint positions in the reference
    descriptors: np.ndarray | None
    score_template: np.ndarray  # grey reference at most SCORE_TEMPLATE_SIDE px, for scoring
    face: FaceReference | None = None
    name: str = ""
    # Template pyramids by the size factor they were built for: {factor: [(scale, Template)]}.
    _pyramids: dict[float, list[tuple[float, Template]]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_reference(cls, image: Frame, entity_type: str = "object", name: str = "") -> EntityModel:
        """Validate the reference (RGB uint8, each side 16..2048 px, not flat; ``InvalidRequest``
        naming ``reference_image`` / ``entity_type`` otherwise) and precompute its features."""
        _check_reference(image)
        if entity_type not in ENTITY_TYPES:
            raise InvalidRequest(f"entity_type must be one of {', '.join(ENTITY_TYPES)}; got {entity_type!r}")
        image = np.ascontiguousarray(image)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        contrast = float(gray.std())
        if contrast < MIN_REFERENCE_CONTRAST:
            # Correlation is undefined on a flat image: it would "match" anywhere.
            raise InvalidRequest(f"reference_image is flat (grey level std {contrast:.1f} < "
                                 f"{MIN_REFERENCE_CONTRAST}): there is nothing to recognise it by")
        keypoints, descriptors = _orb(500).detectAndCompute(gray, None)
        points = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
        model = cls(entity_type=entity_type, reference=image, gray=gray, histogram=hs_histogram(image),
                    keypoints=points, descriptors=descriptors, score_template=_score_size(gray), name=name,
                    face=_reference_face(image, gray) if entity_type == "character" else None)
        model.pyramid(1.0)  # the reference's own size, the usual case
        return model

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the reference."""
        return self.reference.shape[1], self.reference.shape[0]

    def pyramid(self, factor: float) -> list[tuple[float, Template]]:
        """Templates at ``factor x TEMPLATE_SCALES`` of the reference size, built once per factor
        (one factor per frame size) and smaller ones than :data:`MIN_TEMPLATE_SIDE` left out."""
        key = round(factor, 4)
        if key not in self._pyramids:
            levels = [(s, self.template_at(self.size[0] * factor * s, self.size[1] * factor * s))
                      for s in TEMPLATE_SCALES]
            self._pyramids[key] = [(s, t) for s, t in levels if min(t.gray.shape) >= MIN_TEMPLATE_SIDE]
        return self._pyramids[key]

    def template_at(self, width: float, height: float) -> Template:
        """The reference as a template of ``width x height`` px."""
        size = (max(1, round(width)), max(1, round(height)))
        interp = cv2.INTER_AREA if size[0] < self.gray.shape[1] else cv2.INTER_LINEAR
        return Template.of(cv2.resize(self.gray, size, interpolation=interp))


@dataclass(frozen=True)
class Template:
    """A grey image and its high-pass detail, the two things matched."""

    gray: np.ndarray
    detail: np.ndarray

    @classmethod
    def of(cls, gray: np.ndarray) -> Template:
        return cls(gray, high_pass(gray))


def high_pass(gray: np.ndarray) -> np.ndarray:
    """``gray - GaussianBlur(gray, HIGH_PASS_SIGMA)`` as float32: the fine texture alone."""
    g = gray.astype(np.float32)
    return g - cv2.GaussianBlur(g, (0, 0), HIGH_PASS_SIGMA)


def match_map(image: Template, template: Template) -> np.ndarray:
    """Match score at every position: ``sqrt(max(0, NCC(grey)) x max(0, NCC(detail)))``
    (NCC = ``TM_CCOEFF_NORMED``). The grey term alone is fooled by smooth blobs shaped like a
    flat template; the detail term alone by texture of the wrong layout; a place must pass both."""
    plain = cv2.matchTemplate(image.gray, template.gray, cv2.TM_CCOEFF_NORMED)
    detail = cv2.matchTemplate(image.detail, template.detail, cv2.TM_CCOEFF_NORMED)
    return np.sqrt(np.maximum(plain, 0) * np.maximum(detail, 0))


def _check_reference(image: Any) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise InvalidRequest("reference_image must be an RGB image")
    h, w = image.shape[:2]
    if min(h, w) < MIN_REFERENCE_SIDE or max(h, w) > MAX_REFERENCE_SIDE:
        raise InvalidRequest(f"reference_image must be {MIN_REFERENCE_SIDE}..{MAX_REFERENCE_SIDE} px on each side, "
                             f"got {w}x{h}")


def _orb(n: int) -> cv2.ORB:
    return cv2.ORB_create(nfeatures=n)


def _resized(gray: np.ndarray, s: float) -> np.ndarray:
    h, w = gray.shape
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def _score_size(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    s = min(1.0, SCORE_TEMPLATE_SIDE / max(h, w))
    return _resized(gray, s) if s < 1 else gray


def hs_histogram(img: Frame) -> np.ndarray:
    """Normalised HSV histogram: 18 hue x 8 saturation bins, with every pixel of saturation
    under :data:`GREY_SATURATION` counted in one shared grey bin (their hue is noise)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(HIST_BINS), [0, 180, GREY_SATURATION, 256])
    grey = float(np.count_nonzero(hsv[..., 1] < GREY_SATURATION))
    hist = np.append(hist.ravel(), grey).astype(np.float32)
    return hist / max(hist.sum(), 1.0)


def colour_similarity(hist_a: np.ndarray, hist_b: np.ndarray) -> float:
    """``1 - Bhattacharyya distance`` of two :func:`hs_histogram` histograms (1 = same colours)."""
    return float(np.clip(1.0 - cv2.compareHist(hist_a, hist_b, cv2.HISTCMP_BHATTACHARYYA), 0.0, 1.0))


def _face_features(image: Frame, gray: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    x, y, w, h = box
    face_gray = cv2.resize(gray[y:y + h, x:x + w], (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)
    return face_gray, hs_histogram(image[y:y + h, x:x + w])


def _reference_face(image: Frame, gray: np.ndarray) -> FaceReference | None:
    faces = detect_faces(gray)
    if len(faces) == 0:
        return None
    box = tuple(int(v) for v in max(faces, key=lambda f: f[2] * f[3]))
    face_gray, hist = _face_features(image, gray, box)
    return FaceReference(box=box, gray=face_gray, histogram=hist)


# ---------------------------------------------------------------------------------------------
# One frame, prepared once for every entity


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
            self._small = Template.of(self.gray if self.factor == 1.0 else _resized(self.gray, self.factor))
        return self._small

    @property
    def orb(self) -> tuple[Any, Any]:
        if self._orb is None:
            self._orb = _orb(1500).detectAndCompute(self.gray, None)
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
        face_gray, hist = _face_features(view.rgb, view.gray, box)
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
class _Track:
    bbox: BBox
    detection_confidence: float


def _follow(entity: EntityModel, track: _Track, prev_gray: np.ndarray, gray: np.ndarray) -> tuple[BBox, float] | None:
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


# ---------------------------------------------------------------------------------------------
# Scoring


def appearance_similarity(entity: EntityModel, frame: Frame, box: BBox) -> float:
    """``(colour + structure) / 2`` of the box's crop against the reference (module docstring)."""
    x, y, w, h = (round(v) for v in box)
    crop = frame[y:y + h, x:x + w]
    if crop.shape[0] < 2 or crop.shape[1] < 2:
        return 0.0
    th, tw = entity.score_template.shape
    crop_gray = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (tw, th), interpolation=cv2.INTER_AREA)
    structure = max(0.0, float(cv2.matchTemplate(crop_gray, entity.score_template, cv2.TM_CCOEFF_NORMED)[0, 0]))
    return (colour_similarity(hs_histogram(crop), entity.histogram) + structure) / 2


class Embedder(Protocol):
    """What the model path needs of an image encoder (``studio.models.appearance.ImageEmbedder``)."""

    model_id: str
    input_side: int  # side of the square the encoder sees; larger images are shrunk first

    def embed(self, images: Sequence[Frame]) -> np.ndarray:
        """``(n, d)`` L2-normalised float32 embeddings of RGB uint8 images."""
        ...


def _crop(frame: Frame, box: BBox) -> Frame | None:
    x, y, w, h = (round(v) for v in box)
    crop = frame[max(0, y):y + h, max(0, x):x + w]
    return crop if crop.shape[0] >= 2 and crop.shape[1] >= 2 else None


def encoder_input(image: Frame, side: int) -> Frame:
    """``image`` shrunk (``INTER_AREA``) so its shorter side is at most ``side`` px; a copy either way
    (a crop must not keep its whole frame alive while it waits for its batch)."""
    h, w = image.shape[:2]
    s = side / min(h, w)
    if s >= 1:
        return np.ascontiguousarray(image).copy()
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class _HistogramScores:
    """The classical term, computed as each box comes."""

    name = HISTOGRAM

    def __init__(self, names: Iterable[str]):
        self.values: dict[str, list[float]] = {n: [] for n in names}

    def add(self, name: str, entity: EntityModel, frame: Frame, box: BBox) -> None:
        self.values[name].append(appearance_similarity(entity, frame, box))

    def finish(self) -> dict[str, list[float]]:
        return self.values


class _EmbeddingScores:
    """The model path's term: ``max(0, cos)`` of crop and reference embeddings; crops wait in a
    batch of :data:`EMBED_BATCH` and their slots are filled when it is embedded."""

    def __init__(self, embedder: Embedder, entities: Mapping[str, EntityModel]):
        self.embedder = embedder
        self.name = embedder.model_id
        self.entities = entities
        self.values: dict[str, list[float]] = {n: [] for n in entities}
        self.pending: list[tuple[str, int, Frame]] = []
        self.references: dict[str, np.ndarray] | None = None

    def add(self, name: str, entity: EntityModel, frame: Frame, box: BBox) -> None:
        crop = _crop(frame, box)
        self.values[name].append(0.0)
        if crop is not None:
            self.pending.append((name, len(self.values[name]) - 1, encoder_input(crop, self.embedder.input_side)))
            if len(self.pending) >= EMBED_BATCH:
                self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        if self.references is None:
            names = list(self.entities)
            side = self.embedder.input_side
            embedded = self.embedder.embed([encoder_input(self.entities[n].reference, side) for n in names])
            self.references = dict(zip(names, embedded))
        embedded = self.embedder.embed([crop for _, _, crop in self.pending])
        for (name, slot, _), vector in zip(self.pending, embedded):
            self.values[name][slot] = float(np.clip(np.dot(vector, self.references[name]), 0.0, 1.0))
        self.pending = []

    def finish(self) -> dict[str, list[float]]:
        self._flush()
        return self.values


def _entity_score(similarities: list[float]) -> dict[str, Any]:
    if not similarities:
        return {"consistency_score": None, "appearance_similarity": None, "temporal_stability": None}
    values = np.asarray(similarities)
    appearance = float(np.clip(values.mean(), 0.0, 1.0))
    stability = float(np.clip(1.0 - 2.0 * values.std(), 0.0, 1.0))
    return {"consistency_score": appearance * stability, "appearance_similarity": appearance,
            "temporal_stability": stability}


# ---------------------------------------------------------------------------------------------
# The whole video


def _check_frame(frame: Any, index: int) -> None:
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
        raise InvalidRequest(f"frame {index} must be a uint8 RGB array of shape (H, W, 3)")


def track(frames: Iterable[Frame], entities: Mapping[str, EntityModel], detect_every: int = 5,
          appearance: Embedder | None = None) -> dict[str, Any]:
    """Track every entity through ``frames`` (streamed: only the previous frame is kept).

    ``appearance`` picks the similarity term of the score: ``None`` (the default) the classical
    ``(colour + structure) / 2``; an :class:`Embedder` the model path's ``max(0, cosine)`` of
    learned embeddings (module docstring). Detection and tracking are the same either way.

    Returns the seed's shape plus per-entity details::

        {"entities_tracked": entities found in at least one frame,
         "frames_analyzed": frames read,
         "consistency_score": overall score or None,
         "entity_timelines": {name: [{"frame", "bbox": [x, y, w, h], "confidence"}]},
         "entity_scores": {name: {"consistency_score", "appearance_similarity",
                                  "temporal_stability", "frames_present", "frames_tracked",
                                  "detections": {"features", "face", "template"}}},
         "appearance": "histogram" or the embedder's model_id,
         "detect_every": N, "thresholds": {...}}
    """
    if not isinstance(detect_every, int) or isinstance(detect_every, bool) or detect_every < 1:
        raise InvalidRequest(f"detect_every must be an integer >= 1, got {detect_every!r}")
    names = list(entities)
    timelines: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    scorer = _HistogramScores(names) if appearance is None else _EmbeddingScores(appearance, entities)
    methods = {n: {"features": 0, "face": 0, "template": 0} for n in names}
    tracked = dict.fromkeys(names, 0)
    tracks: dict[str, _Track | None] = dict.fromkeys(names)
    prev_gray = None
    index = -1
    for index, frame in enumerate(frames):
        _check_frame(frame, index)
        view = FrameView(np.ascontiguousarray(frame))
        if prev_gray is not None and view.gray.shape != prev_gray.shape:
            raise InvalidRequest(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, unlike the frames before it")
        keyframe = index % detect_every == 0
        for name in names:
            entity = entities[name]
            found = _locate(entity, view, tracks[name], prev_gray, keyframe)
            if found is None:
                tracks[name] = None
                continue
            box, confidence, method = found
            if method is None:
                tracked[name] += 1
                tracks[name].bbox = box
            else:
                methods[name][method] += 1
                tracks[name] = _Track(box, confidence)
            timelines[name].append({"frame": index, "bbox": [round(v) for v in box],
                                    "confidence": round(float(confidence), 4)})
            scorer.add(name, entity, view.rgb, box)
        prev_gray = view.gray
    return _result(names, timelines, scorer.finish(), methods, tracked, index + 1, detect_every, scorer.name)


def _locate(entity: EntityModel, view: FrameView, current: _Track | None, prev_gray: np.ndarray | None,
            keyframe: bool) -> tuple[BBox, float, str | None] | None:
    """(box, confidence, detection method or None when tracked) of the entity in this frame."""
    if keyframe:
        found = detect(entity, view)
        return (found.bbox, found.confidence, found.method) if found is not None else None
    if current is None or prev_gray is None:
        return None
    moved = _follow(entity, current, prev_gray, view.gray)
    if moved is None or moved[1] < TRACK_THRESHOLD:
        return None
    return moved[0], moved[1], None


def _result(names, timelines, similarities, methods, tracked, n_frames, detect_every,
            appearance: str = HISTOGRAM) -> dict[str, Any]:
    scores = {}
    for name in names:
        score = _entity_score(similarities[name])
        scores[name] = {**score, "frames_present": len(timelines[name]), "frames_tracked": tracked[name],
                        "detections": methods[name]}
    present = [n for n in names if timelines[n]]
    weights = [len(timelines[n]) for n in present]
    overall = (sum(scores[n]["consistency_score"] * w for n, w in zip(present, weights)) / sum(weights)
               if present else None)
    return {
        "entities_tracked": len(present),
        "frames_analyzed": n_frames,
        "consistency_score": overall,
        "entity_timelines": timelines,
        "entity_scores": scores,
        "appearance": appearance,
        "detect_every": detect_every,
        "thresholds": {"detection": DETECTION_THRESHOLD, "tracking": TRACK_THRESHOLD},
    }


# ---------------------------------------------------------------------------------------------
# Drawing


# Box colours (RGB), one per entity in the timelines' order.
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230)]


def annotate(frames: Iterable[Frame], timelines: Mapping[str, list[Mapping[str, Any]]]) -> Iterator[Frame]:
    """``frames`` with each entity's box and ``name confidence`` label drawn where its timeline
    has that frame (colours from an 8-colour palette in the timelines' order)."""
    by_frame: dict[int, list[tuple[str, Mapping[str, Any], tuple[int, int, int]]]] = {}
    for k, (name, entries) in enumerate(timelines.items()):
        for entry in entries:
            by_frame.setdefault(int(entry["frame"]), []).append((name, entry, PALETTE[k % len(PALETTE)]))
    for index, frame in enumerate(frames):
        marks = by_frame.get(index)
        if not marks:
            yield frame
            continue
        out = frame.copy()
        thickness = max(1, round(min(out.shape[:2]) / 200))
        font_scale = max(0.3, min(out.shape[:2]) / 600)
        for name, entry, colour in marks:
            x, y, w, h = (int(v) for v in entry["bbox"])
            cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, thickness)
            label = f"{name} {float(entry['confidence']):.2f}"
            cv2.putText(out, label, (x, max(10, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, thickness,
                        cv2.LINE_AA)
        yield out
