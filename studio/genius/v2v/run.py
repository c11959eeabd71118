"""The worker's run of a V2V task: its spec's model path, or the classical transform streamed
from the decoder through ``modes.transform`` into the encoder one frame at a time, so memory
does not grow with the length of the video (a reference video for ``motion_transfer`` is held
whole, hence ``schema.MAX_REFERENCE_FRAMES``).

``transform_spec`` and ``expected_frames`` are shared with the submit, which runs the transform
on the first source frame to refuse a bad request before it is queued.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction

import numpy as np

from studio.engine.edit import EditJob, EditOutcome, write_video
from studio.errors import InvalidRequest
from studio.genius.v2v import animate, vace, video_to_video
from studio.genius.v2v.inputs import REFERENCE_VIDEO
from studio.genius.v2v.interpolation import interpolation_step
from studio.genius.v2v.modes import transform
from studio.genius.v2v.schema import KIND, V2VSpec
from studio.media.video import read_frames

__all__ = ["KIND", "run", "transform_spec", "expected_frames"]

# transform's field names -> this API's
_FIELD_NAMES = {"reference": "style_reference_url", "source": "source_task_id", "fps": "source_task_id"}


def run(job: EditJob) -> EditOutcome:
    """Run a V2V task from its typed spec (``job.spec``)."""
    spec = job.spec
    if not isinstance(spec, V2VSpec):
        raise TypeError(f"a v2v task runs from a V2VSpec, got {type(spec).__name__}")
    if spec.pipeline == "vace":
        return vace.run(job, spec)
    if spec.pipeline == "animate":
        return animate.run(job, spec)
    if spec.pipeline == "video_to_video":
        return video_to_video.run(job, spec)
    return _run_classical(job, spec)


def _run_classical(job: EditJob, spec: V2VSpec) -> EditOutcome:
    """Stream the source through the mode into the encoder (no frame list is built)."""
    info = job.source_info()
    reference = None
    if spec.reference_image:
        reference = job.image(spec.reference_image)
    elif spec.reference_video:
        reference = []
        for index, frame in enumerate(read_frames(job.inputs / REFERENCE_VIDEO)):
            reference.append(frame)
            job.check(0.0, f"Reading reference frame {index + 1}/{spec.reference_video.frames}")
    job.check(0.0, f"Transforming ({spec.mode})")
    frames, output_fps, details = transform_spec(spec, job.source_frames(), info.fps, reference)
    expected = expected_frames(spec, info.frames, info.fps)
    # The soundtrack is kept where the output spans the source's time (all but a reference video's motion).
    audio = job.source if info.has_audio and spec.reference_video is None else None
    video = write_video(job, frames, output_fps, expected, message=f"{spec.mode}: frame", audio=audio)
    path, method = details.pop("path"), details.pop("method")
    details["input"]["frames"] = info.frames
    details["output"].update(width=video.width, height=video.height, fps=video.fps, frames=video.frames)
    return EditOutcome(video, path, method, details)


def transform_spec(spec: V2VSpec, frames: Iterable[np.ndarray], fps: float,
                   reference: np.ndarray | list[np.ndarray] | None) -> tuple[Iterator[np.ndarray], float, dict]:
    """``modes.transform`` with the spec's settings; its errors name this API's fields."""
    try:
        return transform(
            spec.mode, frames, fps, strength=spec.strength, reference=reference,
            temporal_consistency=spec.temporal_consistency, preserve_motion=spec.preserve_motion,
            scale=spec.scale, width=spec.width, height=spec.height, target_fps=spec.target_fps, factor=spec.factor)
    except InvalidRequest as error:
        name, _, rest = error.detail.partition(":")
        if name in _FIELD_NAMES and rest:
            name = "motion_reference_task_id" if name == "reference" and spec.reference_video is not None \
                else _FIELD_NAMES[name]
            raise InvalidRequest(f"{name}:{rest}") from None
        raise


def expected_frames(spec: V2VSpec, source_frames: int, fps: float) -> int:
    """Frames the mode writes: the source's, except interpolation (``floor((N - 1) / step) + 1``
    with ``step`` source frames per output frame: x2 gives 2N - 1) and motion transfer driven
    by a reference video (the reference's)."""
    if spec.mode == "interpolation":
        step = interpolation_step(fps, spec.factor, spec.target_fps)
        return int(Fraction(max(source_frames - 1, 0)) / step) + 1
    if spec.reference_video is not None:
        return spec.reference_video.frames
    return source_frames
