"""V2V ``enhancement``: motion-compensated recursive denoise, edge-guided sharpening, CLAHE on L."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from studio.vision.flow import Flow
from studio.vision.pixels import Frames, blend, gray, noise_sigma, to_uint8, warp
from studio.vision.upscale import edge_sharpen

_CHANNEL_MEAN = np.full((1, 3), 1.0 / 3.0, np.float32)


def _local_contrast(frame: np.ndarray, clahe: cv2.CLAHE, amount: float) -> np.ndarray:
    """CLAHE on the Lab L channel only (colours keep their hue), blended by ``amount``."""
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB)
    lightness = lab[..., 0]
    lab[..., 0] = to_uint8(blend(lightness, clahe.apply(lightness), amount))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


class _RecursiveDenoiser:
    """Motion-compensated recursive temporal filter, then an edge-preserving spatial pass.

    The previous output is warped onto the current frame along the flow (both lightly blurred
    lumas, the previous one denoised, so the noise does not steer it) and blended in with the
    per-pixel weight ``w = w_max * exp(-(d / (2 sigma))^2)``, where ``d`` is the 5x5 mean
    absolute difference between the frame and the warped output and ``sigma`` the noise level
    (``noise_sigma``, smoothed over frames). Where the warp is right ``d`` is noise-sized and the
    frame is averaged with its history; where it fails (occlusion, new content) ``d`` is large
    and the frame passes through. For static content the filter converges to averaging
    ``(2 - a) / a`` frames, ``a = 1 - w``. A 5x5 bilateral filter (colour sigma
    ``spatial * sigma``, space sigma 1.5) then cleans what the temporal filter could not
    (the first frame, newly uncovered areas) without blurring edges.
    """

    def __init__(self, max_weight: float, spatial: float, preset: str | None):
        self.max_weight = max_weight
        self.spatial = spatial
        self.flow = Flow(preset)
        self.previous: np.ndarray | None = None
        self.previous_guide: np.ndarray | None = None
        self.sigma: float | None = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        sigma = noise_sigma(frame)
        self.sigma = sigma if self.sigma is None else 0.9 * self.sigma + 0.1 * sigma
        if self.previous is None:
            temporal = frame
        else:
            flow = self.flow(_flow_guide(frame), self.previous_guide)
            warped = warp(self.previous, flow).astype(np.float32)
            difference = cv2.blur(cv2.transform(cv2.absdiff(frame.astype(np.float32), warped), _CHANNEL_MEAN), (5, 5))
            weight = self.max_weight * np.exp(-((difference / (2.0 * max(self.sigma, 0.5))) ** 2))
            temporal = to_uint8(blend(frame, warped, weight))
        self.previous, self.previous_guide = temporal, _flow_guide(temporal)
        if self.spatial <= 0:
            return temporal
        return cv2.bilateralFilter(temporal, 5, self.spatial * self.sigma, 1.5)


def _flow_guide(frame: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(gray(frame), (0, 0), 1.0)


def enhance(frames: Frames, strength: float = 0.5, *, preset: str | None = None) -> Iterator[np.ndarray]:
    """Improve quality: temporal denoise, edge-guided sharpening, local contrast (streams).

    ``strength`` (0-1) scales all three: denoise ``w_max = min(0.9, 1.6 strength)`` and bilateral
    colour sigma ``2 strength sigma`` (``_RecursiveDenoiser``), sharpening
    ``amount = 0.5 strength`` (``edge_sharpen``, sigma 1.5), CLAHE on L (clip limit 1.5, 8x8
    tiles) blended in by ``strength``. ``strength = 0`` returns the frames unchanged.

    Measured (``tests/test_v2v.py``, a 192x120 clip with a static rectangle and a moving textured
    square plus Gaussian noise sigma 12, strength 0.5): the noise, std of
    ``enhance(noisy) - enhance(clean)`` over frames 5+, drops from 12.0 to 6.7 grey levels
    (1.8x; the denoiser alone reaches ~4.5, sharpening and CLAHE raise what is left along with
    the contrast); edges keep at least 100% of their gradient energy. Per 854x480 frame the
    OpenCV non-local-means video denoiser (``fastNlMeansDenoisingColoredMulti``, 5 frames) takes
    5.1 s, this whole chain ~60 ms, which is why it is not used.
    """
    if strength <= 0:
        yield from frames
        return
    denoise = _RecursiveDenoiser(min(0.9, 1.6 * strength), 2.0 * strength, preset)
    clahe = cv2.createCLAHE(clipLimit=1.5, tileGridSize=(8, 8))
    for frame in frames:
        denoised = denoise(frame)
        sharpened = edge_sharpen(denoised, 0.5 * strength, 1.5)
        yield _local_contrast(sharpened, clahe, strength)
