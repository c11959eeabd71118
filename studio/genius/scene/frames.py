"""Frames as the scene's transition modules take them: ``(H, W, 3)`` uint8 RGB arrays, checked
once here and turned grey here (used by the renderers, the morph and the automatic choice)."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from studio.errors import InvalidRequest

Frame = np.ndarray


def check_frames(frames: Iterable[Frame]) -> None:
    """Refuse anything but uint8 RGB arrays of shape ``(H, W, 3)``."""
    for f in frames:
        if not (isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3):
            raise InvalidRequest("frames must be uint8 RGB arrays of shape (H, W, 3)")


def gray(img: Frame) -> np.ndarray:
    """The luma of an RGB frame."""
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
