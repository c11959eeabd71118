"""What a V2V request may say, what a finished V2V task reports, and what a V2V task stores.

``V2VRequest`` is the body of ``POST /v1/genius/v2v/transform`` (and of the Gradio API's
``/v2v``); ``V2VSummary`` is ``GET /v1/genius/v2v/{task_id}``; ``V2VSpec`` is the typed task
spec the submit stores and the worker's run reads (``studio.engine.spec``). Which path a
request runs is ``V2VRequest.model_path`` (the package docstring of ``submit`` explains them).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from studio.engine.request import HTTP_URL_PATTERN, NOT_BLANK, JsonModel, seed_field, steps_field, strip_prompt
from studio.engine.spec import EditSpec, SourceVideo
from studio.genius.v2v.interpolation import MAX_TARGET_FPS
from studio.models.catalog import ANIMATE_CATALOG, CATALOG, TINY, VACE_CATALOG

KIND = "v2v"
TASK_ID_PATTERN = r"^[A-Za-z0-9-]+$"
MAX_REFERENCE_FRAMES = 300  # a motion reference video is held in memory by the classical transform
Mode = Literal["style_transfer", "motion_transfer", "enhancement", "upscale", "interpolation", "colorization"]
# Request fields each mode reads beyond strength / temporal_consistency / preserve_motion
# (which have defaults and are ignored where a mode does not use them; see modes.MODES).
MODE_FIELDS = {
    "upscale": ("scale", "width", "height"),
    "interpolation": ("factor", "target_fps"),
    "motion_transfer": ("motion_reference_task_id",),
}

# -- the model paths --------------------------------------------------------------------------
MODEL_MODES = ("style_transfer", "colorization", "motion_transfer")
MODEL_FIELDS = ("model", "num_inference_steps", "seed", "face_region")  # read only by the model paths
# Text-to-video models WanVideoToVideoPipeline can run: one transformer, Wan2.1's VAE. Wan2.2
# A14B (two experts, transformer_2) and TI2V-5B (expand_timesteps) need pipeline code it lacks.
V2V_MODELS = tuple(m for m in (TINY, "wan2.1-t2v-1.3b", "wan2.1-t2v-14b") if m in CATALOG)
#: motion_transfer's model path (Wan Animate).
ANIMATE_MODELS = tuple(ANIMATE_CATALOG)
#: style_transfer / colorization with a prompt and a reference image (Wan VACE).
VACE_MODELS = tuple(VACE_CATALOG)
#: The model path a task runs: WanVideoToVideo, Wan VACE or Wan Animate (None: the classical one).
Pipeline = Literal["video_to_video", "vace", "animate"]


class V2VRequest(JsonModel):
    """The seed's V2V fields, plus the parameters the classical modes take."""

    model_config = ConfigDict(extra="forbid")

    source_task_id: str | None = Field(None, min_length=1, max_length=64, pattern=TASK_ID_PATTERN,
                                       description="A completed task whose video is transformed (or upload one "
                                                   "in the UI)")
    mode: Mode
    strength: float = Field(0.7, ge=0, le=1, description="style_transfer / enhancement: how far to go (0 = unchanged)")
    style_reference_url: str | None = Field(
        None, max_length=2048, pattern=HTTP_URL_PATTERN,
        description="Reference image: required by style_transfer and colorization, the appearance for "
                    "motion_transfer")
    style_reference_base64: str | None = Field(None, max_length=30_000_000,
                                               description="The reference image as base64 (instead of the URL)")
    motion_reference_task_id: str | None = Field(
        None, min_length=1, max_length=64, pattern=TASK_ID_PATTERN,
        description=f"motion_transfer: a completed task whose video's motion animates the source's first frame "
                    f"(at most {MAX_REFERENCE_FRAMES} frames), instead of a reference image")
    preserve_motion: bool = Field(True, description="style_transfer / colorization: temporal smoothing follows the "
                                                    "source's optical flow (false: plain moving average)")
    temporal_consistency: float = Field(0.8, ge=0, le=1,
                                        description="style_transfer / colorization: flicker smoothing (0 = none)")
    scale: float | None = Field(None, gt=1, le=4, description="upscale: factor (default 2), or give width/height")
    width: int | None = Field(None, ge=16, le=4096, multiple_of=2, description="upscale: output width (even)")
    height: int | None = Field(None, ge=16, le=4096, multiple_of=2, description="upscale: output height (even)")
    factor: Literal[2, 4] | None = Field(None, description="interpolation: frame-rate multiplier (default 2)")
    target_fps: float | None = Field(None, gt=0, le=MAX_TARGET_FPS,
                                     description="interpolation: output frame rate (instead of factor)")
    prompt: str | None = Field(
        None, min_length=1, max_length=2000, pattern=NOT_BLANK,
        description="The model path (WanVideoToVideo): style_transfer with a prompt, or colorization with a prompt "
                    "and no reference image; strength is then the share of the denoising schedule re-run. "
                    "motion_transfer: runs Wan Animate, the prompt describing the scene")
    use_model: bool = Field(False, description="motion_transfer: animate the reference image with Wan Animate "
                                               "(driven by the source's pose and face) instead of optical flow")
    model: Literal[V2V_MODELS + ANIMATE_MODELS + VACE_MODELS] | None = Field(
        None, description="The model path's model: a text-to-video model the video-to-video pipeline supports "
                          "(style_transfer, colorization with a prompt), a Wan VACE model (the same with a reference "
                          "image) or a Wan Animate model (motion_transfer); the server default when absent")
    face_region: list[int] | None = Field(
        None, min_length=4, max_length=4,
        description="motion_transfer's model path: [x1, y1, x2, y2] pixels of the source's face when the Haar "
                    "cascade finds none (its crops drive the expression)")
    num_inference_steps: int | None = steps_field(
        None, "The model path's schedule length (10-150; strength x steps are run; the model's default when absent)")
    seed: int | None = seed_field("The model path's noise seed (random when absent)")

    @field_validator("prompt")
    @classmethod
    def _strip_prompt(cls, value: str | None) -> str | None:
        return None if value is None else strip_prompt(value)

    def changed(self, *names: str) -> list[str]:
        """Which of the fields ``names`` the request sets away from their defaults."""
        return [name for name in names if getattr(self, name) != type(self).model_fields[name].default]

    def model_path(self, has_reference: bool) -> Literal["animate", "vace", "video_to_video"] | None:
        """Which model path the request runs (``studio.genius.v2v.submit``); None: the classical one."""
        if self.mode == "motion_transfer":
            return "animate" if self.use_model or self.prompt else None
        if self.prompt and self.mode in ("style_transfer", "colorization"):
            return "vace" if has_reference else "video_to_video"
        return None


