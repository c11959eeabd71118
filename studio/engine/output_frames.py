"""From the frames a model generated to the frames of the delivered video.

Time (``GenerationPlan.temporal``):
- ``nearest``: the output has at most as many frames as were generated; each output frame is
  the generated frame nearest in time (frames are dropped, never repeated).
- ``flow``: the output has more frames than were generated (an fps above the model's, or a
  duration beyond one pass); output frame ``k`` sits at ``GenerationPlan.position(k)`` =
  ``k (G - 1) / (O - 1)`` on the generated frames, and every position between two of them is synthesised by
  occlusion-aware optical-flow interpolation (``studio.vision.interpolation``), so no frame is
  shown twice. The first and last output frames are the first and last generated ones.

Space (``GenerationPlan.spatial``):
- ``resize``: the output is not larger than what was generated (area filter down).
- ``upscale``: it is larger; bicubic resampling and edge-aware sharpening at the new scale
  (``studio.vision.upscale``), which keeps edges crisp where a plain resize blurs them, or, with
  ``GenerationPlan.upscaler`` ``learned``, the server's network (``studio.engine.super_resolution``).

Frames are pushed one at a time in order and the output frames come out as soon as they can
be made, holding only the previous generated frame: memory does not grow with duration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from studio.engine.plan import GenerationPlan
from studio.media.video import resize
from studio.vision.flow import Flow
from studio.vision.interpolation import FramePair
from studio.vision.upscale import upscale_frame


class OutputFrames:
    """Push generated frames in order; get the output frames they complete. ``learned``: the
    learned upscaler, ``(frame, width, height) -> frame``, for a plan that asks for it."""

    def __init__(self, plan: GenerationPlan, learned: Callable[[np.ndarray, int, int], np.ndarray] | None = None):
        self.plan = plan
        self.learned = learned
        self.out_index = 0  # the next output frame to make
        self._gen_index = -1  # the last generated frame pushed
        self._previous: np.ndarray | None = None
        self._flow = Flow() if plan.temporal == "flow" else None

    def push(self, generated: np.ndarray) -> Iterator[np.ndarray]:
        """The output frames (output size, in order) that ``generated``, the next generated
        frame, completes."""
        self._gen_index += 1
        if self.plan.temporal == "flow":
            yield from self._interpolated(generated)
        else:
            while self.out_index < self.plan.out_frames and self.plan.source_index(self.out_index) <= self._gen_index:
                self.out_index += 1
                yield self._sized(generated)
        self._previous = generated

    def _interpolated(self, current: np.ndarray) -> Iterator[np.ndarray]:
        pair = None
        while self.out_index < self.plan.out_frames:
            position = self.plan.position(self.out_index)
            if position > self._gen_index:
                return
            t = position - (self._gen_index - 1)  # in (0, 1] between the previous frame and this one
            if t >= 1 or self._previous is None:
                frame = current
            else:
                pair = pair or FramePair.between(self._previous, current, self._flow)
                frame = pair.at(float(t))
            self.out_index += 1
            yield self._sized(frame)

    def _sized(self, frame: np.ndarray) -> np.ndarray:
        plan = self.plan
        if plan.spatial == "upscale" and self.learned is not None:
            return self.learned(frame, plan.out_width, plan.out_height)
        if plan.spatial == "upscale":
            return upscale_frame(frame, plan.out_width, plan.out_height)
        return resize(frame, plan.out_width, plan.out_height)

