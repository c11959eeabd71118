"""Video Inpainting, classical paths: remove, blend, background (with an image), extend.

The seed's ``POST /genius/inpaint/process`` takes ``mode``, ``bbox`` and ``feather_radius``.
This module says which path a request takes (:func:`plan_inpaint`) and runs the classical one
(:func:`inpaint`); ``replace`` (and ``background`` / ``extend`` driven by a prompt) need a
generative model (Wan VACE, ``studio.genius.inpaint.vace``). The model-free algorithms, each
documented with its formulas in its own module (conventions: ``checks``):

- ``tracking``: the user's box followed through the clip (:func:`tracking.track_bbox`);
- ``masks``: the feathered masks of the tracked boxes and the composites;
- ``removal``: remove, flow-guided background propagation;
- ``blend``: an overlay blended into the box (feathered or Poisson);
- ``background``: GrabCut foreground, new background behind it;
- ``extend``: the canvas grown by reflection and blur.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np

from studio.errors import InvalidRequest
from studio.genius.inpaint.background import replace_background
from studio.genius.inpaint.blend import blend
from studio.genius.inpaint.checks import Box, check_frames, validate_feather_radius
from studio.genius.inpaint.extend import extend
from studio.genius.inpaint.removal import remove
from studio.genius.inpaint.tracking import track_bbox

MODES = ("remove", "replace", "blend", "background", "extend")
# Modes with a model-free path, and the inputs it needs (besides frames).
CLASSICAL_MODES: dict[str, str] = {
    "remove": "bbox",
    "blend": "bbox + overlay image",
    "background": "bbox + background image",
    "extend": "target_size",
}


def plan_inpaint(mode: str, has_prompt: bool, has_image: bool, model_available: bool = False) -> Literal["classical", "model"]:
    """Which path a request takes: ``"classical"`` (this module) or ``"model"`` (Wan VACE).

    - ``remove``: model when a VACE model is loaded (it synthesises plausible unseen
      background), else classical (propagation + spatial inpaint).
    - ``replace``: always model; needs a prompt or a reference image.
    - ``blend``: classical; needs the overlay image.
    - ``background``: classical with an image (its pixels are the answer), model with only a
      prompt; needs one of them.
    - ``extend``: model with a prompt or when a VACE model is loaded, else classical.

    Raises ``InvalidRequest`` naming the field for an unknown mode or a missing input.
    """
    if mode not in MODES:
        raise InvalidRequest(f"mode: must be one of {', '.join(MODES)} (got {mode!r})")
    if mode == "replace":
        if not (has_prompt or has_image):
            raise InvalidRequest("prompt: mode 'replace' needs a prompt (or a reference image) describing the replacement")
        return "model"
    if mode == "blend":
        if not has_image:
            raise InvalidRequest("overlay: mode 'blend' needs an overlay image")
        return "classical"
    if mode == "background":
        if has_image:
            return "classical"
        if has_prompt:
            return "model"
        raise InvalidRequest("background: mode 'background' needs a background image or a prompt")
    if mode == "extend":
        return "model" if (has_prompt or model_available) else "classical"
    return "model" if model_available else "classical"


def inpaint(mode: str, frames: Sequence[np.ndarray], *, bbox: Sequence[int] | None = None, feather_radius: int = 0,
            overlay: np.ndarray | None = None, background: np.ndarray | None = None,
            target_size: Sequence[int] | None = None, blend_method: Literal["feather", "poisson"] = "feather"
            ) -> tuple[list[np.ndarray], dict]:
    """Run the classical path of ``mode``; returns (frames, info).

    info: ``mode``, ``path`` ("classical"), ``method``, ``frames``, ``elapsed_s`` (wall time of
    this call), and per mode: ``boxes`` (tracked, one per frame), ``track_confidence_min`` /
    ``_mean``, ``feather_radius``; remove: ``temporal_fraction``, ``spatial_fraction``,
    ``reliable_links``; background: ``foreground_fraction_mean`` (segmented pixels / frame
    pixels); extend: ``target_size``, ``offset``. Requests without a classical path raise
    ``InvalidRequest`` naming ``mode`` (route them to the model path via :func:`plan_inpaint`).
    """
    started = time.perf_counter()
    if mode in MODES and mode not in CLASSICAL_MODES:
        raise InvalidRequest(f"mode: {mode!r} has no classical path; it needs a prompt and the Wan VACE model")
    has_image = overlay is not None if mode == "blend" else background is not None
    plan_inpaint(mode, has_prompt=False, has_image=has_image)  # unknown mode / missing image
    frames = check_frames(frames)
    info: dict = {"mode": mode, "path": "classical", "frames": len(frames)}
    if mode == "extend":
        if target_size is None:
            raise InvalidRequest("target_size: mode 'extend' needs [width, height]")
        out, offset = extend(frames, *target_size)
        info.update(method="reflect+blur", target_size=[out[0].shape[1], out[0].shape[0]], offset=list(offset))
    else:
        if bbox is None:
            raise InvalidRequest(f"bbox: mode {mode!r} needs a bbox [x, y, width, height]")
        r = validate_feather_radius(feather_radius, frames[0].shape)
        track = track_bbox(frames, bbox)
        info.update(boxes=[list(b) for b in track.boxes], track_method=track.method, feather_radius=r,
                    track_confidence_min=min(track.confidences),
                    track_confidence_mean=float(np.mean(track.confidences)))
        out = _run_boxed(mode, frames, track.boxes, r, overlay, background, blend_method, info)
    info["elapsed_s"] = time.perf_counter() - started
    return out, info


def _run_boxed(mode: str, frames: list[np.ndarray], boxes: list[Box], r: int, overlay: np.ndarray | None,
               background: np.ndarray | None, blend_method: str, info: dict) -> list[np.ndarray]:
    if mode == "remove":
        out, stats = remove(frames, boxes, r)
        info.update(method="homography-propagation+telea", temporal_fraction=stats.temporal_fraction,
                    spatial_fraction=stats.spatial_fraction, reliable_links=stats.reliable_links)
        return out
    if mode == "blend":
        info["method"] = blend_method
        return blend(frames, boxes, overlay, r, blend_method)
    out, masks = replace_background(frames, boxes, background, r)
    info.update(method="grabcut", foreground_fraction_mean=float(np.mean([m.mean() for m in masks])))
    return out
