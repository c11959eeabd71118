"""What the Scene Orchestrator takes, answers and stores.

The request and response of ``POST /v1/genius/scene/edit``, and the typed specs of the two
task kinds a scene edit queues (``studio.engine.spec``): one :class:`SceneShotSpec` per scene
when the character is conditioned on a reference image (otherwise the shots are plain
text-to-video tasks, ``GenerationSpec``), and the :class:`SceneSpec` of the stitch that depends
on them. The stored field names are the ones rows written before specs existed used, so those
rows still load (``version`` 1).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from studio.engine.request import NOT_BLANK, GenerationSettings, GenerationSpec, JsonModel
from studio.engine.spec import EditSpec
from studio.models.catalog import I2V_CATALOG, VACE_CATALOG

SCENE_KIND = "scene"
SHOT_KIND = "scene_shot"
MAX_SCENES = 12
VaceModel = Literal[tuple(VACE_CATALOG)]
MorphModel = Literal[tuple(VACE_CATALOG) + tuple(I2V_CATALOG)]
TransitionType = Literal["auto", "cut", "crossfade", "wipe", "zoom", "blur", "morph"]


# -- request and response -----------------------------------------------------------------------

class Scene(JsonModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, max_length=2000, pattern=NOT_BLANK)
    duration: float = Field(..., ge=1, le=60, description="Seconds")


class Transition(JsonModel):
    model_config = ConfigDict(extra="forbid")

    type: TransitionType
    direction: Literal["left", "right", "up", "down"] | None = Field(None, description="wipe only")


class SceneEditRequest(JsonModel):
    """The seed's multi-shot edit, plus explicit transitions, a character description and the
    generation settings every shot shares."""

    model_config = ConfigDict(extra="forbid")

    scenes: list[Scene] = Field(..., min_length=1, max_length=MAX_SCENES)
    enable_auto_transitions: StrictBool = True
    transition_duration_seconds: float = Field(0.5, ge=0, le=5)
    enable_character_consistency: StrictBool = False
    character_description: str | None = Field(None, min_length=1, max_length=500, pattern=NOT_BLANK)
    transitions: list[Transition] | None = Field(
        None, max_length=MAX_SCENES - 1,
        description="One per boundary (scenes - 1); overrides enable_auto_transitions")
    settings: GenerationSettings = Field(default_factory=lambda: GenerationSettings(),
                                         description="Generate fields for every shot (fps, resolution, steps, ...)")
    morph_with_model: StrictBool = Field(
        False, description="Generate every morph boundary with Wan VACE (first/last-frame generation between A's "
                           "last and B's first frame) instead of the optical-flow morph")
    character_reference_image_base64: str | None = Field(
        None, max_length=30_000_000,
        description="With enable_character_consistency: an image of the character; every shot is then generated "
                    "by Wan VACE conditioned on it (reference_images)")
    model: VaceModel | None = Field(None, description="Wan VACE model of morph_with_model and the character "
                                    "reference (default: tiny-vace without a GPU, wan2.1-vace-1.3b with one)")
    morph_model: MorphModel | None = Field(
        None, description="morph_with_model's model, instead of model: a Wan VACE model or a first-last-frame "
                          "model (wan2.1-flf2v-14b; tiny-i2v offline)")


class PlannedTransition(BaseModel):
    from_scene: int
    to_scene: int
    type: str = Field(description="auto until the edit runs and measures the boundary")
    duration: float = Field(description="Overlap seconds (exact frames / fps)")


class SceneEditResponse(BaseModel):
    task_id: str
    total_scenes: int
    total_duration_seconds: float
    transitions: list[PlannedTransition]
    estimated_time_seconds: float
    shot_task_ids: list[str]
    queue_position: int


# -- stored task specs --------------------------------------------------------------------------

class StoredTransition(BaseModel):
    """One boundary as the stitch runs it: ``auto`` is resolved by measuring the shots then."""

    model_config = ConfigDict(extra="forbid")

    type: TransitionType
    duration_seconds: float = Field(ge=0)
    params: dict[str, Any] = Field(default_factory=dict, description="The type's parameters (a wipe's direction)")


class MorphSettings(BaseModel):
    """What a model-generated morph uses: every shot's prompt and the first shot's settings."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[str] = Field(description="The shots' prompts as planned (genre and character included)")
    negative_prompt: str
    num_inference_steps: int = Field(ge=1)  # ge=1: rows accepted under older ranges still load
    guidance_scale: float
    seed: int = Field(ge=0)


class SceneSpec(EditSpec):
    """The stitch of a scene edit: its shots (the tasks it depends on) and how to join them.
    Version 2 stores the morph's steps as ``num_inference_steps`` (version 1: ``steps``)."""

    KIND: ClassVar[str] = SCENE_KIND
    VERSION: ClassVar[int] = 2

    kind: Literal["scene"] = SCENE_KIND
    shots: list[str] = Field(min_length=1, description="The shot tasks, in scene order")
    fps: int = Field(gt=0, description="The shots' frame rate, the edit's")
    shot_kind: Literal["t2v", "scene_shot"] = Field("t2v", description="What kind of task every shot is")
    transitions: list[StoredTransition] = Field(description="One per boundary (shots - 1)")
    character_consistency: bool = False
    character_description: str | None = None
    seed: int | None = Field(None, description="The seed every shot shares (character consistency)")
    reference_model: str | None = Field(None, description="The VACE model of reference-conditioned shots")
    morph_model: str | None = Field(None, description="The model generating morph boundaries (morph_with_model)")
    morph: MorphSettings | None = Field(None, description="What the morph model generates with")

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = super().upgrade(data)
        if data["version"] == 1:
            if isinstance(data.get("morph"), dict) and "steps" in data["morph"]:
                data["morph"] = {**data["morph"], "num_inference_steps": data["morph"]["steps"]}
                del data["morph"]["steps"]
            data["version"] = 2
        return data


class SceneShotSpec(EditSpec):
    """One shot generated by Wan VACE conditioned on the character's reference image (stored in
    the task's inputs as ``image``): the text-to-video shot it replaces, planned for ``model``."""

    KIND: ClassVar[str] = SHOT_KIND

    kind: Literal["scene_shot"] = SHOT_KIND
    path: Literal["classical", "model"] = "model"
    image: str = Field(description="The reference image's file name in the task's inputs")
    model: str = Field(description="The VACE model")
    scene: int = Field(ge=0, description="Which scene of the edit this shot is")
    shot: GenerationSpec = Field(description="The text-to-video request of the shot (model and seed resolved)")
