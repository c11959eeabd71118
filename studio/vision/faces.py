"""Frontal face detection: OpenCV's Haar cascade (``haarcascade_frontalface_default``).

Lip-sync, its motion signals and the consistency tracker all find faces through
:func:`detect_faces`; each keeps its own policy (how small a face may be, how many neighbours
a detection needs, whether the image is equalised first), given as arguments.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"

_local = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    # One classifier per thread: detectMultiScale is not documented as thread-safe.
    if not hasattr(_local, "cascade"):
        _local.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE_FILE)
    return _local.cascade


def detect_faces(grey: np.ndarray, *, min_side: int = 24, min_neighbors: int = 4, scale_factor: float = 1.1,
                 equalize: bool = False) -> np.ndarray:
    """Every frontal face in ``grey`` (a uint8 single-channel image) as an ``(n, 4)`` int64
    array of ``(x, y, w, h)`` boxes (``(0, 4)`` when there is none).

    ``min_side``: the smallest face side searched, in pixels; ``min_neighbors``: overlapping
    detections a face needs (more: fewer false positives, more misses); ``scale_factor``: the
    step between searched scales; ``equalize``: histogram-equalise first (helps in flat or
    dim light)."""
    image = cv2.equalizeHist(grey) if equalize else grey
    found = _cascade().detectMultiScale(image, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                        minSize=(min_side, min_side))
    return np.asarray(found, dtype=np.int64).reshape(-1, 4)
