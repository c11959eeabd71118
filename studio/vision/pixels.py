"""Pixel building blocks shared by the classical video paths (the V2V modes, frame interpolation
and upscaling in generation): warping, occlusion, blending, noise level, Lab colour
conversions and cover-cropping. Pure: arrays in, arrays out.

Optical flow (``studio.vision.flow.Flow``): OpenCV's DIS (dense inverse search) on the grey
image, one helper for every mode; ``auto_preset`` takes ``fast`` from 480p up and ``medium`` for
smaller frames.

Occlusion (``occlusion``): forward/backward consistency (Sundaram et al. 2010). A pixel ``x`` of
frame A with flow ``f = F_ab(x)`` and ``b = F_ba(x + f)`` is consistent when
``|f + b|^2 <= 0.01 (|f|^2 + |b|^2) + 0.5``; the soft mask rises linearly from 0 at that
tolerance to 1 at twice it, and is dilated by 2 px because flow is least reliable at boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import cv2
import numpy as np

from studio.errors import InvalidRequest

Frames = Iterable[np.ndarray]


def gray(frame: np.ndarray) -> np.ndarray:
    """Luma of an RGB ``uint8`` frame, the input optical flow works on."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def grayscale_rgb(frame: np.ndarray) -> np.ndarray:
    """An RGB frame's grey version, still as three channels (what a model takes as input)."""
    return cv2.cvtColor(gray(frame), cv2.COLOR_GRAY2RGB)


def with_luminance(source: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``source``'s Lab lightness with ``colour``'s chroma (a, b): colour from a model, detail
    and lighting from the source."""
    lab = cv2.cvtColor(colour, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.cvtColor(source, cv2.COLOR_RGB2LAB)[..., 0]
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid = np.dstack([xs, ys])
    grid.flags.writeable = False
    return grid


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(x) = image(x + flow(x))``, bilinear, borders replicated (backward warping)."""
    grid = _pixel_grid(*flow.shape[:2])
    return cv2.remap(image, grid + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def occlusion(flow_ab: np.ndarray, flow_ba: np.ndarray) -> np.ndarray:
    """Soft mask on A's grid, 1 where A's pixel has no consistent match in B (module docstring)."""
    back = warp(flow_ba, flow_ab)
    error = _squared_norm(flow_ab + back)
    tolerance = 0.01 * (_squared_norm(flow_ab) + _squared_norm(back)) + 0.5
    mask = np.clip(error / tolerance - 1.0, 0.0, 1.0)
    return cv2.dilate(mask, np.ones((5, 5), np.uint8))


def _squared_norm(vectors: np.ndarray) -> np.ndarray:
    # Per-plane arithmetic: numpy's reduction over a last axis of 2 is ~10x slower.
    x, y = cv2.split(vectors)
    return x * x + y * y


def per_channel(weight: np.ndarray, channels: int) -> np.ndarray:
    return weight if channels == 1 else cv2.merge([weight] * channels)


def blend(frame: np.ndarray, other: np.ndarray, weight: np.ndarray | float) -> np.ndarray:
    """``frame + weight * (other - frame)`` in float32, per pixel when ``weight`` is a map."""
    start = frame.astype(np.float32)
    difference = cv2.subtract(other.astype(np.float32), start)
    if isinstance(weight, np.ndarray):
        return cv2.add(start, cv2.multiply(difference, per_channel(weight, start.shape[2] if start.ndim == 3 else 1)))
    return cv2.scaleAdd(difference, float(weight), start)


def cover_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale ``image`` to cover ``width x height`` (keeping its aspect) and centre-crop."""
    ih, iw = image.shape[:2]
    scale = max(width / iw, height / ih)
    rw, rh = max(width, round(iw * scale)), max(height, round(ih * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (rw, rh), interpolation=interp)
    ox, oy = (rw - width) // 2, (rh - height) // 2
    return resized[oy:oy + height, ox:ox + width]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and saturate to 0-255 (OpenCV's saturate_cast: ~4x numpy's clip + astype)."""
    return cv2.add(image, 0, dtype=cv2.CV_8U)


# -- noise level -----------------------------------------------------------------------------

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def noise_sigma(image: np.ndarray) -> float:
    """Gaussian noise std of an image in grey levels, averaged over its channels (Immerkaer 1996).

    ``sigma = sqrt(pi / 2) / (6 (W - 2)(H - 2)) * sum |I * M|`` with ``M`` the difference of two
    Laplacians, which cancels smooth image structure; texture still adds a little, so on
    detailed clean footage it reads a few levels above zero.
    """
    response = cv2.filter2D(image.astype(np.float32), -1, _IMMERKAER)[1:-1, 1:-1]
    return float(math.sqrt(math.pi / 2) * np.abs(response).mean() / 6.0)


# -- colour ----------------------------------------------------------------------------------


def to_lab(frame: np.ndarray) -> np.ndarray:
    """Float Lab: L in 0-100, a/b about -128..127."""
    return cv2.cvtColor(frame.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2Lab)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    return to_uint8(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255.0)


def local_std(image: np.ndarray, size: int = 5) -> np.ndarray:
    mean = cv2.blur(image, (size, size))
    return np.sqrt(np.maximum(cv2.blur(image * image, (size, size)) - mean * mean, 0.0))


def ema(previous: np.ndarray | None, current: np.ndarray, alpha: float) -> np.ndarray:
    return current if previous is None else previous + alpha * (current - previous)


def as_rgb_image(image: np.ndarray, field: str = "reference") -> np.ndarray:
    """A reference image as RGB ``uint8``: grey, grey+1, RGB and RGBA (alpha dropped) accepted."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise InvalidRequest(f"{field}: must be an 8-bit grey, RGB or RGBA image, got {array.dtype} {array.shape}")
    if min(array.shape[:2]) < 16:
        raise InvalidRequest(f"{field}: must be at least 16x16 pixels, got {array.shape[1]}x{array.shape[0]}")
    if array.ndim == 2 or array.shape[2] == 1:
        return cv2.cvtColor(array.reshape(array.shape[:2]), cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(array[..., :3])
