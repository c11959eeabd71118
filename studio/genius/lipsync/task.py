"""Lip-Sync Engine as a queued task: ``POST /v1/genius/lipsync/generate``.

The request names the video (``task_id`` of a completed task, or an upload through the UI /
Gradio API) and the speech: ``audio_url`` (fetched at submission through the guarded fetcher)
or ``audio_base64``. The audio is checked at submission (readable audio, at most
``MAX_AUDIO_SECONDS`` and ``MAX_AUDIO_BYTES``) and stored with the task's inputs.

The run is ``studio.genius.lipsync.algorithm.lipsync`` (visemes from the audio itself, the mouth re-shaped
in the detected face, or in ``face_region``; algorithm and thresholds documented there). The
output lasts as long as the audio: ``round(audio seconds x fps)`` frames at the source's frame
rate, the source trimmed or extended by ping-pong (``lipsync.fit_length``), with the audio
muxed in as AAC. ``face_region`` in the API is ``[x1, y1, x2, y2]`` pixel corners (``x2``/``y2``
exclusive), like every box of the API.

With ``use_model`` the model path runs after the classical one: Wan Animate repaints the face
region driven by the lip-synced face crops (``studio.genius.lipsync.animate``); ``model`` (an
Animate model; the server's default when absent), ``num_inference_steps`` and ``seed`` go
with it, at most ``studio.engine.animate.MAX_FRAMES`` output frames. A model that cannot be
loaded here is refused at submission with ``ModelUnavailable`` (503).

The result's ``metadata.details`` holds the seed's response fields (``keyframes_generated``,
``duration_seconds``, ``visemes_detected``, ``processing_time_ms``: wall time of the whole run,
reading, analysis, rendering, encoding and muxing) plus ``viseme_track`` (the segments),
``face_region`` (the box used) and the ``expression`` and ``intensity`` applied;
``GET /v1/genius/lipsync/{task_id}`` returns them in the seed's shape.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from studio.engine.animate import animate_spec
from studio.engine.edit import EditJob, EditOutcome, write_video
from studio.engine.request import HTTP_URL_PATTERN, SEED_MAX, JsonModel, seed_or_random
from studio.errors import InvalidRequest
from studio.genius.lipsync import algorithm as lipsync
from studio.vision import face_track
from studio.genius.lipsync import animate as lipsync_animate
from studio.genius.edit_submit import estimate_seconds, new_inputs, store_source
from studio.media.audio import load_audio, probe_audio
from studio.media.inputs import (
    MAX_AUDIO_BYTES,
    MAX_AUDIO_SECONDS,
    InvalidMedia,
    audio_duration,
    decode_base64_audio,
    fetch_media,
)
from studio.models.catalog import ANIMATE_CATALOG, ModelSpec

if TYPE_CHECKING:
    from studio.core import Studio
    from studio.views import SubmitResponse

KIND = "lipsync"
MAX_FRAMES = 720  # source frames held in memory (only as many as the audio needs are read)
TASK_ID_PATTERN = r"^[A-Za-z0-9-]+$"
MAX_AUDIO_BASE64 = -(-MAX_AUDIO_BYTES // 3) * 4 + 100  # base64 of the largest audio, plus a data: prefix
AUDIO_NAME = "audio"

# The expressions lipsync.py accepts (its EXPRESSIONS table), as an enum for the OpenAPI schema.
Expression = Literal[tuple(lipsync.EXPRESSIONS)]  # type: ignore[valid-type]

# File extension of the stored audio by its first bytes (ffmpeg and libsndfile probe the content
# anyway; the name only helps a person reading the inputs folder).
_SUFFIXES = ((0, b"RIFF", ".wav"), (0, b"fLaC", ".flac"), (0, b"OggS", ".ogg"), (0, b"ID3", ".mp3"),
             (0, b"\xff\xfb", ".mp3"), (0, b"\xff\xf3", ".mp3"), (4, b"ftyp", ".m4a"))


class LipSyncRequest(JsonModel):
    """The seed's lip-sync fields, plus ``audio_base64`` for clients that send the audio itself."""

    model_config = ConfigDict(extra="forbid")

    task_id: str | None = Field(None, min_length=1, max_length=64, pattern=TASK_ID_PATTERN,
                                description="A completed task whose video is lip-synced (or upload one in the UI)")
    audio_url: str | None = Field(None, max_length=2048, pattern=HTTP_URL_PATTERN,
                                  description="The speech (wav, mp3, flac, ogg, m4a; at most "
                                              f"{MAX_AUDIO_SECONDS:.0f} s), fetched at submission")
    audio_base64: str | None = Field(None, max_length=MAX_AUDIO_BASE64,
                                     description="The speech itself, base64 (or a data: URI), instead of audio_url")
    face_region: list[int] | None = Field(None, min_length=4, max_length=4,
                                          description="[x1, y1, x2, y2] pixels of the face (brows to chin); "
                                                      "detected (Haar cascade) and tracked when absent")
    expression: Expression = Field("neutral", description="Bias added to every mouth shape: happy lifts the "
                                                          "corners, sad lowers them, surprised opens, angry presses")
    intensity: float = Field(1.0, ge=0, le=lipsync.MAX_INTENSITY,
                             description="Scale of the mouth movement (0 leaves the video as it is)")
    use_model: bool = Field(False, description="Also repaint the face with Wan Animate, driven by the lip-synced "
                                               "face crops (the model path)")
    model: Literal[tuple(ANIMATE_CATALOG)] | None = Field(  # type: ignore[valid-type]
        None, description="The model path's Wan Animate model (the server default when absent)")
    num_inference_steps: int | None = Field(None, ge=4, le=100,
                                            description="The model path's denoising steps (the model's default: 20)")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="The model path's noise seed (random when absent)")


