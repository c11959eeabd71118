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
- ``morph``: A and B warped towards each other along dense optical flow and blended
  (``studio.genius.scene.morph`` documents the flow, the splatting and the blend).

**Automatic choice** (``auto``): :func:`resolve_auto` replaces each ``auto`` boundary by
``studio.genius.scene.auto_transition.choose_transition``'s pick; its docstring gives the
measures and rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.genius.scene.auto_transition import choose_transition
from studio.genius.scene.frames import Frame, check_frames
from studio.genius.scene.morph import render_morph

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
    check_frames([tail_a[0], head_b[0]])
    shape = tail_a[0].shape
    a_idx = [max(0, len(tail_a) - n + i) for i in range(n)]
    b_idx = [min(i, len(head_b) - 1) for i in range(n)]
    pairs = [(tail_a[i], head_b[j]) for i, j in zip(a_idx, b_idx)]
    if any(a.shape != shape or b.shape != shape for a, b in pairs):
        raise InvalidRequest("both shots of a transition must have frames of the same size")
    return pairs




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



def _morph(pairs, ts, **params) -> list[Frame]:
    _reject_unknown(params, "morph")
    return render_morph(pairs, ts)


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
        check_frames(shot[:1])
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
