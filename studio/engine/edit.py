"""Video-in, video-out tasks: the video-side genius features on the one durable queue.

Lip-sync, inpainting, V2V, consistency tracking and scene edits are tasks like any generation:
a row in the store before the reply, run by the worker under the GPU lock, ending in an H.264
mp4 + thumbnail + result row, with progress, cancellation and the same error handling.

A feature (``studio/genius/<feature>/``) contributes two things:

- a ``submit`` (``submit.py``): validate the request, resolve the source video (a completed
  task of the caller's, or an uploaded file), fetch URL inputs through the guarded fetcher,
  store what the run needs under an inputs folder, and queue its typed spec (an ``EditSpec``
  subclass, ``studio.engine.spec``);
- a ``run(job: EditJob) -> EditOutcome`` (``run.py``): the work, reading ``job.spec`` and
  writing frames through ``write_video``.

The composition root (``studio.core``) hands the worker a ``{kind: run}`` table and the spec
registry; nothing is looked up by module name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from studio.engine.output_frames import THUMBNAIL_WIDTH
from studio.engine.run import DEFAULT_ADVICE, ModelRun, model_run
from studio.engine.spec import EditSpec, SourceVideo
from studio.errors import InvalidRequest
from studio.media.video import Mp4Writer, VideoInfo, fit_width, probe_video, read_frames, write_jpeg

if TYPE_CHECKING:
    from studio.jobs.store import Task, TaskStore
    from studio.media.paths import MediaPaths
    from studio.models.loader import ModelCache

MAX_SOURCE_FRAMES = 60 * 60  # one minute at 60 fps
SOURCE_NAME = "source.mp4"
# Seconds per frame assumed for a kind's classical path before any task of it was measured here:
# the slowest method of the kind in bench/RESULTS.md ("Classical video paths at 480p", 2-vCPU VM,
# algorithm alone). A prior, and the task status says so (estimate_basis "prior").
CLASSICAL_PRIOR_SECONDS_PER_FRAME = {"inpaint": 0.0310, "v2v": 0.0795, "lipsync": 0.0107, "consistency": 0.0046,
                                     "scene": 0.0332}
# Model paths and kinds without a benchmark: an assumption until the first task of them is measured.
PRIOR_SECONDS_PER_FRAME = 0.05
FRAME_RATE = "edit_seconds_per_frame"


class Cancelled(Exception):
    """Raised by ``EditJob.check`` when the task was cancelled."""


class EditHooks(Protocol):
    def should_cancel(self) -> bool: ...
    def on_progress(self, fraction: float, message: str) -> None: ...


@dataclass
class EditJob:
    """What a feature's ``run`` gets: its typed spec, its inputs, where to write, and hooks."""

    task_id: str
    kind: str
    spec: EditSpec  # what the submit stored (the feature's spec class, studio.engine.spec)
    inputs: Path  # folder holding this task's stored inputs (source video, fetched media)
    video_path: Path
    thumbnail_path: Path
    hooks: EditHooks
    source: Path | None = None  # the input video, when the feature takes one
    paths: "MediaPaths | None" = None  # other tasks' media (a scene's shots)
    store: "TaskStore | None" = None  # other tasks' rows (a scene's shots)
    models: "ModelCache | None" = None  # the worker's loaded pipelines, for a feature's model path
    progress: float = field(default=0.0, init=False)  # the furthest fraction reported

    def source_info(self) -> VideoInfo:
        if self.source is None:
            raise InvalidRequest("this task has no source video")
        return probe_video(self.source)

    def source_frames(self) -> Iterable[np.ndarray]:
        return read_frames(self.source)

    def read_source(self, until: float) -> list[np.ndarray]:
        """Every source frame, in memory (for model paths that take the whole clip at once),
        reporting progress from 0 to ``until`` as they are read."""
        total = max(self.source_info().frames, 1)
        frames = []
        for frame in self.source_frames():
            frames.append(frame)
            self.check(until * len(frames) / total, f"Reading frame {len(frames)}/{total}")
        return frames

    @contextmanager
    def model_run(self, model_id: str, at: float, advice: str = DEFAULT_ADVICE) -> Iterator[ModelRun]:
        """The worker's pipeline for ``model_id``, loaded (or downloaded) now if it is not
        resident, with its messages reported at progress ``at``; wrap the model's whole use in
        it (``studio.engine.run.model_run``: out of memory evicts it and ends the task with
        ``VramExceeded``, whose message ends with ``advice``)."""
        if self.models is not None:
            self.check(at, f"Loading {model_id}")
        with model_run(self.models, model_id, advice=advice,
                       on_progress=lambda fraction, message: self.hooks.on_progress(self.progress, message)) as run:
            yield run

    def image(self, name: str) -> np.ndarray:
        """An RGB image stored with this task's inputs (see :func:`store_image`)."""
        return cv2.cvtColor(cv2.imread(str(self.inputs / name)), cv2.COLOR_BGR2RGB)

    def check(self, fraction: float, message: str) -> None:
        """Report progress (never backwards: a model window's steps report ahead of the frames
        written for it) and stop here if the task was cancelled."""
        if self.hooks.should_cancel():
            raise Cancelled()
        self.progress = max(self.progress, fraction)
        self.hooks.on_progress(self.progress, message)


