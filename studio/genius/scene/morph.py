"""The ``morph`` transition: optical flow, forward splatting, blend (the offline form of the AI
morph; ``studio.genius.scene.model_morph`` generates morphs with a model instead).

Dense optical flow (OpenCV DIS, medium preset, computed at most :data:`FLOW_MAX_SIDE` pixels on
the longer side and scaled up) from A's last frame to B's first frame and back, computed once
per boundary (where the two shots meet) and used for every overlap pair. A's pixels are pushed
forward by ``t x flow_ab`` and B's backward by ``(1 - t) x flow_ba`` (forward splatting: where
several pixels land on one spot the one that moves most wins, as moving content is usually in
front; one-pixel cracks are filled from their neighbours). The two warped frames are blended
with weight ``t``; where only one of them has content (a disocclusion) that one is used; where
neither has, each is sampled with its own flow at the target pixel (the usual backward-warp
approximation). The flow is reliable for displacements up to roughly a tenth of the frame on
textured content; the automatic choice (``studio.genius.scene.auto_transition``) only picks a
morph where it measured such a flow. Overlap pairs and progress ``t`` are those of
``studio.genius.scene.transitions``.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from studio.genius.scene.frames import Frame, gray
from studio.vision.flow import dense_flow

FLOW_MAX_SIDE = 512  # morph flow resolution: finer adds little to the warp, costs quadratically


def _resize_to(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``img`` shrunk so its longer side is at most ``max_side``, and the factor applied."""
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s == 1.0:
        return img, 1.0
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), s


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x and y coordinates of an ``h x w`` frame (shared: never written to)."""
    return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


def _splat(flow: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Forward-splat ``flow`` by ``t``: each pixel ``x`` lands on ``round(x + t flow(x))``.

    Returns ``(g, valid)``: at a target ``y`` that something landed on, ``g(y)`` is the flow of
    the pixel that landed there (the largest motion wins), so the source is ``y - t g(y)``.
    """
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    tx = np.rint(xs + t * flow[..., 0]).astype(np.int64).ravel()
    ty = np.rint(ys + t * flow[..., 1]).astype(np.int64).ravel()
    inside = np.flatnonzero((tx >= 0) & (tx < w) & (ty >= 0) & (ty < h))
    target = ty[inside] * w + tx[inside]
    # One winner per target without sorting: the key packs (motion in 1/64 px, source index),
    # so the largest key that lands on a target is the fastest-moving pixel there.
    motion = np.minimum(np.hypot(flow[..., 0], flow[..., 1]).ravel()[inside] * 64, 2 ** 30).astype(np.int64)
    best = np.full(h * w, -1, np.int64)
    np.maximum.at(best, target, (motion << 32) | inside)
    landed = best >= 0
    g = np.zeros((h * w, 2), np.float32)
    g[landed] = flow.reshape(-1, 2)[best[landed] & 0xFFFFFFFF]
    valid = landed.astype(np.float32)
    return _fill_cracks(g.reshape(h, w, 2), valid.reshape(h, w))


def _fill_cracks(g: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # A stretching flow leaves one-pixel gaps between landed pixels; average their 3x3 neighbours.
    weight = cv2.boxFilter(valid, -1, (3, 3), normalize=False)
    summed = cv2.boxFilter(g * valid[..., None], -1, (3, 3), normalize=False)
    crack = (valid == 0) & (weight > 0)
    g[crack] = summed[crack] / weight[crack][:, None]
    valid = np.where(crack, 1.0, valid).astype(np.float32)
    return g, valid


def _upscale_flow(flow: np.ndarray, shape: tuple[int, int], scale: float) -> np.ndarray:
    if scale == 1.0:
        return flow
    return cv2.resize(flow, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) / scale


def _sample(img: Frame, flow: np.ndarray, k: float, grid: tuple[np.ndarray, np.ndarray]) -> Frame:
    """``img`` sampled at ``y - k flow(y)``."""
    map_x = grid[0] - k * flow[..., 0]
    map_y = grid[1] - k * flow[..., 1]
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def morph_frame(a: Frame, b: Frame, t: float, flows: tuple[np.ndarray, np.ndarray, float] | None = None) -> Frame:
    """The morph at progress ``t`` between ``a`` and ``b`` (see the module docstring).

    ``flows`` = ``(flow_ab, flow_ba, scale)`` at the flow resolution, from :func:`morph_flows`
    (computed from ``a`` and ``b`` when not given).
    """
    flow_ab, flow_ba, scale = flows if flows is not None else morph_flows(a, b)
    h, w = a.shape[:2]
    grid = _grid(h, w)
    ga, va = _splat(flow_ab, t)
    gb, vb = _splat(flow_ba, 1 - t)
    # Where nothing landed, fall back to the flow at the target pixel itself.
    ga = np.where(va[..., None] > 0, ga, flow_ab)
    gb = np.where(vb[..., None] > 0, gb, flow_ba)
    ga, gb = _upscale_flow(ga, (h, w), scale), _upscale_flow(gb, (h, w), scale)
    if scale != 1.0:
        va = cv2.resize(va, (w, h), interpolation=cv2.INTER_LINEAR)
        vb = cv2.resize(vb, (w, h), interpolation=cv2.INTER_LINEAR)
    # out = (wa A' + wb B') / (wa + wb); a tiny floor keeps the plain blend where neither warp
    # has content.
    weight_a = (1 - t) * (va + 1e-3)
    weight_b = t * (vb + 1e-3)
    return cv2.blendLinear(_sample(a, ga, t, grid), _sample(b, gb, 1 - t, grid), weight_a, weight_b)


def morph_flows(a: Frame, b: Frame) -> tuple[np.ndarray, np.ndarray, float]:
    """Flows ``a -> b`` and ``b -> a`` at most :data:`FLOW_MAX_SIDE` px, and that resolution's scale."""
    ga, scale = _resize_to(gray(a), FLOW_MAX_SIDE)
    gb, _ = _resize_to(gray(b), FLOW_MAX_SIDE)
    return dense_flow(ga, gb), dense_flow(gb, ga), scale


def render_morph(pairs: list[tuple[Frame, Frame]], ts: list[float]) -> list[Frame]:
    """The morph's overlap frames for ``pairs`` of (A frame, B frame) at progress ``ts``."""
    # The correspondence is measured once, where the shots meet: A's last frame -> B's first.
    flows = morph_flows(pairs[-1][0], pairs[0][1])
    return [morph_frame(a, b, t, flows) for (a, b), t in zip(pairs, ts)]
