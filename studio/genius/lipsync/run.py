"""The worker's run of a lip-sync task: as much of the clip as the audio needs, lip-synced, with the audio.

The classical path is ``studio.genius.lipsync.classical.lipsync`` (visemes from the audio
itself, the mouth re-shaped in the detected face, or in the spec's face box). The output
lasts as long as the audio: ``round(audio seconds x fps)`` frames at the source's frame rate,
the source trimmed or extended by ping-pong (``classical.fit_length``), with the audio muxed
in as AAC. On the model path Wan Animate then repaints the face region driven by the
lip-synced face crops (``studio.genius.lipsync.animate``).
"""

from __future__ import annotations

import time

from studio.engine.edit import EditJob, EditOutcome, write_video
from studio.errors import InvalidRequest
from studio.genius.lipsync import animate as lipsync_animate
from studio.genius.lipsync.classical import fit_length, lipsync
from studio.genius.lipsync.schema import LipSyncSpec
from studio.media.audio import load_audio

KIND = LipSyncSpec.KIND


def run(job: EditJob) -> EditOutcome:
    """Read as much of the clip as the audio needs, lip-sync it, write it with the audio."""
    started = time.perf_counter()
    spec: LipSyncSpec = job.spec
    info = job.source_info()
    audio_path = job.inputs / spec.audio
    samples, sr = load_audio(audio_path, field=spec.audio_field)  # errors name what was sent
    frames_out = max(1, round(samples.size / sr * info.fps))  # as visemes.analyse_visemes counts them
    wanted = min(info.frames, frames_out)
    frames = []
    reader = job.source_frames()
    try:
        for frame in reader:
            frames.append(frame)
            job.check(0.1 * len(frames) / max(wanted, 1), f"Reading frame {len(frames)}/{wanted}")
            if len(frames) >= frames_out:
                break
    finally:
        reader.close()
    job.check(0.1, "Reading visemes from the audio")
    region = spec.face_region_xywh
    try:
        out, info_out = lipsync(frames, info.fps, samples, sr, face_region=region,
                                expression=spec.expression, intensity=spec.intensity)
    except InvalidRequest as error:
        if "no face found" in error.detail:  # the algorithm speaks (x, y, w, h); the API speaks corners
            raise InvalidRequest("no face found in the video; pass face_region [x1, y1, x2, y2] in pixels") from None
        raise
    path, method, extra, notes = info_out["path"], info_out["method"], {}, []
    if spec.path == "model":
        synced = []
        for frame in out:
            synced.append(frame)
            job.check(0.1 + 0.05 * len(synced) / frames_out, f"Shaping the mouth: frame {len(synced)}/{frames_out}")
        out, extra, notes = lipsync_animate.repaint_face(
            job, synced, fit_length(frames, frames_out), region, spec.model, spec.num_inference_steps, spec.seed,
            progress=(0.15, 0.9))
        path, method = "model", f"{method}; then the face repainted by Wan Animate ({spec.model}, replace mode)"
    video = write_video(job, out, info.fps, frames_out, progress=(0.9 if path == "model" else 0.15, 1.0),
                        message="Syncing frame", audio=audio_path)
    x, y, w, h = info_out["face_region"]
    details = {
        "keyframes_generated": info_out["keyframes_generated"],
        "duration_seconds": info_out["duration_seconds"],
        "visemes_detected": info_out["visemes_detected"],
        "processing_time_ms": round((time.perf_counter() - started) * 1000),
        "viseme_track": info_out["viseme_track"],
        "face_region": [x, y, x + w, y + h],
        "face_region_source": "request" if region is not None else "detected",
        "expression": spec.expression,
        "intensity": spec.intensity,
        **extra,
    }
    if len(frames) < frames_out:
        notes.append(f"video extended by ping-pong from {len(frames)} to {frames_out} frames to match the audio")
    elif info.frames > frames_out:
        notes.append(f"video trimmed from {info.frames} to {frames_out} frames to match the audio")
    return EditOutcome(video, path, method, details, notes)
