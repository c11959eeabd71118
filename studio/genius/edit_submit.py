"""Submitting a video-side task: its inputs folder, its source video, its time estimate.

Shared by the video-side features' ``submit`` functions (lip-sync, inpaint, V2V, consistency,
scenes). The engine's ``studio.engine.edit`` runs what these store.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from studio.engine.edit import (
    CLASSICAL_PRIOR_SECONDS_PER_FRAME,
    FRAME_RATE,
    MAX_SOURCE_FRAMES,
    PRIOR_SECONDS_PER_FRAME,
    SOURCE_NAME,
    timing_key,
)
from studio.engine.spec import SourceVideo
from studio.errors import InvalidRequest, TaskNotReady
from studio.media.inputs import check_upload_type
from studio.media.video import VideoInfo, probe_video

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices


def new_inputs(services: "FeatureServices") -> tuple[str, Path]:
    """A fresh folder for one task's inputs: (its id, its path)."""
    inputs_id = uuid.uuid4().hex
    folder = services.data_dir / "inputs" / inputs_id
    folder.mkdir(parents=True)
    return inputs_id, folder


@contextmanager
def inputs_kept_on_success(services: "FeatureServices") -> Iterator[tuple[str, Path]]:
    """``new_inputs`` for a submit that may still refuse the request: the folder is removed when
    the block raises, so a refused request leaves nothing behind."""
    inputs_id, folder = new_inputs(services)
    try:
        yield inputs_id, folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def store_source(services: "FeatureServices", owner: str, folder: Path, task_id: str | None, upload: Path | None,
                 field_name: str = "task_id") -> SourceVideo:
    """Resolve the input video of an edit: a completed task of ``owner``'s, or an uploaded file
    (copied into ``folder`` so it outlives the upload). Returns the stored description."""
    if task_id:
        task = services.task(task_id, owner)
        try:
            video = services.paths.fetch("videos", task.id) if task.is_completed else None
        except FileNotFoundError:
            video = None
        if video is None:
            raise TaskNotReady(f"{field_name}: task {task.id} is {task.status}; its video is not ready")
        info = probe_video(video)
        return SourceVideo(task_id=task.id, **_info(info))
    if upload is not None:
        check_upload_type(Path(upload), "video")
        info = probe_video(Path(upload), MAX_SOURCE_FRAMES)
        shutil.copyfile(upload, folder / SOURCE_NAME)
        return SourceVideo(upload=SOURCE_NAME, **_info(info))
    raise InvalidRequest(f"{field_name}: give the id of a completed task, or upload a video")


def _info(info: VideoInfo) -> dict:
    return {"frames": info.frames, "fps": info.fps, "width": info.width, "height": info.height}


def estimate_seconds(services: "FeatureServices", kind: str, frames: int, path: str = "classical") -> float:
    """Frames x the measured seconds per frame of this kind's ``path`` (classical and model runs
    differ by orders of magnitude, so each has its own rate; a prior until one has run)."""
    prior = CLASSICAL_PRIOR_SECONDS_PER_FRAME.get(kind, PRIOR_SECONDS_PER_FRAME) if path == "classical" \
        else PRIOR_SECONDS_PER_FRAME
    rate = services.store.timing(timing_key(kind, path), FRAME_RATE) or prior
    return frames * rate
