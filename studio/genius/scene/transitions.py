"""Scene Orchestrator transitions: rendering, stitching, timing and the automatic choice.

``GET /v1/genius/scene/transitions`` lists :data:`TRANSITIONS`; the multi-shot edit renders its
boundaries with :func:`stitch` and reports them with :func:`timeline`. Frames are ``(H, W, 3)``
uint8 RGB arrays.

**Overlap semantics.** A transition of ``n`` frames between shots A and B consumes the last
``n`` frames of A and the first ``n`` frames of B and replaces them with ``n`` blended frames,
so ``total_frames = sum(shot frames) - sum(overlaps)`` exactly; ``cut`` always has 0 overlap.
Overlap frame ``i`` (0-based) pairs ``a_i`` (A's frame ``len(A) - n + i``) with ``b_i`` (B's
frame ``i``) at progress ``t_i = (i + 1) / (n + 1)``: strictly between 0 and 1, so no overlap
frame is a copy of either shot and an odd ``n`` has its middle frame at exactly ``t = 0.5``.
A transition lasts ``n = round(duration_seconds * fps)`` frames; its reported duration is
``n / fps`` (exact frames, not the requested seconds). Where ``n`` is more than a shot can give
(the shot's length minus what the previous boundary already took from it, or the next shot's
length) it is clamped to that, and :func:`timeline` reports ``clamped`` with the requested value.

**The transitions** (``t`` = progress; "blend" = ``(1 - t) A + t B``):

- ``cut``: B follows A; no overlap frames.
- ``crossfade``: the blend of ``a_i`` and ``b_i``.
- ``wipe`` (``direction`` left/right/up/down, default right): a hard edge moves across the
  frame in ``direction`` and uncovers B behind it; for ``right`` the columns ``x < round(t W)``
  show B, for ``left`` the columns ``x >= W - round(t W)``, for ``down`` the rows
  ``y < round(t H)``, for ``up`` the rows ``y >= H - round(t H)``.
- ``zoom`` (``zoom`` > 1, default 1.5; ``center`` (cx, cy) as fractions of the frame, default
  the middle): A is magnified about the centre from 1 to ``zoom`` while B settles from
  ``zoom`` to 1, blended with weight ``t`` (a push through the cut).
- ``blur`` (``strength``, default 0.03): both shots are Gaussian-blurred with
  ``sigma = strength x H x (1 - |2t - 1|)`` (sharp at both ends, blurriest at the middle) and
  blended with weight ``t``.
- ``morph``: dense optical flow (OpenCV DIS, medium preset, computed at most
  :data:`FLOW_MAX_SIDE` pixels on the longer side and scaled up) from A's last frame to B's
  first frame and back, computed once per boundary (where the two shots meet) and used for
  every overlap pair. A's pixels are pushed forward by ``t x flow_ab`` and B's backward by
  ``(1 - t) x flow_ba`` (forward splatting: where several pixels land on one spot the one that
  moves most wins, as moving content is usually in front; one-pixel cracks are filled from
  their neighbours). The two warped frames are blended with weight ``t``; where only one of them
  has content (a disocclusion) that one is used; where neither has, each is sampled with its own
  flow at the target pixel (the usual backward-warp approximation). The flow is reliable for
  displacements up to roughly a tenth of the frame on textured content; the automatic choice
  only picks a morph where it measured such a flow.

**Automatic choice** (:func:`choose_transition`): see its docstring for the measures and rules.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.vision.flow import dense_flow

Frame = np.ndarray

TRANSITION_TYPES = ("cut", "crossfade", "wipe", "zoom", "blur", "morph")
WIPE_DIRECTIONS = ("left", "right", "up", "down")
AUTO = "auto"

TRANSITIONS: list[dict[str, Any]] = [
    {"type": "cut", "description": "Instant cut: B follows A, no overlap frames.", "parameters": {}},
    {"type": "crossfade", "description": "Smooth blend: (1 - t) A + t B over the overlap.", "parameters": {}},
    {"type": "wipe", "description": "Directional wipe: a hard edge crosses the frame and uncovers B.",
     "parameters": {"direction": {"enum": list(WIPE_DIRECTIONS), "default": "right"}}},
    {"type": "zoom", "description": "Zoom transition: A zooms in from 1x while B settles from the same zoom to 1x, "
                                    "blended.",
     "parameters": {"zoom": {"type": "number", "minimum": 1.0, "maximum": 8.0, "default": 1.5},
                    "center": {"type": "[cx, cy] fractions of the frame", "default": [0.5, 0.5]}}},
    {"type": "blur", "description": "Blur effect: both shots blur towards the middle of the overlap while they "
                                    "blend.",
     "parameters": {"strength": {"type": "number", "minimum": 0.0, "maximum": 0.2, "default": 0.03,
                                 "description": "peak Gaussian sigma as a fraction of the frame height"}}},
    {"type": "morph", "description": "Optical-flow morph: the shots are warped towards each other along dense "
                                     "optical flow and blended (the offline form of the AI morph).",
     "parameters": {}},
]

FLOW_MAX_SIDE = 512  # morph flow resolution: finer adds little to the warp, costs quadratically
ANALYSIS_WIDTH = 160  # auto mode measures at this width: the rules use shares of the frame
COLOUR_THUMB_WIDTH = 64

# Auto-mode thresholds (documented in choose_transition).
SIMILAR_COLOUR = 0.2
SIMILAR_SSIM = 0.7
STILL_CROSS_FLOW = 0.5
MORPH_MAX_CROSS_FLOW = 10.0
MORPH_MIN_CONSISTENT = 0.7
ZOOM_RATE = 1.0
WIPE_MOTION = 1.0
WIPE_COHERENCE = 0.7
WIPE_AXIS_RATIO = 2.0
DIFFERENT_COLOUR = 0.4
BLUR_MOTION = 2.0
FB_CONSISTENT_PX = 1.0


@dataclass(frozen=True)
class TransitionSpec:
    """One boundary: ``type`` (one of :data:`TRANSITION_TYPES` or ``"auto"``), its requested length
    in seconds and the type's parameters. ``reasons`` / ``measures`` are filled when ``auto`` is
    resolved by :func:`resolve_auto`."""

    type: str
    duration_seconds: float = 0.5
    params: Mapping[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    measures: Mapping[str, Any] = field(default_factory=dict)

    def requested_frames(self, fps: float) -> int:
        """Overlap frames asked for: ``round(duration_seconds * fps)``, 0 for a cut."""
        return 0 if self.type == "cut" else round(self.duration_seconds * fps)


# ---------------------------------------------------------------------------------------------
# Rendering one transition


def render_transition(type: str, tail_frames_a: Sequence[Frame], head_frames_b: Sequence[Frame],
                      n_frames: int, **params: Any) -> list[Frame]:
    """Exactly ``n_frames`` overlap frames from A's last frames to B's first frames.

    ``tail_frames_a`` are aligned to the end of the overlap and ``head_frames_b`` to its start;
    where either has fewer than ``n_frames`` frames, A's first and B's last frame are held (a
    single still of each works). ``cut`` takes ``n_frames = 0`` and returns ``[]``. Raises ``InvalidRequest`` for an
    unknown type or parameter, a cut with overlap, or frames of different shapes.
    """
    _check_type(type)
    if n_frames < 0:
        raise InvalidRequest(f"n_frames must be >= 0, got {n_frames}")
    if type == "cut":
        if n_frames:
            raise InvalidRequest("a cut has no overlap frames: n_frames must be 0")
        return []
    if n_frames == 0:
        return []
    pairs = _pairs(tail_frames_a, head_frames_b, n_frames)
    ts = [(i + 1) / (n_frames + 1) for i in range(n_frames)]
    render = _RENDERERS[type]
    return render(pairs, ts, **params)


def _check_type(type: str) -> None:
    if type not in TRANSITION_TYPES:
        raise InvalidRequest(f"transition type must be one of {', '.join(TRANSITION_TYPES)}; got {type!r}")


def _pairs(tail_a: Sequence[Frame], head_b: Sequence[Frame], n: int) -> list[tuple[Frame, Frame]]:
    if len(tail_a) == 0 or len(head_b) == 0:
        raise InvalidRequest("a transition needs at least one frame of each shot")
    _check_frames([tail_a[0], head_b[0]])
    shape = tail_a[0].shape
    a_idx = [max(0, len(tail_a) - n + i) for i in range(n)]
    b_idx = [min(i, len(head_b) - 1) for i in range(n)]
    pairs = [(tail_a[i], head_b[j]) for i, j in zip(a_idx, b_idx)]
    if any(a.shape != shape or b.shape != shape for a, b in pairs):
        raise InvalidRequest("both shots of a transition must have frames of the same size")
    return pairs


def _check_frames(frames: Iterable[Frame]) -> None:
    for f in frames:
        if not (isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3):
            raise InvalidRequest("frames must be uint8 RGB arrays of shape (H, W, 3)")


def _reject_unknown(params: Mapping[str, Any], type: str) -> None:
    if params:
        raise InvalidRequest(f"unknown parameter(s) for {type}: {', '.join(sorted(params))}")


def _number(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {value}")
    return number


def _blend(a: Frame, b: Frame, t: float) -> Frame:
    return cv2.addWeighted(a, 1.0 - t, b, t, 0.0)


def _crossfade(pairs, ts, **params) -> list[Frame]:
    _reject_unknown(params, "crossfade")
    return [_blend(a, b, t) for (a, b), t in zip(pairs, ts)]


def _wipe(pairs, ts, direction: str = "right", **params) -> list[Frame]:
    _reject_unknown(params, "wipe")
    if direction not in WIPE_DIRECTIONS:
        raise InvalidRequest(f"wipe direction must be one of {', '.join(WIPE_DIRECTIONS)}; got {direction!r}")
    out = []
    for (a, b), t in zip(pairs, ts):
        h, w = a.shape[:2]
        frame = a.copy()
        region = {"right": np.s_[:, : round(t * w)], "left": np.s_[:, w - round(t * w):],
                  "down": np.s_[: round(t * h)], "up": np.s_[h - round(t * h):]}[direction]
        frame[region] = b[region]
        out.append(frame)
    return out


def scale_about(img: Frame, s: float, cx: float, cy: float) -> Frame:
    """``img`` magnified by ``s`` about the pixel ``(cx, cy)``, edges mirrored."""
    m = np.array([[s, 0.0, cx * (1 - s)], [0.0, s, cy * (1 - s)]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def _zoom(pairs, ts, zoom: float = 1.5, center: Sequence[float] = (0.5, 0.5), **params) -> list[Frame]:
    _reject_unknown(params, "zoom")
    zoom = _number(zoom, "zoom", 1.0, 8.0)
    if not isinstance(center, Sequence) or len(center) != 2:
        raise InvalidRequest("zoom center must be two fractions of the frame, [cx, cy]")
    fx, fy = (_number(c, "zoom center", 0.0, 1.0) for c in center)
    out = []
    for (a, b), t in zip(pairs, ts):
        h, w = a.shape[:2]
        cx, cy = fx * (w - 1), fy * (h - 1)
        za = scale_about(a, 1 + (zoom - 1) * t, cx, cy)
        zb = scale_about(b, 1 + (zoom - 1) * (1 - t), cx, cy)
        out.append(_blend(za, zb, t))
    return out


def gaussian_blur(img: Frame, sigma: float) -> Frame:
    """Gaussian blur of ``sigma`` pixels; a wide blur runs on a frame shrunk by ``sigma / 3``
    (the blurred image has no detail the shrink could lose) so the cost does not grow with sigma."""
    if sigma < 0.3:
        return img
    factor = max(1.0, sigma / 3.0)
    if factor == 1.0:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _blur(pairs, ts, strength: float = 0.03, **params) -> list[Frame]:
    _reject_unknown(params, "blur")
    strength = _number(strength, "blur strength", 0.0, 0.2)
    out = []
    for (a, b), t in zip(pairs, ts):
        sigma = strength * a.shape[0] * (1 - abs(2 * t - 1))
        out.append(_blend(gaussian_blur(a, sigma), gaussian_blur(b, sigma), t))
    return out


# ---------------------------------------------------------------------------------------------
# Morph: optical flow, forward splatting, blend


def _gray(img: Frame) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


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
    ga, scale = _resize_to(_gray(a), FLOW_MAX_SIDE)
    gb, _ = _resize_to(_gray(b), FLOW_MAX_SIDE)
    return dense_flow(ga, gb), dense_flow(gb, ga), scale


def _morph(pairs, ts, **params) -> list[Frame]:
    _reject_unknown(params, "morph")
    # The correspondence is measured once, where the shots meet: A's last frame -> B's first.
    flows = morph_flows(pairs[-1][0], pairs[0][1])
    return [morph_frame(a, b, t, flows) for (a, b), t in zip(pairs, ts)]


_RENDERERS = {"crossfade": _crossfade, "wipe": _wipe, "zoom": _zoom, "blur": _blur, "morph": _morph}


# ---------------------------------------------------------------------------------------------
# Timeline and stitching


def _plan(counts: Sequence[int], transitions: Sequence[TransitionSpec], fps: float) -> list[dict[str, Any]]:
    """Overlap frames of each boundary after clamping, with where each starts in the output."""
    if fps <= 0 or not math.isfinite(fps):
        raise InvalidRequest(f"fps must be a positive number, got {fps}")
    if len(counts) == 0:
        raise InvalidRequest("at least one shot is needed")
    if any(c < 1 for c in counts):
        raise InvalidRequest("every shot needs at least one frame")
    if len(transitions) != len(counts) - 1:
        raise InvalidRequest(f"{len(counts)} shots need {len(counts) - 1} transitions, got {len(transitions)}")
    plan = []
    taken_from_a = 0  # overlap frames the previous boundary already took from shot A's start
    shot_start = 0
    for i, spec in enumerate(transitions):
        if spec.type == AUTO:
            raise InvalidRequest("resolve 'auto' transitions (resolve_auto) before timing them")
        _check_type(spec.type)
        if spec.duration_seconds < 0 or not math.isfinite(spec.duration_seconds):
            raise InvalidRequest(f"transition {i} duration_seconds must be >= 0")
        requested = spec.requested_frames(fps)
        available = min(counts[i] - taken_from_a, counts[i + 1])
        n = min(requested, available)
        start = shot_start + counts[i] - n
        entry = {"from_scene": i, "to_scene": i + 1, "type": spec.type, "frames": n,
                 "duration": n / fps, "start_frame": start, "clamped": n < requested}
        if n < requested:
            entry["requested_frames"] = requested
            entry["requested_duration"] = requested / fps
            entry["clamp_reason"] = (f"{requested} frames asked, shot {i} has {counts[i] - taken_from_a} free and "
                                     f"shot {i + 1} has {counts[i + 1]}")
        if spec.reasons:
            entry["reasons"] = list(spec.reasons)
        plan.append(entry)
        shot_start = start
        taken_from_a = n
    return plan


def timeline(shot_frame_counts: Sequence[int], transitions: Sequence[TransitionSpec], fps: float) -> dict[str, Any]:
    """Timing of a multi-shot edit without rendering it.

    Returns ``total_frames`` (= sum of shot frames - sum of overlaps), ``total_duration_seconds``
    (``total_frames / fps``), ``total_scenes``, ``scenes`` ``[{scene, start_frame, frames}]``
    (where each shot's first frame lands in the output) and ``transitions``
    ``[{from_scene, to_scene, type, duration, frames, start_frame, clamped, ...}]`` where
    ``duration = frames / fps`` and ``start_frame`` is the first output frame of the overlap (for
    a cut, B's first frame); a clamped boundary adds ``requested_frames``,
    ``requested_duration`` and ``clamp_reason``.
    """
    plan = _plan(shot_frame_counts, transitions, fps)
    total = int(sum(shot_frame_counts)) - sum(p["frames"] for p in plan)
    scene_starts = [0] + [p["start_frame"] for p in plan]
    return {
        "total_scenes": len(shot_frame_counts),
        "total_frames": total,
        "total_duration_seconds": total / fps,
        "fps": fps,
        "scenes": [{"scene": i, "start_frame": s, "frames": int(c)}
                   for i, (s, c) in enumerate(zip(scene_starts, shot_frame_counts))],
        "transitions": plan,
    }


def resolve_auto(shots: Sequence[Sequence[Frame]], transitions: Sequence[TransitionSpec]) -> list[TransitionSpec]:
    """``transitions`` with every ``auto`` replaced by :func:`choose_transition`'s pick for its
    boundary (from A's last two and B's first two frames), keeping the duration and recording
    the reasons and measures."""
    if len(transitions) != len(shots) - 1:
        raise InvalidRequest(f"{len(shots)} shots need {len(shots) - 1} transitions, got {len(transitions)}")
    out = []
    for i, spec in enumerate(transitions):
        if spec.type != AUTO:
            out.append(spec)
            continue
        kind, reasons, measures = choose_transition(shots[i][-2:], shots[i + 1][:2])
        params = {"direction": measures["wipe_direction"]} if kind == "wipe" else {}
        out.append(replace(spec, type=kind, params=params, reasons=tuple(reasons), measures=measures))
    return out


def stitch(shots: Sequence[Sequence[Frame]], transitions: Sequence[TransitionSpec], fps: float) -> Iterator[Frame]:
    """Stream the edited sequence: each shot without its overlap frames, and each boundary's
    rendered transition in place of them. Yields exactly ``timeline(...)["total_frames"]``
    frames. ``auto`` transitions are resolved first (:func:`resolve_auto`)."""
    if len(shots) == 0:
        raise InvalidRequest("at least one shot is needed")
    shape = shots[0][0].shape if len(shots[0]) else None
    for shot in shots:
        _check_frames(shot[:1])
        if len(shot) and shot[0].shape != shape:
            raise InvalidRequest("every shot must have frames of the same size")
    specs = resolve_auto(shots, transitions)
    plan = _plan([len(s) for s in shots], specs, fps)
    return _stream(shots, specs, plan)


def _stream(shots, specs, plan) -> Iterator[Frame]:
    head = 0  # frames of the current shot already used by the previous transition
    for i, shot in enumerate(shots):
        tail = plan[i]["frames"] if i < len(plan) else 0
        yield from shot[head: len(shot) - tail]
        if i < len(plan):
            spec = specs[i]
            n = plan[i]["frames"]
            if spec.type != "cut":
                yield from render_transition(spec.type, shot[len(shot) - n:], shots[i + 1][:n], n, **spec.params)
            head = n


# ---------------------------------------------------------------------------------------------
# Automatic choice


def _analysis(frame: Frame) -> np.ndarray:
    h, w = frame.shape[:2]
    return cv2.resize(frame, (ANALYSIS_WIDTH, max(8, round(h * ANALYSIS_WIDTH / w))), interpolation=cv2.INTER_AREA)


def colour_distance(a: Frame, b: Frame) -> float:
    """Bhattacharyya distance (0 = same colours, 1 = disjoint) between the CIELAB colour
    histograms (4 L x 8 a x 8 b bins) of two RGB frames, each shrunk to
    :data:`COLOUR_THUMB_WIDTH` px wide first: the shrink averages away pixel noise, which would
    otherwise scatter flat regions over neighbouring bins (an HSV hue histogram is worse still:
    the hue of greyish pixels is noise)."""
    return float(np.clip(cv2.compareHist(lab_histogram(a), lab_histogram(b), cv2.HISTCMP_BHATTACHARYYA), 0.0, 1.0))


def lab_histogram(img: Frame) -> np.ndarray:
    """Normalised 4 x 8 x 8 CIELAB histogram of an RGB image's thumbnail."""
    h, w = img.shape[:2]
    thumb = cv2.resize(img, (COLOUR_THUMB_WIDTH, max(1, round(h * COLOUR_THUMB_WIDTH / w))),
                       interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(thumb, cv2.COLOR_RGB2LAB)
    hist = cv2.calcHist([lab], [0, 1, 2], None, [4, 8, 8], [0, 256, 0, 256, 0, 256])
    return cv2.normalize(hist, None, 1.0, 0.0, cv2.NORM_L1)


def mean_lab_delta(a: Frame, b: Frame) -> float:
    """CIE76 delta E between the mean CIELAB colours of two RGB frames."""
    la = cv2.cvtColor(a.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(0)
    lb = cv2.cvtColor(b.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(0)
    return float(np.linalg.norm(la - lb))


def _window(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), 1.5)


def ssim(a_gray: np.ndarray, b_gray: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004; Gaussian window sigma 1.5, K1 0.01, K2 0.03)."""
    a, b = a_gray.astype(np.float64), b_gray.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _window(a), _window(b)
    var_a = _window(a * a) - mu_a ** 2
    var_b = _window(b * b) - mu_b ** 2
    cov = _window(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def _motion(frames: Sequence[Frame]) -> dict[str, float] | None:
    """Motion between two consecutive analysis frames, in % of the frame width per frame."""
    if len(frames) < 2:
        return None
    a, b = _gray(_analysis(frames[-2])), _gray(_analysis(frames[-1]))
    flow = dense_flow(a, b)
    zoom_rate = _expansion(flow) * 100.0
    flow = flow * (100.0 / a.shape[1])
    mean_mag = float(np.hypot(flow[..., 0], flow[..., 1]).mean())
    dx, dy = float(flow[..., 0].mean()), float(flow[..., 1].mean())
    return {"magnitude": mean_mag, "dx": dx, "dy": dy,
            "coherence": math.hypot(dx, dy) / mean_mag if mean_mag > 1e-9 else 0.0,
            "zoom_rate": zoom_rate}


def _expansion(flow: np.ndarray) -> float:
    """Median radial expansion of ``flow`` about the frame centre ``c``: a zoom by ``1 + z``
    moves ``x`` by ``z (x - c)``, so ``(x - c) . flow / |x - c|^2 = z`` everywhere, while a
    shift gives values symmetric about 0. Pixels within a tenth of the frame of the centre,
    where the ratio is unstable, are left out; the median ignores seams and occlusions."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - (w - 1) / 2, ys - (h - 1) / 2
    r2 = dx * dx + dy * dy
    far = r2 > (0.1 * max(h, w)) ** 2
    return float(np.median(((dx * flow[..., 0] + dy * flow[..., 1]) / np.maximum(r2, 1e-6))[far]))


def _cross_flow(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean flow magnitude a -> b (% of width) and the share of pixels whose forward-backward
    error is under :data:`FB_CONSISTENT_PX` analysis pixels (how far the flow can be trusted)."""
    fab, fba = dense_flow(a, b), dense_flow(b, a)
    h, w = a.shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    back = cv2.remap(fba, grid_x + fab[..., 0], grid_y + fab[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    fb_error = np.hypot(fab[..., 0] + back[..., 0], fab[..., 1] + back[..., 1])
    magnitude = float(np.hypot(fab[..., 0], fab[..., 1]).mean()) * 100.0 / w
    return magnitude, float((fb_error < FB_CONSISTENT_PX).mean())


def measure_boundary(last_frames_a: Sequence[Frame], first_frames_b: Sequence[Frame]) -> dict[str, Any]:
    """The measures :func:`choose_transition` decides on (see there)."""
    if len(last_frames_a) == 0 or len(first_frames_b) == 0:
        raise InvalidRequest("auto transition needs at least one frame of each shot")
    _check_frames([last_frames_a[-1], first_frames_b[0]])
    a_last, b_first = _analysis(last_frames_a[-1]), _analysis(first_frames_b[0])
    ga, gb = _gray(a_last), _gray(b_first)
    cross_mag, cross_consistent = _cross_flow(ga, gb)
    motion_a = _motion(last_frames_a[-2:])
    motion_b = _motion(first_frames_b[:2])
    samples = [m for m in (motion_a, motion_b) if m is not None]
    strongest = max(samples, key=lambda m: m["magnitude"]) if samples else None
    zoomiest = max(samples, key=lambda m: abs(m["zoom_rate"])) if samples else None
    measures: dict[str, Any] = {
        "colour_distance": colour_distance(a_last, b_first),
        "lab_delta_e": mean_lab_delta(a_last, b_first),
        "ssim": ssim(ga, gb),
        "cross_flow": cross_mag,
        "cross_flow_consistent": cross_consistent,
        "motion_end_of_a": motion_a,
        "motion_start_of_b": motion_b,
        "motion": strongest["magnitude"] if strongest else None,
        "motion_dx": strongest["dx"] if strongest else None,
        "motion_dy": strongest["dy"] if strongest else None,
        "motion_coherence": strongest["coherence"] if strongest else None,
        "zoom_rate": zoomiest["zoom_rate"] if zoomiest else None,
    }
    measures["wipe_direction"] = _direction(measures)
    return measures


def _direction(m: Mapping[str, Any]) -> str | None:
    if m["motion"] is None:
        return None
    dx, dy = m["motion_dx"], m["motion_dy"]
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def choose_transition(last_frames_a: Sequence[Frame], first_frames_b: Sequence[Frame]) -> tuple[str, list[str], dict]:
    """Pick a transition from measured differences between the end of A and the start of B.

    Measures (all at :data:`ANALYSIS_WIDTH` px wide; motion in % of the frame width per frame):

    - ``colour_distance``: Bhattacharyya distance of the CIELAB histograms of A's last and B's
      first frame (:func:`colour_distance`; 0 same .. 1 disjoint); ``lab_delta_e``: CIE76
      delta E of their mean Lab colours (reported, informative).
    - ``ssim``: structural similarity of the two frames' luma.
    - ``cross_flow``: mean DIS optical-flow magnitude from A's last to B's first frame, and
      ``cross_flow_consistent``: share of pixels whose forward-backward flow error is < 1 px.
    - ``motion``: mean flow magnitude between A's last two frames and between B's first two
      (the stronger one is used), its mean vector ``motion_dx`` / ``motion_dy``, its coherence
      ``|mean vector| / mean magnitude`` (1 = everything moves the same way) and ``zoom_rate``:
      the median radial expansion of the flow about the frame centre (a zoom by ``1 + z`` per
      frame gives ``z``; :func:`_expansion`), in % per frame.
      Needs two frames of a shot; with one frame each, the motion rules are skipped.

    Rules, first match wins:

    1. similar shots: colour distance <= 0.2 and SSIM >= 0.7: a ``cut`` when the cross flow is
       < 0.5 % (the switch is invisible); a ``morph`` when the cross flow is <= 10 % and >= 70 %
       of it is forward-backward consistent (the flow can be trusted to carry A onto B);
       otherwise the later rules decide.
    2. ``zoom`` when |zoom_rate| >= 1 % per frame.
    3. ``wipe`` in the motion's direction when motion >= 1 %, coherence >= 0.7 and the
       motion is at least twice as strong along its main axis as across it.
    4. ``blur`` when colour distance > 0.4 and motion >= 2 % (very different and moving: a blur
       hides the mismatch).
    5. ``crossfade`` when colour distance > 0.4 (big colour change), and also when no rule
       matched (the neutral choice).

    Returns ``(type, reasons, measures)``; the reasons quote the numbers that decided.
    """
    m = measure_boundary(last_frames_a, first_frames_b)
    reasons: list[str] = []
    colour, structure = m["colour_distance"], m["ssim"]
    similar = colour <= SIMILAR_COLOUR and structure >= SIMILAR_SSIM
    if similar:
        reasons.append(f"colour distance {colour:.2f} <= {SIMILAR_COLOUR} and SSIM {structure:.2f} >= "
                       f"{SIMILAR_SSIM}: the shots look alike")
        if m["cross_flow"] < STILL_CROSS_FLOW:
            reasons.append(f"flow between them {m['cross_flow']:.2f}% < {STILL_CROSS_FLOW}% of the width: cut")
            return "cut", reasons, m
        if m["cross_flow"] <= MORPH_MAX_CROSS_FLOW and m["cross_flow_consistent"] >= MORPH_MIN_CONSISTENT:
            reasons.append(f"flow between them {m['cross_flow']:.2f}% <= {MORPH_MAX_CROSS_FLOW}% of the width and "
                           f"{m['cross_flow_consistent']:.0%} consistent >= {MORPH_MIN_CONSISTENT:.0%}: morph")
            return "morph", reasons, m
        reasons.append(f"flow between them ({m['cross_flow']:.2f}%, {m['cross_flow_consistent']:.0%} consistent) "
                       "too large or unreliable to morph")
    if m["motion"] is not None:
        zoom_rate = m["zoom_rate"]
        if abs(zoom_rate) >= ZOOM_RATE:
            reasons.append(f"zooming motion {zoom_rate:+.2f}% per frame (|z| >= {ZOOM_RATE}%): zoom")
            return "zoom", reasons, m
        if _wipe_motion(m):
            reasons.append(f"motion {m['motion']:.2f}% per frame, {m['motion_coherence']:.2f} coherent, mostly "
                           f"{m['wipe_direction']}: wipe {m['wipe_direction']}")
            return "wipe", reasons, m
        if colour > DIFFERENT_COLOUR and m["motion"] >= BLUR_MOTION:
            reasons.append(f"colour distance {colour:.2f} > {DIFFERENT_COLOUR} and motion {m['motion']:.2f}% >= "
                           f"{BLUR_MOTION}%: blur")
            return "blur", reasons, m
    if colour > DIFFERENT_COLOUR:
        reasons.append(f"colour distance {colour:.2f} > {DIFFERENT_COLOUR}: crossfade")
    else:
        reasons.append(f"colour distance {colour:.2f}, SSIM {structure:.2f}, no stronger cue: crossfade")
    return "crossfade", reasons, m


def _wipe_motion(m: Mapping[str, Any]) -> bool:
    along, across = sorted((abs(m["motion_dx"]), abs(m["motion_dy"])), reverse=True)
    return (m["motion"] >= WIPE_MOTION and m["motion_coherence"] >= WIPE_COHERENCE
            and along >= WIPE_AXIS_RATIO * across)
