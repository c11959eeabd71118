"""The inputs of the classical inpaint paths, checked: frames, boxes, the feather radius, images.

Conventions
-----------
- Frames are ``uint8`` RGB arrays ``(H, W, 3)``, all the same shape.
- A box is ``(x, y, w, h)`` in pixels of frame 0; ``bbox`` must lie inside the frame, with
  ``w, h >= MIN_BOX_SIDE`` (4): smaller boxes carry too little texture to track.
- ``feather_radius`` is an int in ``[0, min(MAX_FEATHER_RADIUS, min(H, W) // 4)]`` (64 at most);
  beyond a quarter of the frame the "edge" band would be most of the picture.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from studio.errors import InvalidRequest

Box = tuple[int, int, int, int]

MIN_BOX_SIDE = 4
MAX_FEATHER_RADIUS = 64


def check_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``frames`` as a list: at least one, all ``uint8`` RGB of one shape, at least 16x16."""
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


def check_image(image: np.ndarray, field: str) -> np.ndarray:
    """A ``uint8`` RGB or RGBA image (grey is made RGB); errors name ``field``."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InvalidRequest(f"{field}: expected a uint8 RGB or RGBA image")
    if min(image.shape[:2]) < 2:
        raise InvalidRequest(f"{field}: image is empty")
    return np.dstack([image] * 3) if image.ndim == 2 else image
