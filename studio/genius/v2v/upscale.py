"""V2V ``upscale``: bicubic resampling + edge-guided unsharp mask, even output sizes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from studio.errors import InvalidRequest
from studio.vision.pixels import Frames
from studio.vision.upscale import upscale_frame

MAX_UPSCALE = 4.0
MAX_SIDE = 4096


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def upscale_size(
    width: int, height: int, scale: float | None = None, out_width: int | None = None, out_height: int | None = None
) -> tuple[int, int]:
    """Validated output ``(width, height)`` for a ``width x height`` source.

    Either ``scale`` (1 < scale <= 4; default 2) or an output ``width`` and/or ``height`` (even,
    as H.264 needs; a missing side keeps the aspect ratio, rounded to even). Each output side
    is at least the source's and at most 4x it and 4096 px.
    """
    if scale is not None and (out_width is not None or out_height is not None):
        raise InvalidRequest("scale: give either scale or width/height, not both")
    for name, value in (("width", out_width), ("height", out_height)):
        if value is not None and (value <= 0 or value % 2):
            raise InvalidRequest(f"{name}: must be a positive even number of pixels (H.264), got {value}")
    if out_width is None and out_height is None:
        scale = 2.0 if scale is None else float(scale)
        if not 1.0 < scale <= MAX_UPSCALE:
            raise InvalidRequest(f"scale: must be above 1 and at most {MAX_UPSCALE:g}, got {scale:g}")
        size = (_even(width * scale), _even(height * scale))
    elif out_height is None:
        size = (out_width, _even(height * out_width / width))
    elif out_width is None:
        size = (_even(width * out_height / height), out_height)
    else:
        size = (out_width, out_height)
    for name, new, old in (("width", size[0], width), ("height", size[1], height)):
        if not old <= new <= min(MAX_UPSCALE * old + 1, MAX_SIDE):
            raise InvalidRequest(
                f"{name}: output {new} px must be between the source's {old} px and "
                f"min({MAX_UPSCALE:g}x, {MAX_SIDE} px)"
            )
    return size


def upscale(
    frames: Frames,
    scale: float | None = None,
    width: int | None = None,
    height: int | None = None,
    *,
    sharpen: float = 0.6,
) -> Iterator[np.ndarray]:
    """Upscale each frame (``studio.vision.upscale.upscale_frame``: bicubic resampling, then
    edge-guided sharpening at the new scale). Output size from ``upscale_size`` (even).

    Quality (``tests/test_v2v.py``, scikit-image's astronaut at 256 px, downscaled to 128 px with
    area averaging and upscaled x2): PSNR 28.3 dB vs bilinear's 26.3 dB, and
    variance of the Laplacian 3.3x bilinear's.
    """
    size = None
    for frame in frames:
        if size is None:
            size = upscale_size(frame.shape[1], frame.shape[0], scale, width, height)
        yield upscale_frame(frame, *size, sharpen=sharpen)
