"""Lip-Sync's request (``POST /v1/genius/lipsync/generate``), its response, and its stored task spec.

The request names the video (``task_id`` of a completed task, or an upload through the UI /
Gradio API) and the speech: ``audio_url`` (fetched at submission through the guarded fetcher)
or ``audio_base64``. ``face_region`` in the API is ``[x1, y1, x2, y2]`` pixel corners
(``x2``/``y2`` exclusive), like every box of the API. :class:`LipSyncSpec` is what the submit
stores once it has checked and stored the audio, and what the run reads.

The result's ``metadata.details`` holds the seed's response fields (``keyframes_generated``,
``duration_seconds``, ``visemes_detected``, ``processing_time_ms``: wall time of the whole run,
reading, analysis, rendering, encoding and muxing) plus ``viseme_track`` (the segments),
``face_region`` (the box used) and the ``expression`` and ``intensity`` applied;
``GET /v1/genius/lipsync/{task_id}`` returns them in the seed's shape (:class:`LipSyncResponse`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from studio.engine.request import HTTP_URL_PATTERN, SEED_MAX, JsonModel, seed_field, steps_field
from studio.engine.spec import EditSpec
from studio.genius.lipsync.mouth import EXPRESSIONS, MAX_INTENSITY
from studio.genius.lipsync.visemes import VISEMES
from studio.media.inputs import MAX_AUDIO_BYTES, MAX_AUDIO_SECONDS
from studio.models.catalog import ANIMATE_CATALOG

TASK_ID_PATTERN = r"^[A-Za-z0-9-]+$"
MAX_AUDIO_BASE64 = -(-MAX_AUDIO_BYTES // 3) * 4 + 100  # base64 of the largest audio, plus a data: prefix

# The expressions the mouth animation knows (its EXPRESSIONS table), as an enum for the OpenAPI schema.
Expression = Literal[tuple(EXPRESSIONS)]  # type: ignore[valid-type]
AnimateModel = Literal[tuple(ANIMATE_CATALOG)]  # type: ignore[valid-type]
#: The request field the audio came in: errors of the run name it ("audio" in rows stored before it was kept).
AudioField = Literal["audio_url", "audio_base64", "audio"]


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
    intensity: float = Field(1.0, ge=0, le=MAX_INTENSITY,
                             description="Scale of the mouth movement (0 leaves the video as it is)")
    use_model: bool = Field(False, description="Also repaint the face with Wan Animate, driven by the lip-synced "
                                               "face crops (the model path)")
    model: AnimateModel | None = Field(
        None, description="The model path's Wan Animate model (the server default when absent)")
    num_inference_steps: int | None = steps_field(
        None, "The model path's denoising steps (10-150; the model's default: 20)")
    seed: int | None = seed_field("The model path's noise seed (random when absent)")


class VisemeSegment(BaseModel):
    """One run of a viseme; ``end_frame`` is exclusive and ``end_seconds = end_frame / fps``."""

    viseme: Literal[VISEMES] = Field(description="PP, FF, AA, EE, OO, or rest (silence)")  # type: ignore[valid-type]
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


class LipSyncSpec(EditSpec):
    """A stored lip-sync task: the stored audio, the mouth settings, the face box if given and,
    on the model path, the model's settings (the names are those of the rows stored before
    specs, which still load)."""

    KIND: ClassVar[str] = "lipsync"

    kind: Literal["lipsync"] = "lipsync"
    audio: str = Field(description="The speech, a file in the task's inputs folder")
    audio_field: AudioField = "audio"
    audio_seconds: float = Field(gt=0, description="The audio's length, measured at submission")
    expression: Expression = "neutral"
    intensity: float = Field(1.0, ge=0, le=MAX_INTENSITY)
    face_region_xywh: tuple[int, int, int, int] | None = Field(
        None, description="The caller's face box as (x, y, width, height); detected when absent")
    path: Literal["classical", "model"] = Field("classical", description="model: Wan Animate repaints the face "
                                                                          "after the classical path")
    model: AnimateModel | None = Field(None, description="Model path: the Wan Animate model")
    num_inference_steps: int | None = Field(None, ge=1, description="Model path: denoising steps")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="Model path: the noise seed")

    @model_validator(mode="after")
    def _model_settings(self) -> "LipSyncSpec":
        """The model path's run reads its model, steps and seed: a spec without them fails when
        it is written, not on the worker."""
        if self.path == "model" and None in (self.model, self.num_inference_steps, self.seed):
            raise ValueError("the model path stores model, num_inference_steps and seed")
        return self
