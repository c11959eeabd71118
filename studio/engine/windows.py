"""Frame windows: how a clip longer than a model's ``max_frames`` runs in several passes.

Every model path that windows a clip uses these, whichever of the two schemes it runs:

- **Balanced** (:func:`balanced_windows`, Wan VACE: inpaint, V2V with a reference): the clip is
  cut into equal spans known in advance; each pass after the first starts with ``context``
  frames the previous pass *generated*, given to the model as known frames, so no seam shows.
- **Sliding** (:func:`sliding_windows`, WanVideoToVideo; :func:`window_count` also counts Wan
  Animate's segments): windows of ``size`` frames taken as the source streams in, each after
  the first repeating the previous one's last ``overlap`` source frames; the outputs of those
  shared frames are cross-faded (:func:`crossfade`).

Wan's causal VAE makes frame counts ``4k + 1`` (:func:`four_k_plus_1`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import cv2
import numpy as np

#: Frames of the previous window that each later balanced window continues from.
CONTEXT_FRAMES = 5


def four_k_plus_1(frames: int) -> int:
    """The smallest ``4k + 1 >= frames`` (Wan's causal VAE: 1 + 4 per latent frame)."""
    return 4 * math.ceil((frames - 1) / 4) + 1


def balanced_windows(frames: int, max_frames: int, context: int) -> list[tuple[int, int, int, int]]:
    """Split ``frames`` into balanced windows for a model of ``max_frames`` (a 4k+1 count):
    ``(start, end, context, generated)``: source frames ``start..end-1`` come after ``context``
    frames of the previous window's output (0 for the first window), and the pass generates
    ``generated`` = ``context + end - start`` rounded up to 4k+1 (at most ``max_frames``)."""
    if frames <= max_frames:
        return [(0, frames, 0, four_k_plus_1(frames))]
    count = math.ceil(frames / (max_frames - context))
    bounds = [round(i * frames / count) for i in range(count + 1)]
    return [(s, e, c, four_k_plus_1(c + e - s))
            for k, (s, e) in enumerate(zip(bounds, bounds[1:])) for c in [0 if k == 0 else context]]


def sliding_windows(frames: Iterable[np.ndarray], size: int, overlap: int) -> Iterator[list[np.ndarray]]:
    """Windows of at most ``size`` frames, each after the first starting with the previous
    window's last ``overlap`` frames (its new frames follow); streams, holding one window."""
    window: list[np.ndarray] = []
    fresh = 0  # frames of this window not in the previous one
    for frame in frames:
        window.append(frame)
        fresh += 1
        if len(window) == size:
            yield window
            window, fresh = window[size - overlap:], 0
    if fresh:
        yield window


def window_count(frames: int, size: int, overlap: int) -> int:
    """How many windows :func:`sliding_windows` makes of ``frames`` frames (at least one): each
    window after the first adds ``size - overlap`` new frames."""
    frames = max(frames, size)
    return -(-(frames - overlap) // (size - overlap))


def crossfade(held: Sequence[np.ndarray], new: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames two sliding windows share: from the earlier window's output (``held``) to
    the later one's (``new``), linearly (weights ``(j + 1) / (n + 1)``), so no seam shows."""
    for j, (a, b) in enumerate(zip(held, new)):
        w = (j + 1) / (len(held) + 1)
        yield cv2.addWeighted(a, 1.0 - w, b, w, 0.0)
