"""Consistency Tracker: the model of a registered entity, built once from its reference image.

**Reference.** Each side :data:`MIN_REFERENCE_SIDE`..:data:`MAX_REFERENCE_SIDE` px, and not flat
(grey-level standard deviation at least :data:`MIN_REFERENCE_CONTRAST`). The model
keeps ORB keypoints and descriptors of the reference, its HSV hue-saturation histogram, its
multi-scale template pyramid (the grey reference and its high-pass detail at
:data:`TEMPLATE_SCALES` of its size; built for the reference's own size at registration and
once per other frame size) and, for a ``character``, the largest frontal face OpenCV's Haar
cascade finds in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from studio.errors import InvalidRequest, StudioError
from studio.vision.faces import detect_faces

Frame = np.ndarray
BBox = tuple[float, float, float, float]  # x, y, w, h in frame pixels

ENTITY_TYPES = ("character", "object", "animal", "vehicle", "prop")
MIN_REFERENCE_SIDE = 16
MAX_REFERENCE_SIDE = 2048
MIN_REFERENCE_CONTRAST = 2.0  # grey-level standard deviation
TEMPLATE_SCALES = (0.71, 0.84, 1.0, 1.19, 1.41)  # 2^(k/4): a 2x range around the reference size
MIN_TEMPLATE_SIDE = 12
HIGH_PASS_SIGMA = 2.0
SCORE_TEMPLATE_SIDE = 64
FACE_SIDE = 64
GREY_SATURATION = 40  # HSV saturation (0-255) under which a pixel's hue is not trusted
HIST_BINS = (18, 8)  # hue x saturation


def decode_reference_image(data: str | bytes) -> Frame:
    """An RGB array from a base64 string (``data:`` URLs accepted) or the raw bytes of a PNG,
    JPEG or WebP file. Raises ``InvalidRequest`` naming ``reference_image_base64``."""
    # The studio's one decoder of user images, so every hostile input fails here the same way.
    from studio.media.inputs import decode_base64_image, decode_image

    try:
        return decode_base64_image(data) if isinstance(data, str) else decode_image(data)
    except StudioError as error:
        raise InvalidRequest(f"reference_image_base64: {error.detail}") from None




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
        keypoints, descriptors = orb_detector(500).detectAndCompute(gray, None)
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


def orb_detector(n: int) -> cv2.ORB:
    """OpenCV's ORB keeping at most ``n`` keypoints."""
    return cv2.ORB_create(nfeatures=n)


def resized(gray: np.ndarray, s: float) -> np.ndarray:
    """``gray`` scaled by ``s`` (area averaging when shrinking)."""
    h, w = gray.shape
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def _score_size(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    s = min(1.0, SCORE_TEMPLATE_SIDE / max(h, w))
    return resized(gray, s) if s < 1 else gray


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


def face_features(image: Frame, gray: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """A face box's grey :data:`FACE_SIDE` px crop and HSV histogram, as faces are compared."""
    x, y, w, h = box
    face_gray = cv2.resize(gray[y:y + h, x:x + w], (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)
    return face_gray, hs_histogram(image[y:y + h, x:x + w])


def _reference_face(image: Frame, gray: np.ndarray) -> FaceReference | None:
    faces = detect_faces(gray)
    if len(faces) == 0:
        return None
    box = tuple(int(v) for v in max(faces, key=lambda f: f[2] * f[3]))
    face_gray, hist = face_features(image, gray, box)
    return FaceReference(box=box, gray=face_gray, histogram=hist)

