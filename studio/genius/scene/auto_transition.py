"""The automatic choice of a scene boundary's transition (``auto``): measures and rules.

:func:`choose_transition` measures how the end of shot A and the start of shot B differ
(colour, structure, optical flow between them and motion within each) and picks a transition
by documented rules; its docstring gives every measure, threshold and rule.
``studio.genius.scene.transitions.resolve_auto`` applies it to each ``auto`` boundary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.genius.scene.frames import Frame, check_frames, gray
from studio.vision.flow import dense_flow

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
    a, b = gray(_analysis(frames[-2])), gray(_analysis(frames[-1]))
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
    check_frames([last_frames_a[-1], first_frames_b[0]])
    a_last, b_first = _analysis(last_frames_a[-1]), _analysis(first_frames_b[0])
    ga, gb = gray(a_last), gray(b_first)
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