class VisemeSegment(BaseModel):
    """One run of a viseme; ``end_frame`` is exclusive and ``end_seconds = end_frame / fps``."""

    viseme: Literal[lipsync.VISEMES] = Field(description="PP, FF, AA, EE, OO, or rest (silence)")  # type: ignore[valid-type]
    start_frame: int
    end_frame: int
    start_seconds: float
    end_seconds: float


class LipSyncResponse(BaseModel):
    """The seed's lip-sync response for a finished task, with the viseme track."""

    task_id: str = Field(description="The lip-sync task")
    keyframes_generated: int = Field(description="Frames whose mouth was re-shaped")
    duration_seconds: float = Field(description="Length of the audio, and so of the video")
    visemes_detected: int = Field(description="Viseme segments other than rest")
    processing_time_ms: int = Field(description="Wall time of the run: read, analyse, render, encode, mux")
    viseme_track: list[VisemeSegment]


def submit(studio: "Studio", request: LipSyncRequest, owner: str, upload: Path | None = None) -> "SubmitResponse":
    """Validate ``request``, fetch and check the audio, store the inputs and queue the task."""
    studio.refuse_new_work()
    spec = _model_spec(request)
    audio, field_name = _audio_bytes(studio, request)
    try:
        seconds = audio_duration(audio)
    except InvalidMedia as error:
        raise InvalidMedia(f"{field_name}: {error.detail}") from None
    if seconds <= 0:
        raise InvalidMedia(f"{field_name}: the audio is empty")
    probe_audio(audio, field_name)  # what the run could not decode is refused now, not after the queue
    inputs_id, folder = new_inputs(studio.services)
    source = store_source(studio.services, owner, folder, request.task_id, upload)
    frames_out = max(1, round(seconds * source["fps"]))
    if spec is not None:
        lipsync_animate.check_length(frames_out, field_name)
    frames_in = min(source["frames"], frames_out)
    if frames_in > MAX_FRAMES:
        raise InvalidRequest(f"task_id: the audio needs {frames_in} frames of the video; lip-sync reads at most "
                             f"{MAX_FRAMES} (the rest is extended by ping-pong): trim the video or the audio")
    audio_name = AUDIO_NAME + _suffix(audio)
    (folder / audio_name).write_bytes(audio)
    stored = {"audio": audio_name, "audio_field": field_name, "audio_seconds": round(seconds, 4),
              "expression": request.expression,
              "intensity": request.intensity, "inputs_id": inputs_id, "source": source}
    if spec is not None:
        stored.update(path="model", model=spec.id, num_inference_steps=request.num_inference_steps or
                      spec.default_steps, seed=seed_or_random(request.seed))
    if request.face_region is not None:
        stored["face_region_xywh"] = list(face_track.face_region_from_corners(request.face_region, source["width"],
                                                                          source["height"]))
    return studio.submit_edit(KIND, stored, owner,
                              estimate_seconds(studio.services, KIND, frames_out, stored.get("path", "classical")))


