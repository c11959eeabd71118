"""Lip-sync's mouth animation: the mouth of each frame re-shaped into its viseme, in place.

``mouth_region`` places the mouth in a face box from average frontal-face proportions,
``mouth_shapes`` turns the viseme track's parameters (plus an expression's biases) into a
deformation per frame, and ``animate_mouth`` warps each frame's mouth region by it; the
formulas are documented on each.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from studio.genius.lipsync.visemes import PP, VisemeTrack

# Face and mouth proportions (fractions of the face box; see ``mouth_region``).
MOUTH_CENTRE_Y = 0.81
MOUTH_HALF_WIDTH = 0.22
LIP_HALF_HEIGHT = 0.07
REGION_HALF_WIDTH = 0.38
REGION_ABOVE = 0.17
REGION_BELOW = 0.26
LIP_BAND = 2.3  # lip half-heights around the lip line that spread, purse and smile move
BAND_HALF_WIDTH = 1.5  # lip half-widths around the centre that they move
# Share of a parting taken by the lower lip: the jaw drops to open; both lips meet to press.
LOWER_SHARE_OPEN = 0.65
LOWER_SHARE_PRESS = 0.5

# Mouth cavity painted where the lips part (a dark red-brown, as lit from the front).
CAVITY_RGB = (62, 24, 28)
CAVITY_OPACITY = 0.9

# Expressions: biases added to every frame's mouth parameters, pauses included (the seed
# names "happy"; the others are the usual set). happy: corners up, lips spread; sad: corners
# down, lips narrower; surprised: mouth a little open and round; angry: lips pressed, corners down.
EXPRESSIONS = {
    "neutral": {"openness": 0.0, "width": 0.0, "rounding": 0.0, "closure": 0.0, "corner": 0.0},
    "happy": {"openness": 0.0, "width": 0.3, "rounding": 0.0, "closure": 0.0, "corner": 1.0},
    "sad": {"openness": 0.0, "width": -0.15, "rounding": 0.0, "closure": 0.0, "corner": -1.0},
    "surprised": {"openness": 0.3, "width": 0.0, "rounding": 0.3, "closure": 0.0, "corner": 0.0},
    "angry": {"openness": 0.0, "width": 0.1, "rounding": 0.0, "closure": 0.4, "corner": -0.5},
}
MAX_INTENSITY = 2.0


@dataclass(frozen=True)
class Mouth:
    """Mouth geometry in pixels: centre, lip half-width and half-height, and the warp region
    (``left``..``right``, ``top``..``bottom``; nothing outside it is ever changed)."""

    cx: float
    cy: float
    half_width: float
    lip_half_height: float
    left: float
    top: float
    right: float
    bottom: float
    face_height: float

    def box(self, frame_shape: tuple[int, ...] | None = None) -> tuple[int, int, int, int]:
        """The warp region as integer ``(x, y, w, h)``, clipped to the frame when its shape is given."""
        x0, y0 = int(np.floor(self.left)), int(np.floor(self.top))
        x1, y1 = int(np.ceil(self.right)) + 1, int(np.ceil(self.bottom)) + 1
        if frame_shape is not None:
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, frame_shape[1]), min(y1, frame_shape[0])
        return x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)


def mouth_region(face_bbox: Sequence[float]) -> Mouth:
    """The mouth inside a face box ``(x, y, w, h)`` from average frontal-face proportions.

    In a Haar frontal-face box (brows to just below the mouth) the mouth centre lies on the
    vertical mid-line at 81% of the box height; the lips are 44% of the box width wide and 14%
    of its height tall. The warp region reaches 38% of the width to each side of the centre,
    17% of the height above it (to below the nose) and 26% below it (over the chin, which
    drops with the jaw).
    """
    x, y, w, h = (float(v) for v in face_bbox)
    cx, cy = x + 0.5 * w, y + MOUTH_CENTRE_Y * h
    return Mouth(cx, cy, MOUTH_HALF_WIDTH * w, LIP_HALF_HEIGHT * h,
                 cx - REGION_HALF_WIDTH * w, cy - REGION_ABOVE * h,
                 cx + REGION_HALF_WIDTH * w, cy + REGION_BELOW * h, h)


# --- mouth animation ---------------------------------------------------------------------

@dataclass(frozen=True)
class MouthShape:
    """Deformation of one frame: horizontal lip scale, lip parting in px (negative presses the
    lips together), mouth-corner lift in px, and the opening's width relative to the lips."""

    scale_x: float
    parting: float
    corner: float
    opening_width: float

    @property
    def is_identity(self) -> bool:
        return self.scale_x == 1.0 and self.parting == 0.0 and self.corner == 0.0


def mouth_shapes(track: VisemeTrack, face_heights: np.ndarray, expression: str = "neutral",
                 intensity: float = 1.0) -> list[MouthShape]:
    """The deformation of every frame of ``track`` (``face_heights``: face box height per frame).

    With ``I`` = intensity, ``h`` the face height and the expression's biases
    (``EXPRESSIONS``) added to the track's parameters (clipped to 0..1, ``width`` to -1..1):

    - ``scale_x = 1 + I (0.22 width - 0.22 rounding)``: EE spreads the lips, OO purses them;
    - ``parting = I h (0.11 openness - 0.08 closure)`` px: the lips part by up to 11% of the
      face height (AA), or are pushed together by up to 8% (PP presses them shut, over the
      teeth of a smiling source, FF half as much); PP frames never part;
    - ``corner = 0.035 h I corner_bias`` px of mouth-corner lift (happy up, sad down);
    - ``opening_width = 0.95 - 0.45 rounding`` of the lip width (OO opens a small round hole).
    """
    bias = EXPRESSIONS[expression]
    closed = track.labels == PP
    openness = np.where(closed, 0.0, np.clip(track.openness + bias["openness"], 0, 1))
    width = np.clip(track.width + bias["width"], -1, 1)
    rounding = np.clip(track.rounding + bias["rounding"], 0, 1)
    closure = np.clip(track.closure + bias["closure"], 0, 1)
    scale_x = 1 + intensity * (0.22 * width - 0.22 * rounding)
    parting = intensity * face_heights * (0.11 * openness - 0.08 * closure)
    corner = 0.035 * face_heights * intensity * bias["corner"]
    opening_width = 0.95 - 0.45 * rounding
    return [MouthShape(float(sx), float(p), float(c), float(o))
            for sx, p, c, o in zip(scale_x, parting, np.broadcast_to(corner, parting.shape), opening_width)]


