"""Submitting a lip-sync task: the audio fetched and checked, the inputs stored, the spec queued.

The audio is checked at submission (readable audio, at most ``MAX_AUDIO_SECONDS`` and
``MAX_AUDIO_BYTES``, decodable by the run) and stored with the task's inputs. The output lasts
as long as the audio: ``round(audio seconds x fps)`` frames at the source's frame rate, of which
at most ``MAX_FRAMES`` are read from the source (the rest is extended by ping-pong). With
``use_model`` the model path's model (``studio.genius.lipsync.animate``) must be loadable here,
or the submission is refused with ``ModelUnavailable`` (503).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from studio.engine.animate import animate_spec
from studio.engine.request import seed_or_random
from studio.errors import InvalidRequest
from studio.genius.edit_submit import estimate_seconds, new_inputs, store_source
from studio.genius.lipsync import animate as lipsync_animate
from studio.genius.lipsync.schema import AudioField, LipSyncRequest, LipSyncResponse, LipSyncSpec
from studio.media.audio import probe_audio
from studio.media.inputs import InvalidMedia, audio_duration, decode_base64_audio, fetch_media
from studio.models.catalog import ModelSpec
from studio.vision import face_track

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices
    from studio.views import SubmitResponse

MAX_FRAMES = 720  # source frames held in memory (only as many as the audio needs are read)
AUDIO_NAME = "audio"

# File extension of the stored audio by its first bytes (ffmpeg and libsndfile probe the content
# anyway; the name only helps a person reading the inputs folder).
_SUFFIXES = ((0, b"RIFF", ".wav"), (0, b"fLaC", ".flac"), (0, b"OggS", ".ogg"), (0, b"ID3", ".mp3"),
             (0, b"\xff\xfb", ".mp3"), (0, b"\xff\xf3", ".mp3"), (4, b"ftyp", ".m4a"))


def submit(services: "FeatureServices", request: LipSyncRequest, owner: str,
           upload: Path | None = None) -> "SubmitResponse":
    """Validate ``request``, fetch and check the audio, store the inputs and queue the task."""
    services.refuse_new_work()
    model = _model(request)
    audio, field_name = _audio_bytes(services, request)
    try:
        seconds = audio_duration(audio)
    except InvalidMedia as error:
        raise InvalidMedia(f"{field_name}: {error.detail}") from None
    if seconds <= 0:
        raise InvalidMedia(f"{field_name}: the audio is empty")
    probe_audio(audio, field_name)  # what the run could not decode is refused now, not after the queue
    inputs_id, folder = new_inputs(services)
    source = store_source(services, owner, folder, request.task_id, upload)
    frames_out = max(1, round(seconds * source.fps))
    if model is not None:
        lipsync_animate.check_length(frames_out, field_name)
    frames_in = min(source.frames, frames_out)
    if frames_in > MAX_FRAMES:
        raise InvalidRequest(f"task_id: the audio needs {frames_in} frames of the video; lip-sync reads at most "
                             f"{MAX_FRAMES} (the rest is extended by ping-pong): trim the video or the audio")
    audio_name = AUDIO_NAME + _suffix(audio)
    (folder / audio_name).write_bytes(audio)
    model_settings = {} if model is None else {
        "path": "model", "model": model.id, "num_inference_steps": request.num_inference_steps or model.default_steps,
        "seed": seed_or_random(request.seed)}
    face_region = None if request.face_region is None else \
        face_track.face_region_from_corners(request.face_region, source.width, source.height)
    spec = LipSyncSpec(audio=audio_name, audio_field=field_name, audio_seconds=round(seconds, 4),
                       expression=request.expression, intensity=request.intensity, face_region_xywh=face_region,
                       inputs_id=inputs_id, source=source, **model_settings)
    return services.submit_spec(spec, owner, estimate_seconds(services, LipSyncSpec.KIND, frames_out, spec.path))


def lipsync_result(services: "FeatureServices", task_id: str, owner: str) -> LipSyncResponse:
    """The seed's response for a lip-sync task of ``owner``'s: 404 for another kind or owner,
    409 while it is not completed."""
    details = services.result(task_id, owner, kind=LipSyncSpec.KIND).metadata.details
    return LipSyncResponse(task_id=task_id, **{name: details[name] for name in (
        "keyframes_generated", "duration_seconds", "visemes_detected", "processing_time_ms", "viseme_track")})


def _model(request: LipSyncRequest) -> ModelSpec | None:
    """The Animate model of a model-path request (None for the classical path)."""
    if not request.use_model:
        for name in ("model", "num_inference_steps", "seed"):
            if getattr(request, name) is not None:
                raise InvalidRequest(f"{name}: only the model path takes it (use_model true)")
        return None
    return animate_spec(request.model, lipsync_animate.WHAT)


def _audio_bytes(services: "FeatureServices", request: LipSyncRequest) -> tuple[bytes, AudioField]:
    """The audio's bytes and the field they came from."""
    if request.audio_base64 and request.audio_url:
        raise InvalidRequest("audio_base64: give the audio or audio_url, not both")
    if request.audio_url:
        return fetch_media(request.audio_url, services.fetch_policy, "audio_url"), "audio_url"
    if request.audio_base64:
        return decode_base64_audio(request.audio_base64), "audio_base64"
    raise InvalidRequest("audio_url: give the speech to sync to, as audio_url or audio_base64")


def _suffix(audio: bytes) -> str:
    return next((suffix for offset, magic, suffix in _SUFFIXES if audio[offset:offset + len(magic)] == magic), "")
