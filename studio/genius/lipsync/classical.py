"""Lip-Sync Engine without a model: visemes read from the speech itself, mouth re-shaped in place.

Pipeline (``lipsync``): ``analyse_visemes`` turns the audio into one viseme per video frame,
``track_face`` finds the face (or takes the user's ``face_region``), ``fit_length`` makes the
clip as long as the audio, and ``animate_mouth`` warps the mouth of each frame into its viseme.

``analyse_visemes`` is ``studio.genius.lipsync.visemes`` (its audio analysis: ``speech``), the
face following ``studio.vision.face_track``, the mouth warp ``studio.genius.lipsync.mouth``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from studio.errors import InvalidRequest
from studio.genius.lipsync.mouth import EXPRESSIONS, MAX_INTENSITY, animate_mouth, mouth_shapes
from studio.genius.lipsync.visemes import analyse_visemes
from studio.vision.face_track import track_face


def fit_length(frames: Sequence[np.ndarray], n_target: int) -> list[np.ndarray]:
    """``frames`` trimmed or extended to ``n_target`` frames (references, not copies).

    Longer clips are cut; shorter ones are extended by ping-pong (forward, backward, forward,
    ... with the turning frames not repeated: 0 1 2 3 2 1 0 1 ...). Every output frame is a real
    source frame, so there is no cross-fade ghosting of the face the mouth is warped on; the
    motion reverses at the turns, which on a talking head reads as a natural sway.
    """
    if len(frames) == 0:
        raise InvalidRequest("the video has no frames")
    n = len(frames)
    if n == 1:
        return [frames[0]] * n_target
    period = 2 * (n - 1)
    phase = np.arange(n_target) % period
    return [frames[int(i)] for i in np.where(phase < n, phase, period - phase)]


def lipsync(frames: Sequence[np.ndarray], fps: float, audio: np.ndarray, sr: int,
            face_region: Sequence[float] | None = None, expression: str = "neutral",
            intensity: float = 1.0) -> tuple[Iterator[np.ndarray], dict]:
    """Lip-sync ``frames`` (RGB uint8 at ``fps``) to mono ``audio`` at ``sr`` Hz.

    Returns ``(frames_out, info)``: a generator of ``round(duration * fps)`` frames (the video
    is trimmed or ping-ponged to the audio's length, see ``fit_length``) and::

        keyframes_generated  frames whose mouth is re-shaped (deformation not the identity)
        duration_seconds     audio length = samples / sr
        visemes_detected     viseme segments other than rest (``VisemeTrack.counts``)
        viseme_track         the segments, ``VisemeTrack.segments()``
        face_region          [x, y, w, h] used: the user's, or the median tracked box
        path, method         "classical" and a one-line description

    The audio analysis and face detection run before this returns (so bad input raises
    ``InvalidRequest`` here); frames are rendered as the generator is consumed, so
    ``processing_time_ms`` is for the caller to measure around the whole job.
    """
    _validate(fps, expression, intensity)
    if len(frames) == 0:
        raise InvalidRequest("the video has no frames")
    track = analyse_visemes(audio, sr, fps)
    fitted = fit_length(frames, len(track))
    boxes = track_face(fitted, face_region)
    shapes = mouth_shapes(track, boxes[:, 3], expression, intensity)
    counts = track.counts()
    info = {
        "keyframes_generated": sum(not shape.is_identity for shape in shapes),
        "duration_seconds": round(track.duration_seconds, 3),
        "visemes_detected": sum(count for name, count in counts.items() if name != "rest"),
        "viseme_track": track.segments(),
        "face_region": [round(v) for v in np.median(boxes, axis=0)],
        "path": "classical",
        "method": "visemes from LPC formants, energy, zero crossings and spectral shape (librosa); "
                  "Haar-cascade face; mouth re-shaped by a smooth remap warp",
    }
    return animate_mouth(fitted, fps, track, boxes, expression, intensity), info


def _validate(fps: float, expression: str, intensity: float) -> None:
    if not (np.isfinite(fps) and fps > 0):
        raise InvalidRequest(f"fps must be a positive number, got {fps}")
    if expression not in EXPRESSIONS:
        raise InvalidRequest(f"expression must be one of {sorted(EXPRESSIONS)}, got {expression!r}")
    if not (isinstance(intensity, (int, float)) and np.isfinite(intensity) and 0 <= intensity <= MAX_INTENSITY):
        raise InvalidRequest(f"intensity must be between 0 and {MAX_INTENSITY}, got {intensity!r}")