def _model_spec(request: LipSyncRequest) -> ModelSpec | None:
    """The Animate model of a model-path request (None for the classical path)."""
    if not request.use_model:
        for name in ("model", "num_inference_steps", "seed"):
            if getattr(request, name) is not None:
                raise InvalidRequest(f"{name}: only the model path takes it (use_model true)")
        return None
    return animate_spec(request.model, lipsync_animate.WHAT)


def _audio_bytes(studio: "Studio", request: LipSyncRequest) -> tuple[bytes, str]:
    """The audio's bytes and the field they came from."""
    if request.audio_base64 and request.audio_url:
        raise InvalidRequest("audio_base64: give the audio or audio_url, not both")
    if request.audio_url:
        return fetch_media(request.audio_url, studio.fetch_policy, "audio_url"), "audio_url"
    if request.audio_base64:
        return decode_base64_audio(request.audio_base64), "audio_base64"
    raise InvalidRequest("audio_url: give the speech to sync to, as audio_url or audio_base64")


def _suffix(audio: bytes) -> str:
    return next((suffix for offset, magic, suffix in _SUFFIXES if audio[offset:offset + len(magic)] == magic), "")


def run(job: EditJob) -> EditOutcome:
    """Read as much of the clip as the audio needs, lip-sync it, write it with the audio."""
    started = time.perf_counter()
    request = job.request
    info = job.source_info()
    audio_path = job.inputs / request["audio"]
    samples, sr = load_audio(audio_path, field=request.get("audio_field", "audio"))  # errors name what was sent
    frames_out = max(1, round(samples.size / sr * info.fps))  # as lipsync.analyse_visemes counts them
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
    region = request.get("face_region_xywh")
    try:
        out, info_out = lipsync.lipsync(frames, info.fps, samples, sr, face_region=region,
                                        expression=request["expression"], intensity=request["intensity"])
    except InvalidRequest as error:
        if "no face found" in error.detail:  # lipsync.py speaks (x, y, w, h); the API speaks corners
            raise InvalidRequest("no face found in the video; pass face_region [x1, y1, x2, y2] in pixels") from None
        raise
    path, method, extra, notes = info_out["path"], info_out["method"], {}, []
    if request.get("path") == "model":
        synced = []
        for frame in out:
            synced.append(frame)
            job.check(0.1 + 0.05 * len(synced) / frames_out, f"Shaping the mouth: frame {len(synced)}/{frames_out}")
        out, extra, notes = lipsync_animate.repaint_face(
            job, synced, lipsync.fit_length(frames, frames_out), region, request["num_inference_steps"],
            request["seed"], progress=(0.15, 0.9))
        path, method = "model", f"{method}; then the face repainted by Wan Animate ({request['model']}, replace mode)"
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
        "expression": request["expression"],
        "intensity": request["intensity"],
        **extra,
    }
    if len(frames) < frames_out:
        notes.append(f"video extended by ping-pong from {len(frames)} to {frames_out} frames to match the audio")
    elif info.frames > frames_out:
        notes.append(f"video trimmed from {info.frames} to {frames_out} frames to match the audio")
    return EditOutcome(video, path, method, details, notes)


def lipsync_result(studio: "Studio", task_id: str, owner: str) -> LipSyncResponse:
    """The seed's response for a lip-sync task of ``owner``'s: 404 for another kind or owner,
    409 while it is not completed."""
    details = studio.result(task_id, owner, kind=KIND).metadata.details
    return LipSyncResponse(task_id=task_id, **{name: details[name] for name in (
        "keyframes_generated", "duration_seconds", "visemes_detected", "processing_time_ms", "viseme_track")})
