"""The learned frame interpolator of generation (``interpolator: "learned"``): a RIFE network
(``studio.models.rife``) makes each output frame that falls between two generated frames.

The frames are padded (edges repeated) to multiples of 64, the network's coarsest stride, and
the result cropped back. It runs in half precision on a GPU, in float32 on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from studio.models.rife import Interpolator

MULTIPLE = 64


class LearnedInterpolation:
    """``interpolate(frame0, frame1, t)``: the frame at time ``t`` in (0, 1) between two RGB uint8 frames."""

    def __init__(self, interpolator: Interpolator, device: torch.device):
        self.interpolator, self.device = interpolator, device
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.net = interpolator.net.to(device=device, dtype=self.dtype)

    @torch.inference_mode()
    def __call__(self, frame0: np.ndarray, frame1: np.ndarray, t: float) -> np.ndarray:
        h, w = frame0.shape[:2]
        padding = (0, -w % MULTIPLE, 0, -h % MULTIPLE)
        both = torch.from_numpy(np.stack([frame0, frame1])).to(self.device).permute(0, 3, 1, 2)
        both = F.pad(both.to(self.dtype) / 255.0, padding, mode="replicate")
        middle = self.net(both[:1], both[1:], float(t))[0, :, :h, :w]
        return (middle.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def describe(self) -> dict:
        """What ran, for the result's metadata."""
        return {**self.interpolator.describe(), "padded_to_multiples_of": MULTIPLE}
