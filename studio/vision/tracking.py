"""Point tracking: pyramidal Lucas-Kanade with a forward-backward check, the one tracker the
consistency tracker (an entity's box from frame to frame) and inpainting (the object's box,
and the background's frame-to-frame homographies) use.

A point is kept when LK tracks it forward and back (both statuses 1) and the backward track
lands within ``max_error`` px of where it started (Kalal et al. 2010, "Forward-backward error"):
points on occlusion boundaries, in flat regions or on repeated texture fail that test.
"""

from __future__ import annotations

import cv2
import numpy as np

#: OpenCV's default LK stopping rule, spelled out so every caller runs the same one.
CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)


def track_points(before: np.ndarray, after: np.ndarray, points: np.ndarray, *, initial: np.ndarray | None = None,
                 win_size: int = 15, max_level: int = 2, max_error: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Track ``points`` (``(n, 1, 2)`` float32, as ``cv2.goodFeaturesToTrack`` gives them) from
    grey ``before`` to grey ``after``. Returns ``(tracked, ok)``: the points in ``after`` (same
    shape) and an ``(n,)`` bool array of the ones that passed the forward-backward check.

    ``initial``: where to start the forward search (e.g. the points moved by the last known
    velocity; the backward search then starts at ``points``) instead of at ``points``;
    ``win_size``: the LK window side in px; ``max_level``: pyramid levels above the image (more:
    larger motions); ``max_error``: the forward-backward distance a kept point may have, in px."""
    params = {"winSize": (win_size, win_size), "maxLevel": max_level, "criteria": CRITERIA}
    if initial is None:
        tracked, st1, _ = cv2.calcOpticalFlowPyrLK(before, after, points, None, **params)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(after, before, tracked, None, **params)
    else:
        flags = cv2.OPTFLOW_USE_INITIAL_FLOW
        tracked, st1, _ = cv2.calcOpticalFlowPyrLK(before, after, points, initial, flags=flags, **params)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(after, before, tracked, points.copy(), flags=flags, **params)
    error = np.linalg.norm((back - points).reshape(-1, 2), axis=1)
    return tracked, (st1.ravel() == 1) & (st2.ravel() == 1) & (error < max_error)
