"""Cheap live previews while a video is being sampled.

Two pieces:

* :func:`estimate_denoised` turns two consecutive sampler latents into the flow-matching
  estimate of the clean latent, which is what the finished video will look like "so far".
* :class:`LatentPreviewer` maps latent channels to RGB with one fitted linear layer, so a
  preview costs a small matrix product instead of a VAE decode. The map is fitted once per
  VAE against that VAE's own decodes of synthetic clips and cached as a small ``.npz``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from studio.engine.decode import normalize_latents, unnormalize_latents, vae_execution_device

if TYPE_CHECKING:
    from studio.models.loader import LoadedModel


def estimate_denoised(
    x_prev: torch.Tensor, x_next: torch.Tensor, sigma_prev: float, sigma_next: float
) -> torch.Tensor:
    """Flow-matching estimate of the clean latent x0 from two consecutive sampler latents.

    An Euler flow-matching step is ``x_next = x_prev + (sigma_next - sigma_prev) * v``, and
    the model's x0 prediction is ``x - sigma * v``; so recover ``v`` from the step and
    return ``x_next - sigma_next * v`` (equal to ``x_prev - sigma_prev * v``). With
    ``sigma_next == 0`` (the last step) this is ``x_next`` itself. For diffusers'
    FlowMatchEulerDiscreteScheduler, step ``i`` goes from ``sigmas[i]`` to ``sigmas[i + 1]``.
    """
    sigma_prev, sigma_next = float(sigma_prev), float(sigma_next)
    if sigma_next == sigma_prev:
        raise ValueError("sigma_prev and sigma_next must differ")
    if sigma_next == 0.0:
        return x_next.clone()
    v = (x_next.float() - x_prev.float()) / (sigma_next - sigma_prev)
    return (x_next.float() - sigma_next * v).to(x_next.dtype)


def previewer_of(model: "LoadedModel") -> "LatentPreviewer":
    """The loaded model's latent->RGB projection: fitted once per VAE (cached on disk at
    ``model.previewer_path``) on first use, then kept on the model for its lifetime. Only runs
    that show previews pay for it; edit models never fit one."""
    if model.previewer is None:
        model.previewer_path.parent.mkdir(parents=True, exist_ok=True)
        model.previewer = LatentPreviewer.load_or_fit(model.pipe.vae, model.previewer_path)
    return model.previewer


class LatentPreviewer:
    """Linear latent -> RGB preview for one VAE.

    Attributes:
        weights: ``(C + 1, 3)`` array; ``rgb = [latent, 1] @ weights``, rgb in [0, 1], where
            ``latent`` is the pipeline's *normalized* latent (what ``output_type="latent"``
            returns and what callbacks see).
        fit_rmse: RMSE (in [0, 1] units) of the fit on its training clips.
    """

    def __init__(self, weights: np.ndarray, fit_rmse: float = float("nan")) -> None:
        weights = np.asarray(weights, dtype=np.float32)
        if weights.ndim != 2 or weights.shape[1] != 3:
            raise ValueError(f"weights must have shape (C + 1, 3), got {weights.shape}")
        self.weights = weights
        self.fit_rmse = float(fit_rmse)

    @property
    def channels(self) -> int:
        """Number of latent channels this previewer expects."""
        return self.weights.shape[0] - 1

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, vae, seed: int = 0) -> "LatentPreviewer":
        """Least-squares fit against ``vae``'s own decodes of small synthetic clips.

        The clips are encoded, normalized like pipeline latents, decoded back, and the
        decoded RGB is averaged over each latent cell (space and time) so that every latent
        vector has one RGB target. A few random latents join the fit at a low weight: simple
        drawings may not excite every latent direction, and without them such directions
        could get wild coefficients that blow up on real, off-manifold sampler latents.
        """
        latents, targets, row_weights = _training_pairs(vae, seed)
        x = np.concatenate([latents, np.ones((len(latents), 1), np.float64)], axis=1)
        sqrt_w = np.sqrt(row_weights)[:, None]
        weights, *_ = np.linalg.lstsq(x * sqrt_w, targets * sqrt_w, rcond=None)
        clip_rows = row_weights == 1.0
        rmse = float(np.sqrt(np.mean((x[clip_rows] @ weights - targets[clip_rows]) ** 2)))
        return cls(weights, rmse)

    @classmethod
    def load_or_fit(cls, vae, path: str | os.PathLike, seed: int = 0) -> "LatentPreviewer":
        """Load the cache at ``path`` if it matches ``vae``'s channel count, else fit and save."""
        path = Path(path)
        if path.is_file():
            try:
                cached = cls.load(path)
                if cached.channels == vae.config.z_dim:
                    return cached
            except (OSError, ValueError, KeyError):
                pass  # unreadable / stale cache: refit below
        previewer = cls.fit(vae, seed=seed)
        previewer.save(path)
        return previewer

    # ------------------------------------------------------------------ use
    def to_rgb(self, latents: torch.Tensor, frame: int | None = None, width: int = 256) -> np.ndarray:
        """One latent frame of normalized latents ``[1, C, T, h, w]`` as a uint8 ``H x W x 3`` image.

        ``frame`` indexes latent frames (negative counts from the end; default: the middle
        one). The image is upscaled to ``width`` pixels, keeping the latent's aspect ratio.
        """
        if latents.ndim != 5 or latents.shape[1] != self.channels:
            raise ValueError(f"expected latents [1, {self.channels}, T, h, w], got {tuple(latents.shape)}")
        num_frames = latents.shape[2]
        frame = num_frames // 2 if frame is None else frame
        if not -num_frames <= frame < num_frames:
            raise IndexError(f"latent frame {frame} out of range for {num_frames} frames")
        lat = latents[0, :, frame].detach().to("cpu", torch.float32).numpy()  # C, h, w
        rgb = np.tensordot(lat, self.weights[:-1], axes=([0], [0])) + self.weights[-1]  # h, w, 3
        img = (np.clip(rgb, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        h, w = img.shape[:2]
        height = max(1, round(width * h / w))
        return cv2.resize(img, (int(width), height), interpolation=cv2.INTER_LINEAR)

    # ------------------------------------------------------------------ cache
    def save(self, path: str | os.PathLike) -> None:
        """Write ``weights`` and ``fit_rmse`` to an ``.npz`` file, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            # A file object stops numpy from appending ".npz" to the temp name.
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, weights=self.weights, fit_rmse=np.float64(self.fit_rmse))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatentPreviewer":
        """Read a previewer written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as data:
            return cls(data["weights"], float(data["fit_rmse"]))


# ---------------------------------------------------------------------- training data
_CLIP_SIZE = 64  # multiple of both Wan VAEs' spatial factors (8 and 16)
_CLIP_FRAMES = 9  # 4k + 1 -> 3 latent frames
_NUM_CLIPS = 12
_NUM_RANDOM = 2
_RANDOM_WEIGHT = 0.02  # per-row weight of the random latents relative to clip latents


def synthetic_clips(count: int, seed: int, size: int = _CLIP_SIZE, frames: int = _CLIP_FRAMES) -> np.ndarray:
    """Deterministic test-card clips ``[count, frames, size, size, 3]`` (float32 RGB in [0, 1]).

    Flat colours, moving two-colour gradients and moving rectangles / circles, so the fit
    sees saturated and mixed colours, edges and motion.
    """
    rng = np.random.default_rng(seed)
    clips = np.empty((count, frames, size, size, 3), np.float32)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    for k in range(count):
        kind = k % 3
        c0, c1 = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
        for f in range(frames):
            if kind == 0:
                img = np.broadcast_to(c0 + (c1 - c0) * f / max(frames - 1, 1), (size, size, 3)).copy()
            elif kind == 1:
                t = (ramp + f / frames) % 1.0
                t = t[None, :, None] if k % 2 else t[:, None, None]
                img = np.broadcast_to(c0 + (c1 - c0) * t, (size, size, 3)).copy()
            else:
                img = np.broadcast_to(c0, (size, size, 3)).copy()
                for _ in range(3):
                    colour = tuple(float(v) for v in rng.random(3))
                    cx, cy = (int(v) for v in rng.integers(0, size, 2))
                    r = int(rng.integers(size // 10, size // 3))
                    dx = f * int(rng.integers(-3, 4))
                    if rng.random() < 0.5:
                        cv2.circle(img, (cx + dx, cy), r, colour, thickness=-1)
                    else:
                        cv2.rectangle(img, (cx + dx - r, cy - r), (cx + dx + r, cy + r), colour, thickness=-1)
            clips[k, f] = img
    return clips


def pool_to_latent_grid(video: np.ndarray, latent_shape: tuple[int, int, int]) -> np.ndarray:
    """Average decoded RGB ``[B, F, H, W, 3]`` onto the latent grid ``(T, h, w)`` -> ``[B, T, h, w, 3]``.

    Latent frame 0 covers pixel frame 0 alone (the Wan VAE is causal); latent frame ``i``
    covers the ``s`` frames ``s*(i-1)+1 .. s*i``, with ``s = (F - 1) / (T - 1)``.
    """
    b, num_frames, height, width, _ = video.shape
    t, h, w = latent_shape
    sy, sx = height // h, width // w
    spatial = video.reshape(b, num_frames, h, sy, w, sx, 3).mean(axis=(3, 5))
    if t == 1:
        return spatial[:, :1]
    st = (num_frames - 1) // (t - 1)
    rest = spatial[:, 1 : 1 + st * (t - 1)].reshape(b, t - 1, st, h, w, 3).mean(axis=2)
    return np.concatenate([spatial[:, :1], rest], axis=1)


@torch.no_grad()
def _training_pairs(vae, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalized latent vectors [N, C], pooled RGB targets [N, 3], row weights [N])."""

    device, dtype = vae_execution_device(vae), vae.dtype
    clips = synthetic_clips(_NUM_CLIPS, seed)
    pixels = torch.from_numpy(clips).permute(0, 4, 1, 2, 3) * 2.0 - 1.0  # B, 3, F, H, W in [-1, 1]
    z = vae.encode(pixels.to(device, dtype)).latent_dist.mode()
    latents = normalize_latents(vae, z.float())

    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((_NUM_RANDOM, *latents.shape[1:]), generator=gen).to(latents.device)
    latents = torch.cat([latents, noise])

    decoded = vae.decode(unnormalize_latents(vae, latents)).sample.float()  # B, 3, F, H, W
    rgb = ((decoded.clamp(-1, 1) + 1.0) / 2.0).permute(0, 2, 3, 4, 1).cpu().numpy()
    _, c, t, h, w = latents.shape
    targets = pool_to_latent_grid(rgb, (t, h, w))  # B, T, h, w, 3
    inputs = latents.permute(0, 2, 3, 4, 1).cpu().numpy()  # B, T, h, w, C
    row_weights = np.ones(latents.shape[0], np.float64)
    row_weights[_NUM_CLIPS:] = _RANDOM_WEIGHT
    row_weights = np.broadcast_to(row_weights[:, None], (latents.shape[0], t * h * w)).reshape(-1)
    return (
        inputs.reshape(-1, c).astype(np.float64),
        targets.reshape(-1, 3).astype(np.float64),
        row_weights,
    )
