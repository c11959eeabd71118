"""V2V ``motion_transfer``'s model path: Wan Animate (``WanAnimatePipeline``, animate mode).

The source video is the *driving* video: its person's body pose (ViTPose keypoints drawn as an
OpenPose skeleton) and face crops (Haar-cascade face, tracked) are extracted by
``studio.engine.motion_signals``, and the reference image (``style_reference_url`` /
``style_reference_base64``: the character) is animated by them with the Wan Animate model
(``studio.engine.animate``). The output has the source's length, frame rate, size and audio.

A request runs this path with ``use_model`` or a ``prompt`` (the scene's description; the
authors' default prompt otherwise); ``model`` picks the Animate model (the server's default
for the ``animate`` task when absent). It needs a reference image (a reference *video* has no
model path: Wan Animate animates an image) and a face in the source (``face_region``
``[x1, y1, x2, y2]`` when the cascade finds none), both checked at submission, and at most
``studio.engine.animate.MAX_FRAMES`` source frames. A model that cannot be loaded here is
refused with ``ModelUnavailable`` (503). ``tiny-animate`` and its ``tiny-vitpose`` keypoint
model are untrained: offline, the path runs end to end but its output is noise-like.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from studio.engine.animate import ADVICE, DEFAULT_PROMPT, MAX_FRAMES, animate, animate_spec
from studio.engine.edit import EditJob, EditOutcome, source_path, store_image, write_video
from studio.engine.motion_signals import driving_signals
from studio.engine.plan import generation_size
from studio.engine.request import seed_or_random
from studio.errors import InvalidRequest
from studio.genius.edit_submit import estimate_seconds, inputs_kept_on_success, store_source
from studio.genius.v2v.inputs import REFERENCE_IMAGE, reference_image
from studio.genius.v2v.schema import KIND, V2VRequest, V2VSpec
from studio.media.video import sample_frames
from studio.models.pose import load_pose_estimator
from studio.vision import face_track

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices
    from studio.views import SubmitResponse

WHAT = "motion_transfer's model path (Wan Animate)"
# V2VRequest's settings of the other paths: set away from their defaults, a note says they were not used.
UNUSED = ("strength", "preserve_motion", "temporal_consistency")
# Frames of the source searched for a face at submission (the run tracks it through all frames).
FACE_SAMPLES = 8


def submit(services: "FeatureServices", request: V2VRequest, owner: str,
           upload: Path | None = None) -> "SubmitResponse":
    """Check and store a model-path motion transfer and queue it (the model, steps and seed are
    resolved now, so the run is repeatable from its stored request)."""
    if request.motion_reference_task_id:
        raise InvalidRequest("motion_reference_task_id: the model path animates a reference image with the "
                             "source's motion; give style_reference_url or style_reference_base64 instead")
    model = animate_spec(request.model, WHAT)
    reference = reference_image(services, request)
    if reference is None:
        raise InvalidRequest("style_reference_url: motion_transfer's model path animates a reference image "
                             "(the character); give style_reference_url or style_reference_base64")
    with inputs_kept_on_success(services) as (inputs_id, folder), _face_hint():
        source = store_source(services, owner, folder, request.source_task_id, upload, field_name="source_task_id")
        if source.frames > MAX_FRAMES:
            raise InvalidRequest(f"source_task_id: the model path takes at most {MAX_FRAMES} frames, the source "
                                 f"has {source.frames}; trim it or use the classical path (no use_model/prompt)")
        face = None if request.face_region is None else \
            list(face_track.face_region_from_corners(request.face_region, source.width, source.height))
        face_track.track_face(sample_frames(source_path(services.paths, folder, source), FACE_SAMPLES), face)
        store_image(folder, REFERENCE_IMAGE, reference)
        spec = V2VSpec(mode="motion_transfer", path="model", pipeline="animate", model=model.id,
                       prompt=request.prompt or DEFAULT_PROMPT,
                       num_inference_steps=request.num_inference_steps or model.default_steps,
                       seed=seed_or_random(request.seed), source=source, inputs_id=inputs_id,
                       reference_image=REFERENCE_IMAGE, face_region_xywh=face, unused=request.changed(*UNUSED))
    return services.submit_spec(spec, owner, estimate_seconds(services, KIND, spec.source.frames, "model"))


@contextmanager
def _face_hint() -> Iterator[None]:
    """Wan Animate's face video needs a face: say which field gives one when none is found."""
    try:
        yield
    except InvalidRequest as error:
        if error.detail.startswith("no face found"):
            raise InvalidRequest("face_region: no face found in the source; Wan Animate's face video needs one: "
                                 "pass face_region [x1, y1, x2, y2] in pixels") from None
        raise


def run(job: EditJob, spec: V2VSpec) -> EditOutcome:
    """Extract the driving signals, animate the reference image with them, encode."""
    info = job.source_info()
    frames = job.read_source(until=0.02)
    with job.model_run(spec.model, at=0.02, advice=ADVICE) as running:
        model = running.model
        estimator = load_pose_estimator(job.models.models_dir, trained=model.spec.trained)
        signals = driving_signals(
            frames, estimator, face_region=spec.face_region_xywh,
            face_size=model.pipe.transformer.config.motion_encoder_size,
            on_face=lambda i: job.check(0.05 + 0.05 * i / len(frames),
                                        f"Finding the face: frame {i + 1}/{len(frames)}"),
            on_frame=lambda i: job.check(0.1 + 0.1 * i / len(frames),
                                         f"Reading the pose: frame {i + 1}/{len(frames)}"))
        reference = job.image(spec.reference_image)
        steps, seed = spec.num_inference_steps, spec.seed
        size = (info.width, info.height)
        running.size = generation_size(model.spec, *size)
        ran = animate(job, model, reference, signals, prompt=spec.prompt, steps=steps, seed=seed, size=size,
                      progress=(0.2, 0.9))
        video = write_video(job, ran.frames, info.fps, len(frames), progress=(0.9, 1.0),
                            message="motion_transfer (model): frame", audio=job.source if info.has_audio else None)
    details = {
        "mode": "motion_transfer",
        "parameters": {"model": model.spec.id, "prompt": spec.prompt, "num_inference_steps": steps,
                       "seed": seed, "face_region": spec.face_region_xywh},
        "input": {"width": info.width, "height": info.height, "fps": info.fps, "frames": info.frames},
        "output": {"width": video.width, "height": video.height, "fps": video.fps, "frames": video.frames},
        "driving_signals": signals.summary(),
        **ran.details(model.spec, "animate", spec.prompt, steps, seed),
        "pose_model": estimator.name,
    }
    notes = ran.notes(model.spec, size)
    if spec.unused:
        notes.append(f"{', '.join(spec.unused)} not used: Wan Animate generates whole frames from the "
                     "reference image and the source's pose and face")
    return EditOutcome(video, "model", f"Wan Animate ({model.spec.id}), animate mode: the reference image driven "
                                       f"by the source's pose ({estimator.name}) and face crops", details, notes)
