"""Lip-Sync's model path: Wan Animate re-renders the face, driven by viseme-shaped face crops.

Wan2.2-Animate's *replace* mode paints a character into a video inside a mask, driven by a pose
video and a face video; its face encoder takes the expression, mouth included, from the face
crops. Lip-sync uses that as follows:

1. the classical path runs first (``studio.genius.lipsync.classical.lipsync``): visemes from the audio,
   the mouth of each frame re-shaped to them, the video fitted to the audio's length;
2. the driving signals come from those lip-synced frames (``motion_signals.driving_signals``):
   the body pose, and face crops whose mouths follow the speech;
3. the model repaints the face region (the tracked face box grown by :data:`FACE_MARGIN` on each
   side) of the fitted source, the person being the source's first frame (the reference image),
   over the source's background (the masked region blacked out, as the authors' preprocessing
   does);
4. the model's face is pasted back with a feathered edge (:data:`FEATHER_PX`), so every pixel
   outside the face region is the source's, exactly; the speech is muxed in as AAC.

The viseme analysis and timing are the classical path's (same ``viseme_track``). The
``tiny-animate`` model is untrained: offline, this path runs end to end but paints noise in
the face region.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from studio.engine.animate import ADVICE, DEFAULT_PROMPT, MAX_FRAMES, AnimateRun, animate
from studio.engine.edit import EditJob
from studio.engine.plan import generation_size
from studio.errors import InvalidRequest
from studio.engine.motion_signals import driving_signals
from studio.models.pose import load_pose_estimator
from studio.vision.masks import feathered_box_masks, paste

FACE_MARGIN = 0.25  # of the face box's size, added on each side: chin, jaw and cheeks move with the mouth
FEATHER_PX = 6  # the pasted face's soft edge
PROMPT = "A person talking. " + DEFAULT_PROMPT
WHAT = "lip-sync's model path (Wan Animate)"


def check_length(frames_out: int, field: str = "audio_url") -> None:
    """Refuse a model-path request whose output is longer than the model path takes; the error
    names ``field``, the request field the audio came in."""
    if frames_out > MAX_FRAMES:
        raise InvalidRequest(f"{field}: the model path makes at most {MAX_FRAMES} frames and this audio needs "
                             f"{frames_out}; shorten the audio or use the classical path (use_model false)")


def face_masks(shape: tuple[int, ...], face_boxes: np.ndarray) -> list[np.ndarray]:
    """Per-frame float masks in [0, 1]: 1 on each face box grown by ``FACE_MARGIN`` of its size
    (clipped to the frame), a ``FEATHER_PX`` cosine ramp outside it."""
    height, width = shape[:2]
    boxes = []
    for x, y, w, h in face_boxes:
        dx, dy = FACE_MARGIN * w, FACE_MARGIN * h
        x0, y0 = max(0, round(x - dx)), max(0, round(y - dy))
        x1, y1 = min(width, round(x + w + dx)), min(height, round(y + h + dy))
        boxes.append((x0, y0, max(1, x1 - x0), max(1, y1 - y0)))
    return feathered_box_masks(shape, boxes, FEATHER_PX, dilate=0)


def repaint_face(job: EditJob, synced: list[np.ndarray], fitted: list[np.ndarray],
                 face_region: Sequence[int] | None, model_id: str, steps: int, seed: int,
                 progress: tuple[float, float]) -> tuple[list[np.ndarray], dict, list[str]]:
    """Repaint the face of ``fitted`` (the source at the audio's length) with the Wan Animate
    model ``model_id`` driven by ``synced`` (its lip-synced frames); ``(frames, details, notes)``."""
    first, last = progress
    with job.model_run(model_id, at=first, advice=ADVICE) as running:
        model = running.model
        estimator = load_pose_estimator(job.models.models_dir, trained=model.spec.trained)
        span = last - first
        signals = driving_signals(
            synced, estimator, face_region=face_region,
            face_size=model.pipe.transformer.config.motion_encoder_size,
            on_face=lambda i: job.check(first + 0.1 * span * i / len(synced), f"Finding the face: frame {i + 1}"),
            on_frame=lambda i: job.check(first + 0.1 * span * (1 + i / len(synced)),
                                         f"Reading the pose: frame {i + 1}"))
        weights = face_masks(fitted[0].shape, signals.face_boxes)
        hard = [np.where(w > 0, 255, 0).astype(np.uint8) for w in weights]
        background = [np.where(m[..., None] > 0, 0, frame).astype(np.uint8) for m, frame in zip(hard, fitted)]
        height, width = fitted[0].shape[:2]
        running.size = generation_size(model.spec, width, height)
        ran: AnimateRun = animate(job, model, fitted[0], signals, prompt=PROMPT, steps=steps, seed=seed,
                                  size=(width, height), progress=(first + 0.2 * span, last),
                                  background=background, mask=hard)
    frames = [paste(source, painted, w) for source, painted, w in zip(fitted, ran.frames, weights)]
    details = {**ran.details(model.spec, "replace", PROMPT, steps, seed), "pose_model": estimator.name,
               "driving_signals": signals.summary(), "face_margin": FACE_MARGIN, "feather_px": FEATHER_PX}
    notes = ran.notes(model.spec, (width, height)) + [
        "the face region (the tracked face grown by a quarter of its size) was repainted by the model, driven by "
        "the classical path's viseme-shaped face crops; every pixel outside it is the source's"]
    return frames, details, notes