class V2VStream(BaseModel):
    width: int
    height: int
    fps: float
    frames: int


class V2VSummary(BaseModel):
    """A finished V2V task, seed-style: what ran and what it made."""

    task_id: str
    status: str
    mode: str
    path: str = Field(description="'classical' (no model) or 'model' (WanVideoToVideo; Wan Animate for "
                                  "motion_transfer)")
    method: str = Field(description="The algorithm that ran")
    parameters: dict = Field(description="The values the mode used")
    input: V2VStream
    output: V2VStream
    frames: int = Field(description="Frames written (output.frames)")
    video_url: str
    thumbnail_url: str
    generation_time_seconds: float


class V2VSpec(EditSpec):
    """A queued V2V task: the mode, its resolved settings and the inputs the submit stored.

    The classical path reads ``strength`` .. ``target_fps`` and a reference (``reference_image``,
    a file in the inputs folder, or ``reference_video``, a copied video); the model paths
    (``path == "model"``, ``pipeline`` naming which) read ``model`` .. ``seed``, resolved at
    submission so that a run repeats from its spec. ``unused``: request settings that the model
    path ignores although the caller set them (the result's notes say so).

    Version 2 added ``pipeline``: version-1 rows said only ``path: "model"`` (plus
    ``pipeline: "vace"`` for VACE) and the run told WanVideoToVideo from Wan Animate by the mode;
    :meth:`upgrade` writes that rule down once.
    """

    KIND: ClassVar[str] = KIND
    VERSION: ClassVar[int] = 2

    kind: Literal["v2v"] = "v2v"
    version: Literal[2] = 2
    mode: Mode
    pipeline: Pipeline | None = Field(None, description="The model path run (None: the classical path)")
    # the classical path
    strength: float | None = Field(None, ge=0, le=1)
    preserve_motion: bool | None = None
    temporal_consistency: float | None = Field(None, ge=0, le=1)
    scale: float | None = None
    width: int | None = None
    height: int | None = None
    factor: Literal[2, 4] | None = None
    target_fps: float | None = None
    reference_image: str | None = Field(None, description="The reference image's file in the inputs folder")
    reference_video: SourceVideo | None = Field(None, description="motion_transfer's motion reference video "
                                                                  "(copied into the inputs folder)")
    # the model paths (strength is WanVideoToVideo's share of the schedule re-run)
    model: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    num_inference_steps: int | None = steps_field(None)
    guidance_scale: float | None = None
    seed: int | None = seed_field()
    face_region_xywh: list[int] | None = Field(None, min_length=4, max_length=4,
                                               description="Wan Animate: the face box given at submission")
    unused: list[str] = Field(default_factory=list)

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = super().upgrade(data)
        if data["version"] == 1:
            if data.get("path") == "model" and data.get("pipeline") is None:
                data["pipeline"] = "animate" if data.get("mode") == "motion_transfer" else "video_to_video"
            data["version"] = 2
        return data