@dataclass
class WrittenVideo:
    frames: int
    fps: float
    width: int
    height: int
    has_audio: bool = False


@dataclass
class EditOutcome:
    """What a run made: the video written, which path ran (``classical`` or ``model``), and the
    feature's own figures (``details``)."""

    video: WrittenVideo
    path: str
    method: str
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def write_video(job: EditJob, frames: Iterable[np.ndarray], fps: float, expected_frames: int,
                progress: tuple[float, float] = (0.0, 1.0), message: str = "Processing frame",
                audio: Path | None = None) -> WrittenVideo:
    """Encode ``frames`` (RGB uint8, any even or odd size: odd sizes lose their last row or
    column, as H.264 4:2:0 needs even ones) to the task's mp4 and thumbnail, reporting
    progress from ``progress[0]`` to ``progress[1]`` and checking for cancellation per frame.
    With ``audio``, the audio is muxed in as AAC."""
    start, end = progress
    writer = None
    thumbnail_at = max(0, expected_frames // 2)
    target = job.video_path if audio is None else job.video_path.with_name(job.video_path.stem + ".silent.mp4")
    try:
        for index, frame in enumerate(frames):
            frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
            if writer is None:
                writer = Mp4Writer(target, frame.shape[1], frame.shape[0], fps)
            writer.write(np.ascontiguousarray(frame))
            if index == thumbnail_at or (index == 0 and not job.thumbnail_path.exists()):
                write_jpeg(job.thumbnail_path, fit_width(frame, min(THUMBNAIL_WIDTH, frame.shape[1])))
            job.check(start + (end - start) * (index + 1) / max(expected_frames, 1),
                      f"{message} {index + 1}/{expected_frames}")
        if writer is None:
            raise InvalidRequest("the edit produced no frames")
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if audio is not None:
        from studio.media.audio import mux_audio

        mux_audio(target, audio, job.video_path)
        target.unlink(missing_ok=True)
    return WrittenVideo(writer.frames_written, fps, writer.size[0], writer.size[1], audio is not None)


# -- submission helpers ---------------------------------------------------------------------------

def store_image(folder: Path, name: str, image: np.ndarray) -> str:
    """Save an RGB (or grey) uint8 image into a task's inputs ``folder`` as ``name`` (PNG);
    returns ``name`` for the stored request (read it back with :meth:`EditJob.image`)."""
    rgb = image[..., :3] if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    cv2.imwrite(str(folder / name), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return name


def inputs_folder(studio_data_dir: Path, inputs_id: str) -> Path:
    return studio_data_dir / "inputs" / inputs_id


def source_path(paths: "MediaPaths", folder: Path, source: SourceVideo) -> Path:
    """Where an edit's input video is: the source task's video, or the upload in its inputs folder."""
    return paths.fetch("videos", source.task_id) if source.task_id else folder / source.upload


def timing_key(kind: str, path: str) -> str:
    return f"{kind}/{path}"


# -- running ------------------------------------------------------------------------------------

EditRunner = Callable[[EditJob], EditOutcome]  # a feature's ``run``: registered by kind by the service


def run_edit(task: "Task", spec: EditSpec, run: EditRunner, data_dir: Path, paths: "MediaPaths", hooks: EditHooks,
             store: "TaskStore | None" = None, models: "ModelCache | None" = None) -> tuple[dict, float]:
    """Run an edit task (its typed ``spec``, loaded by the worker) with its feature's ``run`` to
    completion; returns its result row and its frames-per-second cost."""
    folder = inputs_folder(data_dir, spec.inputs_id) if spec.inputs_id else data_dir
    if spec.inputs_id:
        paths.fetch_inputs(folder)  # submitted on another machine: object storage has them
    source = spec.source
    job = EditJob(task.id, task.kind, spec, folder, paths.video(task.id), paths.thumbnail(task.id), hooks,
                  source_path(paths, folder, source) if source else None, paths, store, models)
    started = time.perf_counter()
    outcome = run(job)
    seconds = time.perf_counter() - started
    video = outcome.video
    result = {
        "duration_seconds": round(video.frames / video.fps, 3),
        "resolution": f"{min(video.width, video.height)}p",
        "file_size_mb": round(job.video_path.stat().st_size / 2**20, 3),
        "generation_time_seconds": round(seconds, 3),
        "metadata": {
            "feature": task.kind,
            "path": outcome.path,
            "method": outcome.method,
            "source": source.model_dump(exclude_none=True) if source else None,
            "fps": video.fps,
            "frames": video.frames,
            "width": video.width,
            "height": video.height,
            "has_audio": video.has_audio,
            "timings": {"processing_seconds": round(seconds, 3)},
            "notes": outcome.notes,
            "details": outcome.details,
        },
    }
    return result, seconds / max(video.frames, 1)
