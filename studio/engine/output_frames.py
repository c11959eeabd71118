"""From the frames a model generated to the frames of the delivered video.

Time (``GenerationPlan.temporal``):
- ``nearest``: the output has at most as many frames as were generated; each output frame is
  the generated frame nearest in time (frames are dropped, never repeated).
- ``flow``: the output has more frames than were generated (an fps above the model's, or a
  duration beyond one pass); output frame ``k`` sits at ``GenerationPlan.position(k)`` =
  ``k (G - 1) / (O - 1)`` on the generated frames, and every position between two of them is synthesised by
  occlusion-aware optical-flow interpolation (``studio.vision.interpolation``), or, with
  ``GenerationPlan.interpolator`` ``learned``, the server's RIFE network
  (``studio.engine.learned_interpolation``), so no frame is shown twice. The first and last
  output frames are the first and last generated ones.

Space (``GenerationPlan.spatial``):
- ``resize``: the output is not larger than what was generated (area filter down).
- ``upscale``: it is larger; bicubic resampling and edge-aware sharpening at the new scale
  (``studio.vision.upscale``), which keeps edges crisp where a plain resize blurs them, or, with
  ``GenerationPlan.upscaler`` ``learned``, the server's network (``studio.engine.super_resolution``).

Frames are pushed one at a time in order and the output frames come out as soon as they can
be made, holding only the previous generated frame: memory does not grow with duration.
``ClipSink`` carries them on to the encoder, the stream and the thumbnail, for the runs that
generate a clip piece by piece (chained windows, autoregressive chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.engine.plan import GenerationPlan
from studio.media.frame_boards import FINAL
from studio.media.video import Mp4Writer, fit_width, resize, write_jpeg
from studio.vision.flow import Flow
from studio.vision.interpolation import FramePair
from studio.vision.upscale import upscale_frame

if TYPE_CHECKING:
    from studio.engine.t2v import RunHooks


@dataclass(frozen=True)
class LearnedNetworks:
    """The server's networks a plan asks for (None: the classical path): ``upscale(frame, width,
    height) -> frame`` (``studio.engine.super_resolution``) and ``interpolate(frame0, frame1, t)
    -> frame`` (``studio.engine.learned_interpolation``)."""

    upscale: Callable[[np.ndarray, int, int], np.ndarray] | None = None
    interpolate: Callable[[np.ndarray, np.ndarray, float], np.ndarray] | None = None


class OutputFrames:
    """Push generated frames in order; get the output frames they complete. ``learned``: the
    server's networks, for a plan that asks for them."""

    def __init__(self, plan: GenerationPlan, learned: LearnedNetworks | None = None):
        self.plan = plan
        learned = learned or LearnedNetworks()
        self.upscale, self.interpolate = learned.upscale, learned.interpolate
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
            elif self.interpolate is not None:
                frame = self.interpolate(self._previous, current, float(t))
            else:
                pair = pair or FramePair.between(self._previous, current, self._flow)
                frame = pair.at(float(t))
            self.out_index += 1
            yield self._sized(frame)

    def _sized(self, frame: np.ndarray) -> np.ndarray:
        plan = self.plan
        if plan.spatial == "upscale" and self.upscale is not None:
            return self.upscale(frame, plan.out_width, plan.out_height)
        if plan.spatial == "upscale":
            return upscale_frame(frame, plan.out_width, plan.out_height)
        return resize(frame, plan.out_width, plan.out_height)


THUMBNAIL_WIDTH = 320


class ClipSink:
    """Clip frames in, output frames out: interpolated and sized (``OutputFrames``), encoded,
    streamed, and the thumbnail taken from the middle (or, for a partial clip, the last) frame."""

    def __init__(self, plan: GenerationPlan, hooks: RunHooks, writer: Mp4Writer, thumbnail_path: Path,
                 learned: LearnedNetworks | None = None):
        self.plan, self.hooks, self.writer, self.thumbnail_path = plan, hooks, writer, thumbnail_path
        self.output = OutputFrames(plan, learned)
        self.last: np.ndarray | None = None
        self.thumbnail_written = False

    def push(self, clip_frames: list[np.ndarray], progress: float) -> None:
        streaming = self.hooks.streaming()
        for generated in clip_frames:
            for frame in self.output.push(generated):
                index = self.writer.frames_written
                self.writer.write(frame)
                if streaming:
                    self.hooks.on_stream_frame(index, FINAL, frame, progress)
                if index == self.plan.out_frames // 2:
                    self._thumbnail(frame)
                self.last = frame

    def finish(self) -> None:
        if not self.thumbnail_written and self.last is not None:
            self._thumbnail(self.last)

    def _thumbnail(self, frame: np.ndarray) -> None:
        write_jpeg(self.thumbnail_path, fit_width(frame, min(THUMBNAIL_WIDTH, self.plan.out_width)))
        self.thumbnail_written = True
