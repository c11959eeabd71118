"""Batch Inference: many prompts as tasks of the one durable queue, run together when they can.

- Every prompt becomes a task with the batch's priority (``high`` before ``normal`` before
  ``low``, FIFO within a level; a waiting task gains one level per ``AGE_BOOST_SECONDS`` of the
  store, so ``low`` never starves). Single ``/generate`` tasks are ``normal``.
- VRAM-aware grouping (see ``Worker``): tasks of one batch with the same model and shape run as
  one batched pipeline call while their summed VRAM estimate fits ``vram_budget_gb`` (and the
  device), never more than ``max_concurrent`` at once.
- Similarity caching (``enable_similarity_caching``): equal prompts reuse the text encoder's
  output instead of encoding again, and near-identical prompts start from a cached early
  denoising state of the most similar earlier prompt, skipping those steps (approximate
  caching as in NIRVANA; thresholds and rules in ``studio.engine.state_cache``). Every reuse is
  recorded in the task's metadata (``metadata.batch``) and counted in the batch's status.
  It runs only on models whose similarity levels were calibrated on their own text encoder
  (``ModelSpec.similarity_skip_levels``; today the offline ``tiny``): for any other model a
  requested ``enable_similarity_caching`` is not applied (nothing is reused, not even equal
  prompts' encodings), and the batch's ``notes`` say so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, create_model

from studio.engine.request import HTTP_URL_PATTERN, NOT_BLANK, GenerationRequest, JsonModel, parse_request
from studio.engine.state_cache import similarity_calibrated
from studio.errors import InvalidRequest, TaskNotFound
from studio.jobs import store as st
from studio.media.url_policy import validate_url

if TYPE_CHECKING:
    from studio.core import Studio
    from studio.views import TaskStatus

PRIORITIES = {"low": 0, "normal": 1, "high": 2}
MAX_PROMPTS = 64


# Every generate field except the per-prompt ones, with the same defaults and bounds.
BatchSettings = create_model(
    "BatchSettings", __base__=JsonModel,
    **{name: (field.annotation, field) for name, field in GenerationRequest.model_fields.items()
       if name not in ("prompt", "webhook_url")})
BatchSettings.model_config["extra"] = "forbid"
BatchSettings.model_rebuild(force=True)


class BatchRequest(JsonModel):
    """The seed's batch fields, plus ``settings`` shared by every prompt (any generate field)."""

    model_config = ConfigDict(extra="forbid")

    prompts: list[Annotated[str, Field(min_length=1, max_length=2000, pattern=NOT_BLANK)]] = Field(
        ..., min_length=1, max_length=MAX_PROMPTS, description=f"1-{MAX_PROMPTS} prompts")
    priority: Literal["high", "normal", "low"] = "normal"
    enable_similarity_caching: StrictBool = True
    max_concurrent: int = Field(4, ge=1, le=16, description="Most tasks of this batch run in one pipeline call")
    vram_budget_gb: float | None = Field(None, gt=0, le=2048, description="Summed VRAM estimate a group may use")
    settings: BatchSettings = Field(default_factory=lambda: BatchSettings(),
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


def _task_requests(request: BatchRequest) -> list[GenerationRequest]:
    """One validated generate request per prompt (errors name the prompt and the field)."""
    requests = []
    for index, prompt in enumerate(request.prompts):
        try:
            requests.append(parse_request({**request.settings.model_dump(exclude_unset=True), "prompt": prompt}))
        except InvalidRequest as error:
            raise InvalidRequest(f"prompts[{index}]: {error.detail}" if "prompt" in error.detail
                                 else f"settings: {error.detail}") from None
    return requests


def submit_batch(studio: "Studio", request: BatchRequest, owner: str,
                 idempotency_key: str | None = None) -> BatchSubmitResponse:
    """Queue every prompt of ``request`` as a task of one batch (one transaction)."""
    studio.refuse_new_work()
    if request.webhook_url:
        validate_url(request.webhook_url, studio.fetch_policy)
    prepared = [studio.prepare(r) for r in _task_requests(request)]
    stored = request.model_dump()
    uncalibrated = sorted({p.stored.model for p in prepared if not similarity_calibrated(p.stored.model)})
    if request.enable_similarity_caching and uncalibrated:
        # The worker reads this flag: with it off nothing is reused. What was asked is kept for the notes.
        stored.update(enable_similarity_caching=False, similarity_caching_requested=True,
                      similarity_uncalibrated_models=uncalibrated)
    batch_id, task_ids, created = studio.store.create_batch(
        owner, stored, [p.stored.model_dump() for p in prepared], PRIORITIES[request.priority],
        [round(p.estimate, 2) for p in prepared], webhook_url=request.webhook_url,
        idempotency_key=idempotency_key)
    last = task_ids[-1]
    wait = studio.queue_wait(last) + (prepared[-1].estimate if created else 0.0)
    reply = BatchSubmitResponse(batch_id=batch_id, task_ids=task_ids, total=len(task_ids),
                                estimated_time_seconds=round(wait, 2),
                                queue_position=studio.store.queue_position(task_ids[0]),
                                notes=batch_notes(stored))
    if created:  # after measuring, so the reply describes the queue the batch joined
        studio.worker.wake()
    return reply


def batch_notes(stored: dict) -> list[str]:
    """What a stored batch request runs differently from what was asked."""
    if not stored.get("similarity_caching_requested"):
        return []
    models = ", ".join(stored.get("similarity_uncalibrated_models") or ())
    return [f"similarity caching was requested but not applied: its thresholds are not calibrated for {models}'s "
            "text encoder (pooled-embedding cosines of one encoder do not carry over to another), so nothing is "
            "reused; README 'Calibrating similarity caching' says how to calibrate a model"]


def batch_status(studio: "Studio", batch_id: str, owner: str) -> BatchStatus:
    """Every task of the batch with its status, and the totals."""
    found = studio.store.batch(batch_id) if len(batch_id) <= 64 else None
    if found is None or found[0]["owner"] != owner:
        raise TaskNotFound(f"no batch with id {batch_id[:64]!r}")
    info, tasks = found
    counts = {status: 0 for status in st.ALL_STATUSES}
    for task in tasks:
        counts[task.status] += 1
    statuses = [studio.status(task.id, owner) for task in tasks]
    return BatchStatus(batch_id=batch_id, total=len(tasks), counts={k: v for k, v in counts.items() if v},
                       progress=round(sum(t.progress for t in tasks) / max(len(tasks), 1), 4),
                       priority=info["request"]["priority"],
                       similarity_cache=_similarity_stats(tasks, bool(info["request"].get("enable_similarity_caching",
                                                                                         True))),
                       notes=batch_notes(info["request"]), tasks=statuses)


def _similarity_stats(tasks: list, applied: bool) -> SimilarityStats:
    runs = [((t.result or {}).get("metadata") or {}).get("batch") or {} for t in tasks]
    states = [r["denoising_state"] for r in runs if r.get("denoising_state")]
    return SimilarityStats(applied=applied, text_encodings_reused=sum(r.get("text_encoding") == "reused" for r in runs),
                           denoising_states_reused=len(states),
                           steps_skipped=sum(s["skipped_steps"] for s in states))


def _rebuild() -> None:
    from studio.views import TaskStatus  # noqa: F401  (resolves the forward reference)

    BatchStatus.model_rebuild()


_rebuild()
