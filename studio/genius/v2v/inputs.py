"""A V2V task's stored inputs: the reference image or motion reference video the submit copies
into the task's inputs folder (so they outlive the request and any upload), and the checks on
them that need a file."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.engine.spec import SourceVideo
from studio.errors import InvalidRequest, TaskNotReady
from studio.genius.v2v.schema import MAX_REFERENCE_FRAMES, V2VRequest
from studio.jobs import store as st
from studio.media.inputs import check_upload_type, image_input
from studio.media.video import probe_video, read_frames

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices

REFERENCE_IMAGE = "reference.png"
REFERENCE_VIDEO = "motion_reference.mp4"


def reference_image(services: "FeatureServices", request: V2VRequest) -> np.ndarray | None:
    """The request's reference image (base64, or its URL through the guarded fetcher), if any."""
    return image_input(request.style_reference_base64, request.style_reference_url, services.fetch_policy,
                       "style_reference_base64", "style_reference_url")


def store_reference_video(services: "FeatureServices", owner: str, folder: Path, request: V2VRequest,
                          reference_upload: Path | None) -> SourceVideo:
    """Copy the motion reference video (``owner``'s completed task, or an upload) into the task's
    inputs as ``REFERENCE_VIDEO``; at most ``MAX_REFERENCE_FRAMES`` frames."""
    field = "motion_reference_task_id"
    if reference_upload is not None:
        check_upload_type(Path(reference_upload), "video")
        origin, described = Path(reference_upload), {"upload": REFERENCE_VIDEO}
    else:
        task = services.task(request.motion_reference_task_id, owner)
        try:
            origin = services.paths.fetch("videos", task.id) if task.status == st.COMPLETED else None
        except FileNotFoundError:
            origin = None
        if origin is None:
            raise TaskNotReady(f"{field}: task {task.id} is {task.status}; its video is not ready")
        described = {"task_id": task.id}
    info = probe_video(origin, MAX_REFERENCE_FRAMES)
    shutil.copyfile(origin, folder / REFERENCE_VIDEO)
    return SourceVideo(**described, frames=info.frames, fps=info.fps, width=info.width, height=info.height)


def first_frame(path: Path, field: str) -> np.ndarray:
    """The first frame of a stored video; ``InvalidRequest`` naming ``field`` when it has none."""
    frames = read_frames(path)
    try:
        first = next(frames, None)
    finally:
        frames.close()
    if first is None:
        raise InvalidRequest(f"{field}: the video has no frames")
    return first
