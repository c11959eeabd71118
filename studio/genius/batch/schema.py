"""What Batch Inference takes, answers and keeps.

The request and responses of ``/v1/genius/batch``, and :class:`BatchRecord`: the batch row's
stored request (what was asked, and whether similarity caching was applied). A batch's tasks
are text-to-video tasks (``GenerationSpec``); the batch row groups them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from studio.engine.request import HTTP_URL_PATTERN, NOT_BLANK, GenerationSettings, JsonModel

if TYPE_CHECKING:
    from studio.views import TaskStatus

PRIORITIES = {"low": 0, "normal": 1, "high": 2}
MAX_PROMPTS = 64


class BatchRequest(JsonModel):
    """The seed's batch fields, plus ``settings`` shared by every prompt (any generate field)."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[Annotated[str, Field(min_length=1, max_length=2000, pattern=NOT_BLANK)]] = Field(
        ..., min_length=1, max_length=MAX_PROMPTS, description=f"1-{MAX_PROMPTS} prompts")
    priority: Literal["high", "normal", "low"] = "normal"
    enable_similarity_caching: StrictBool = True
    max_concurrent: int = Field(4, ge=1, le=16, description="Most tasks of this batch run in one pipeline call")
    vram_budget_gb: float | None = Field(None, gt=0, le=2048, description="Summed VRAM estimate a group may use")
    settings: GenerationSettings = Field(default_factory=lambda: GenerationSettings(),
                                    description="Generate fields applied to every prompt (fps, resolution, ...)")
    webhook_url: str | None = Field(None, max_length=2048, pattern=HTTP_URL_PATTERN,
                                    description="Receives every task's task.* events")



class BatchSubmitResponse(BaseModel):
    batch_id: str
    task_ids: list[str]
    total: int
    estimated_time_seconds: float = Field(description="Until the last task of the batch is done (queue included)")
    queue_position: int = Field(description="Queue position of the batch's first task")
    notes: list[str] = Field(default_factory=list, description="How the batch runs differently from the request "
                                                               "(e.g. similarity caching requested but not applied)")


class SimilarityStats(BaseModel):
    """What similarity caching saved in a batch, counted from its finished tasks' metadata."""

    applied: bool = Field(True, description="Whether similarity caching runs for this batch: requested, and "
                                            "calibrated for its model(s)")
    text_encodings_reused: int = Field(description="Tasks whose prompt encoding was reused")
    denoising_states_reused: int = Field(description="Tasks that started from a near-identical prompt's state")
    steps_skipped: int = Field(description="Denoising steps those tasks did not run")


class BatchStatus(BaseModel):
    batch_id: str
    total: int
    counts: dict[str, int] = Field(description="Tasks per status")
    progress: float = Field(description="Mean progress of the batch's tasks")
    priority: str
    similarity_cache: SimilarityStats
    notes: list[str] = Field(default_factory=list, description="As in the submit reply")
    tasks: list["TaskStatus"]


class BatchRecord(BaseModel):
    """What a batch row's stored request says about how the batch runs; the row also keeps the
    whole request as validated (``BatchRequest``). Read leniently (other keys are ignored), so
    rows of any earlier version still answer ``GET /v1/genius/batch/{id}``.

    With similarity caching requested for a model whose thresholds are not calibrated, the
    worker must not reuse anything: ``enable_similarity_caching`` is stored off and what was
    asked is kept for the notes (``similarity_caching_requested``, the models concerned)."""

    model_config = ConfigDict(extra="ignore")

    priority: Literal["high", "normal", "low"] = "normal"
    enable_similarity_caching: bool = True  # read by the worker (studio.jobs.worker)
    similarity_caching_requested: bool = False
    similarity_uncalibrated_models: list[str] = Field(default_factory=list)


def _rebuild() -> None:
    from studio.views import TaskStatus  # noqa: F401  (resolves the forward reference)

    BatchStatus.model_rebuild()


_rebuild()
