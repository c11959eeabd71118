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

from typing import TYPE_CHECKING

from studio.engine.request import GenerationRequest, parse_request
from studio.engine.state_cache import similarity_calibrated
from studio.errors import InvalidRequest, TaskNotFound
from studio.genius.batch.schema import (
    PRIORITIES,
    BatchRecord,
    BatchRequest,
    BatchStatus,
    BatchSubmitResponse,
    SimilarityStats,
)
from studio.jobs import store as st
from studio.jobs.routing import queue_of
from studio.media.url_policy import validate_url

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices


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


def submit_batch(services: "FeatureServices", request: BatchRequest, owner: str,
                 idempotency_key: str | None = None) -> BatchSubmitResponse:
    """Queue every prompt of ``request`` as a task of one batch (one transaction)."""
    services.refuse_new_work()
    if request.webhook_url:
        validate_url(request.webhook_url, services.fetch_policy)
    prepared = [services.prepare(r, owner) for r in _task_requests(request)]
    uncalibrated = sorted({p.stored.model for p in prepared if not similarity_calibrated(p.stored.model)})
    record = BatchRecord(priority=request.priority, enable_similarity_caching=request.enable_similarity_caching)
    if request.enable_similarity_caching and uncalibrated:
        # The worker reads this flag: with it off nothing is reused. What was asked is kept for the notes.
        record = BatchRecord(priority=request.priority, enable_similarity_caching=False,
                             similarity_caching_requested=True, similarity_uncalibrated_models=uncalibrated)
    batch_id, task_ids, created = services.store.create_batch(
        owner, {**request.model_dump(), **record.model_dump()}, [p.stored.stored() for p in prepared],
        PRIORITIES[request.priority], [round(p.estimate, 2) for p in prepared], webhook_url=request.webhook_url,
        idempotency_key=idempotency_key, queues=[queue_of(p.stored) for p in prepared])
    last = task_ids[-1]
    wait = services.queue_wait(last) + (prepared[-1].estimate if created else 0.0)
    reply = BatchSubmitResponse(batch_id=batch_id, task_ids=task_ids, total=len(task_ids),
                                estimated_time_seconds=round(wait, 2),
                                queue_position=services.store.queue_position(task_ids[0]),
                                notes=batch_notes(record))
    if created:  # after measuring, so the reply describes the queue the batch joined
        services.wake()
    return reply


def batch_notes(record: BatchRecord) -> list[str]:
    """What a stored batch runs differently from what was asked."""
    if not record.similarity_caching_requested:
        return []
    models = ", ".join(record.similarity_uncalibrated_models)
    return [f"similarity caching was requested but not applied: its thresholds are not calibrated for {models}'s "
            "text encoder (pooled-embedding cosines of one encoder do not carry over to another), so nothing is "
            "reused; README 'Calibrating similarity caching' says how to calibrate a model"]


def batch_status(services: "FeatureServices", batch_id: str, owner: str) -> BatchStatus:
    """Every task of the batch with its status, and the totals."""
    found = services.store.batch(batch_id) if len(batch_id) <= 64 else None
    if found is None or found[0]["owner"] != owner:
        raise TaskNotFound(f"no batch with id {batch_id[:64]!r}")
    info, tasks = found
    record = BatchRecord.model_validate(info["request"])
    counts = {status: 0 for status in st.ALL_STATUSES}
    for task in tasks:
        counts[task.status] += 1
    statuses = [services.status(task.id, owner) for task in tasks]
    return BatchStatus(batch_id=batch_id, total=len(tasks), counts={k: v for k, v in counts.items() if v},
                       progress=round(sum(t.progress for t in tasks) / max(len(tasks), 1), 4),
                       priority=record.priority,
                       similarity_cache=_similarity_stats(tasks, record.enable_similarity_caching),
                       notes=batch_notes(record), tasks=statuses)


def _similarity_stats(tasks: list, applied: bool) -> SimilarityStats:
    # Read from the finished tasks' results (results are rows, not specs).
    runs = [((t.result or {}).get("metadata") or {}).get("batch") or {} for t in tasks]
    states = [r["denoising_state"] for r in runs if r.get("denoising_state")]
    return SimilarityStats(applied=applied, text_encodings_reused=sum(r.get("text_encoding") == "reused" for r in runs),
                           denoising_states_reused=len(states),
                           steps_skipped=sum(s["skipped_steps"] for s in states))
