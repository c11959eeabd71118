"""Joining a chain's windows into one clip: colour drift correction and blended overlaps.

Each window after the first starts by re-rendering the previous window's last ``context``
frames (its conditioning, ``studio.engine.plan.Window``) before it makes new ones. Two things
would show where windows meet:

- **drift**: the model's rendering of the known frames comes back a little brighter, darker or
  shifted in colour, and the whole window with it; over a minute of windows that adds up.
  Every frame of the window gets the per-channel gain and offset that map its rendering of the
  known frames onto the known frames (means and spreads matched, :func:`colour_correction`);
- **a seam**: the overlap frames exist twice, as the previous window made them and as this one
  re-rendered them; they are cross-faded from the one to the other
  (``studio.engine.windows.crossfade``).

:class:`WindowStitcher` holds back each window's last frames until the next window has
re-rendered them, so it holds at most ``context`` frames between windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from studio.engine.windows import crossfade

#: A window's colour is corrected by at most this factor of spread either way: a larger gap is
#: a change of scene content, not drift, and stretching it would amplify noise.
MAX_GAIN = 2.0


@dataclass(frozen=True)
class ColourCorrection:
    """``frame * gain + offset`` per RGB channel."""

    gain: tuple[float, float, float]
    offset: tuple[float, float, float]

    def apply(self, frame: np.ndarray) -> np.ndarray:
        corrected = frame.astype(np.float32) * np.float32(self.gain) + np.float32(self.offset)
        return np.clip(np.rint(corrected), 0, 255).astype(np.uint8)

    def to_dict(self) -> dict:
        return {"gain": [round(g, 4) for g in self.gain], "offset": [round(o, 2) for o in self.offset]}


def colour_correction(rendered: Sequence[np.ndarray], known: Sequence[np.ndarray]) -> ColourCorrection:
    """The per-channel gain and offset that give ``rendered`` (a model's rendering of the known
    frames) the mean and spread of ``known`` (the frames themselves); gain within
    ``[1 / MAX_GAIN, MAX_GAIN]``."""
    r = np.stack(rendered).reshape(-1, 3).astype(np.float64)
    k = np.stack(known).reshape(-1, 3).astype(np.float64)
    gain = np.clip(k.std(axis=0) / np.maximum(r.std(axis=0), 1.0), 1 / MAX_GAIN, MAX_GAIN)
    offset = k.mean(axis=0) - gain * r.mean(axis=0)
    return ColourCorrection(tuple(float(g) for g in gain), tuple(float(o) for o in offset))


class WindowStitcher:
    """Feed each window's frames in order (:meth:`add`); get the clip's frames as they are final."""

    def __init__(self) -> None:
        self.held: list[np.ndarray] = []  # the last window's frames the next one re-renders

    def known_frames(self, context: int) -> list[np.ndarray]:
        """The frames the next window continues from (its VACE known frames)."""
        return self.held[len(self.held) - context:]

    def add(self, frames: Sequence[np.ndarray], context: int, new: int,
            hold: int) -> tuple[list[np.ndarray], ColourCorrection | None]:
        """Take a window's generated frames: ``context`` re-rendered known frames, then ``new``
        clip frames (frames past those pad the pass and are dropped). Returns the clip frames now
        final and the window's colour correction (None for the first window). The window's last
        ``hold`` new frames (the next window's context; 0 for the last window) are kept back."""
        correction = colour_correction(frames[:context], self.known_frames(context)) if context else None
        window = [correction.apply(f) if correction else f for f in frames[:context + new]]
        overlap = list(crossfade(self.known_frames(context), window[:context])) if context else []
        fresh = window[context:]
        hold = min(hold, len(fresh))
        final, self.held = overlap + fresh[:len(fresh) - hold], fresh[len(fresh) - hold:]
        return final, correction

    def flush(self) -> list[np.ndarray]:
        """The frames held back (the chain ends here: the last window, or a cancel)."""
        held, self.held = self.held, []
        return held
