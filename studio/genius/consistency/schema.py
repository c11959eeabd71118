"""What the Consistency Tracker takes, answers and stores.

The request and response models of ``/v1/genius/consistency/...`` (entities and tracking), its
errors, and the typed spec of a tracking task (:class:`ConsistencySpec`, ``studio.engine.spec``)
with the field names rows stored before specs existed used, so those rows still load.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from studio.engine.request import NOT_BLANK, JsonModel
from studio.engine.spec import EditSpec
from studio.errors import StudioError
from studio.genius.consistency.reference import ENTITY_TYPES, MAX_REFERENCE_SIDE
from studio.genius.consistency.scoring import HISTOGRAM
from studio.models import appearance

KIND = "consistency"
APPEARANCE_MODELS = (HISTOGRAM, *appearance.EMBEDDERS)  # the first is the classical path
MAX_ENTITIES = 50  # per owner
MAX_TRACKED = 16  # entities per tracking task
MAX_REFERENCE_PIXELS = MAX_REFERENCE_SIDE ** 2  # refused from the image header, before decoding

EntityName = Annotated[str, Field(min_length=1, max_length=100, pattern=NOT_BLANK)]


class EntityExists(StudioError):
    """An owner registered a second entity with a name it already uses."""

    status_code = 409
    title = "Entity exists"


class EntityNotFound(StudioError):
    status_code = 404
    title = "Entity not found"


class RegisterEntityRequest(JsonModel):
    """The seed's register-entity body."""

    model_config = ConfigDict(extra="forbid")

    name: EntityName = Field(description="Unique among your entities; the key of its timeline")
    entity_type: Literal[ENTITY_TYPES] = Field(
        "object", description="A character also gets a face model (when a frontal face is found in the reference)")
    reference_image_base64: str = Field(
        ..., min_length=1, max_length=30_000_000,
        description="PNG, JPEG or WebP (base64 or data: URL), each side 16-2048 px, not flat")


class EntityInfo(BaseModel):
    """A registered entity (its reference image is kept on the server)."""

    entity_id: str
    name: str
    entity_type: str
    width: int = Field(description="Reference width in pixels")
    height: int = Field(description="Reference height in pixels")
    created_at: float = Field(description="Unix time of registration")


class EntityList(BaseModel):
    entities: list[EntityInfo] = Field(description="Your entities, oldest first")


class TrackRequest(JsonModel):
    """Options of a tracking run (the body is optional)."""

    model_config = ConfigDict(extra="forbid")

    entity_names: list[EntityName] | None = Field(
        None, min_length=1, max_length=MAX_TRACKED,
        description=f"Which of your entities to track (default: all of them, at most {MAX_TRACKED})")
    detect_every: int = Field(5, ge=1, le=300, description="Detect on every N-th frame; track in between")
    appearance_model: Literal[APPEARANCE_MODELS] = Field(
        HISTOGRAM,
        description="The score's appearance term: 'histogram' (classical path: colour histogram + grey correlation) "
                    "or a CLIP image encoder (model path: max(0, cosine) of embeddings): 'tiny-clip' (offline, "
                    "untrained: meaningless similarities, for testing), 'clip-vit-base-patch32' "
                    "(openai/clip-vit-base-patch32 from the Hugging Face Hub; 503 when it cannot be loaded here). "
                    "Detection and tracking are the same on both paths")


class TimelineEntry(BaseModel):
    frame: int
    bbox: list[int] = Field(description="[x1, y1, x2, y2] pixel corners (x2/y2 exclusive)")
    confidence: float = Field(ge=0, le=1)


class EntityScore(BaseModel):
    """One entity's figures; the formulas are in ``studio.genius.consistency.scoring``."""

    consistency_score: float | None = Field(description="appearance_similarity x temporal_stability; null if absent")
    appearance_similarity: float | None = Field(
        description="Mean per-frame similarity to the reference: (colour + structure) / 2 on the classical path, "
                    "max(0, cosine of embeddings) on the model path; null if absent")
    temporal_stability: float | None = Field(description="1 - min(1, 2 x std of the per-frame similarity)")
    frames_present: int
    frames_tracked: int = Field(description="Frames found by tracking between detections")
    detections: dict[str, int] = Field(description="Keyframe detections by method: features, face, template")


class TrackResult(BaseModel):
    """The seed's tracking response, for a completed tracking task."""

    task_id: str = Field(description="The tracking task (its video is the annotated one)")
    source_task_id: str | None = Field(description="The tracked video's task; null for an uploaded video")
    video_url: str
    entities_tracked: int = Field(description="Entities found in at least one frame")
    frames_analyzed: int
    consistency_score: float | None = Field(
        description="Mean of the entities' scores weighted by the frames each is present in; null when none was found")
    entity_timelines: dict[str, list[TimelineEntry]]
    entity_scores: dict[str, EntityScore]
    appearance_model: str = Field(description="'histogram' (classical path) or the encoder of the model path")
    detect_every: int


# -- the stored task spec -----------------------------------------------------------------------

class StoredEntity(BaseModel):
    """An entity as a tracking task keeps it: its reference copied into the task's inputs."""

    model_config = ConfigDict(extra="forbid")

    entity_id: str
    name: str
    entity_type: Literal[ENTITY_TYPES]
    file: str = Field(description="The reference PNG's file name in the task's inputs")


class ConsistencySpec(EditSpec):
    """A tracking task: the source video (``source``), the entities and how to track them."""

    KIND: ClassVar[str] = KIND

    kind: Literal["consistency"] = KIND
    detect_every: int = Field(ge=1, le=300)
    entities: list[StoredEntity] = Field(min_length=1, max_length=MAX_TRACKED)
    # Rows queued before the model path existed have no appearance_model: the classical path.
    appearance_model: Literal[APPEARANCE_MODELS] = HISTOGRAM