def animate_mouth(frames: Sequence[np.ndarray], fps: float, track: VisemeTrack, face_boxes: np.ndarray,
                  expression: str = "neutral", intensity: float = 1.0) -> Iterator[np.ndarray]:
    """Yield each frame with its mouth re-shaped into the frame's viseme.

    ``face_boxes``: one ``(x, y, w, h)`` for all frames or an ``(n, 4)`` array. Frames whose
    deformation is the identity (``rest`` with the neutral expression, or intensity 0) are
    yielded as they came, untouched. Others are warped inside the mouth region only
    (``mouth_region``) by a backward map (``cv2.remap``, bilinear) built from three smooth
    displacements, each exactly zero at the region border:

    - lips part or press along a lens (widest at the centre, zero at the corners), fading out
      towards the region's top and bottom; the lower lip and jaw take 65% of an opening,
      both lips half of a press;
    - the lips scale horizontally about the mouth centre (spread / purse) and the corners
      lift, both confined to a band of 2.3 lip half-heights around the lip line and 1.5 lip
      half-widths around the centre;
    - where the lips part, the pixels inside the lens show a dark mouth cavity (feathered).

    The result is blended back with a feathered weight ``min(1, 4 w)``, ``w`` the region
    window. ``fps`` is the frame rate the track was analysed at; the two must match.
    """
    if abs(fps - track.fps) > 1e-6:
        raise ValueError(f"track analysed at {track.fps} fps, frames are {fps} fps")
    boxes = np.broadcast_to(np.asarray(face_boxes, dtype=np.float64).reshape(-1, 4), (len(frames), 4))
    shapes = mouth_shapes(track, boxes[:, 3], expression, intensity)
    for i, frame in enumerate(frames):
        shape = shapes[min(i, len(shapes) - 1)]
        yield frame if shape.is_identity else _reshape(frame, mouth_region(boxes[i]), shape)


def _reshape(frame: np.ndarray, mouth: Mouth, shape: MouthShape) -> np.ndarray:
    """``frame`` with its mouth region warped by ``shape`` (see ``animate_mouth``)."""
    x, y, w, h = mouth.box(frame.shape)
    if w < 2 or h < 2:
        return frame
    dx = np.arange(x, x + w, dtype=np.float32)[None, :] - mouth.cx
    dy = np.arange(y, y + h, dtype=np.float32)[:, None] - mouth.cy
    lip = mouth.lip_half_height
    wx = _smoothstep((mouth.right - mouth.cx - np.abs(dx)) / (mouth.right - mouth.cx - mouth.half_width))
    reach = np.where(dy < 0, mouth.cy - mouth.top, mouth.bottom - mouth.cy)
    wy = _smoothstep((reach - np.abs(dy)) / (reach - lip))
    # Spread, pursing and corner lift move the lips and the cheeks beside them, not the jaw
    # line: their band stops short of the face outline so no background is pulled in.
    band = (_smoothstep((BAND_HALF_WIDTH * mouth.half_width - np.abs(dx)) / (0.7 * mouth.half_width))
            * _smoothstep((LIP_BAND * lip - np.abs(dy)) / ((LIP_BAND - 1) * lip)))
    lens = np.clip(1 - (dx / (mouth.half_width * shape.opening_width * shape.scale_x)) ** 2, 0, 1) * wy
    lower = LOWER_SHARE_OPEN if shape.parting > 0 else LOWER_SHARE_PRESS
    parted = np.where(dy >= 0, dy - lower * shape.parting * lens, dy + (1 - lower) * shape.parting * lens)
    # Output pixels that land between the parted lips would sample across the lip line: they
    # take the lip line itself and are painted over as the cavity.
    cavity = np.where(dy >= 0, parted < 0, parted > 0) if shape.parting > 0 else np.zeros_like(lens, bool)
    parted = np.where(cavity, 0.0, parted)
    corner = shape.corner * np.clip(np.abs(dx) / mouth.half_width, 0, 1) ** 2 * band
    src_x = dx * (1 - (1 - 1 / shape.scale_x) * band) + mouth.cx
    src_y = parted + corner + mouth.cy
    warped = cv2.remap(frame, src_x.astype(np.float32), src_y.astype(np.float32), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    if cavity.any():
        sigma = max(0.6, 0.012 * mouth.face_height)
        alpha = cv2.GaussianBlur(cavity.astype(np.float32), (0, 0), sigma)[..., None] * CAVITY_OPACITY
        warped = warped * (1 - alpha) + np.asarray(CAVITY_RGB, np.float32) * alpha
    original = frame[y:y + h, x:x + w].astype(np.float32)
    blend = np.minimum(1.0, 4 * wx * wy)[..., None]
    out = frame.copy()
    out[y:y + h, x:x + w] = np.clip(original + (warped - original) * blend + 0.5, 0, 255).astype(np.uint8)
    return out


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)
