"""The worker's run of an inpainting task: read the clip, run the spec's path, write the result.

The classical path is ``studio.genius.inpaint.classical.inpaint`` (the algorithms and their
thresholds are documented in their modules); the model path is ``studio.genius.inpaint.vace``.
Boxes in the result's details are ``[x1, y1, x2, y2]`` corners, like every box of the API.
"""

from __future__ import annotations

from studio.engine.edit import EditJob, EditOutcome, write_video
from studio.genius.inpaint import vace
from studio.genius.inpaint.classical import inpaint
from studio.genius.inpaint.schema import InpaintSpec

KIND = InpaintSpec.KIND


def run(job: EditJob) -> EditOutcome:
    """Read the clip, run the mode's path (classical or Wan VACE), write the result."""
    spec: InpaintSpec = job.spec
    info = job.source_info()
    frames = []
    for index, frame in enumerate(job.source_frames()):
        frames.append(frame)
        job.check(0.1 * (index + 1) / info.frames, f"Reading frame {index + 1}/{info.frames}")
    image = job.image(spec.image) if spec.image else None
    if spec.path == "model":
        return vace.run_model(job, frames, info.fps, image if spec.mode == "replace" else None)
    job.check(0.1, f"Inpainting ({spec.mode})")
    out, details = inpaint(
        spec.mode, frames, bbox=spec.bbox_xywh, feather_radius=spec.feather_radius,
        overlay=image if spec.mode == "blend" else None,
        background=image if spec.mode == "background" else None,
        target_size=spec.target_size, blend_method=spec.blend_method)
    if "boxes" in details:  # the API speaks corners
        details["boxes"] = [[x, y, x + w, y + h] for x, y, w, h in details["boxes"]]
    details.pop("path", None)
    method = details.pop("method")
    video = write_video(job, out, info.fps, len(out), progress=(0.8, 1.0), message="Encoding frame")
    return EditOutcome(video, "classical", method, details)
