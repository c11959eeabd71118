"""The learned upscaler of generation (``upscaler: "learned"``): an ESRGAN-family network
(``studio.models.esrgan``) run tile by tile over each generated frame.

A frame is cut into tiles of ``tile`` pixels, each run with ``overlap`` pixels of its
neighbours around it (so no seam shows) and pasted back without them: memory holds one tile's
activations whatever the frame size, which keeps a 4k or 8k output bounded. The network
multiplies the size by its scale (2, 4 or 8); the exact output size is then reached classically
(an area resize down, or bicubic with edge sharpening for what is left above the network's
scale, ``studio.vision.upscale``).
"""

from __future__ import annotations

import numpy as np
import torch

from studio.media.video import resize
from studio.models.esrgan import Upscaler
from studio.vision.upscale import upscale_frame


class LearnedUpscale:
    """``upscale(frame, width, height)``: the network, then the exact size (see the module docstring)."""

    def __init__(self, upscaler: Upscaler, device: torch.device, tile: int = 192, overlap: int = 12):
        self.upscaler, self.device, self.tile, self.overlap = upscaler, device, tile, overlap
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.net = upscaler.net.to(device=device, dtype=self.dtype)

    def __call__(self, frame: np.ndarray, width: int, height: int) -> np.ndarray:
        larger = self._network(frame)
        if larger.shape[1] >= width and larger.shape[0] >= height:
            return resize(larger, width, height)
        return upscale_frame(larger, width, height)

    def describe(self, width: int, height: int, generated: tuple[int, int]) -> dict:
        """What ran, for the result's metadata."""
        scaled = (generated[0] * self.upscaler.scale, generated[1] * self.upscaler.scale)
        then = "area resize" if scaled[0] >= width and scaled[1] >= height else "bicubic with edge sharpening"
        return {**self.upscaler.describe(), "network_output": list(scaled), "then": f"{then} to {width}x{height}",
                "tile": self.tile}

    @torch.inference_mode()
    def _network(self, frame: np.ndarray) -> np.ndarray:
        scale, tile, pad = self.upscaler.scale, self.tile, self.overlap
        h, w = frame.shape[:2]
        image = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1)[None]
        image = image.to(self.dtype) / 255.0
        out = torch.empty(1, 3, h * scale, w * scale, device=self.device, dtype=self.dtype)
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                bottom, right = min(top + tile, h), min(left + tile, w)
                y0, x0, y1, x1 = max(top - pad, 0), max(left - pad, 0), min(bottom + pad, h), min(right + pad, w)
                result = self.net(image[:, :, y0:y1, x0:x1])
                out[:, :, top * scale:bottom * scale, left * scale:right * scale] = result[
                    :, :, (top - y0) * scale:(bottom - y0) * scale, (left - x0) * scale:(right - x0) * scale]
        rgb = (out[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
        return rgb.cpu().numpy()
