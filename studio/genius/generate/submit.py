"""Submitting a text-to-video task: resolve, estimate, store, queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from studio.config import AUTO_MODEL
from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest, GenerationSpec, seed_or_random
from studio.errors import InvalidRequest, ModelUnavailable
from studio.genius.generate.loras import check_choices
from studio.genius.orchestrator.selection import choose_model, device_of_workers
from studio.jobs.routing import queue_of
from studio.media.url_policy import validate_url
from studio.models.catalog import CATALOG
from studio.views import SubmitResponse

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices

NORMAL_PRIORITY = 1  # single generations; batches choose low (0), normal (1) or high (2)


@dataclass(frozen=True)
class Prepared:
    """A request ready to store: model and seed resolved, its own run time estimated."""

    stored: GenerationSpec
    estimate: float


def prepare(services: "FeatureServices", request: GenerationRequest, owner: str) -> Prepared:
    """Resolve ``owner``'s request for storage (model, seed) and estimate its own run time; its
    ``loras`` must be ``owner``'s and fit the model (400 otherwise)."""
    model = request.model or services.default_model
    if model == AUTO_MODEL:
        model, _reasons = choose_model(services.costs, request, device_of_workers(services.worker_devices()))
    if model not in CATALOG:
        raise InvalidRequest(f"model must be one of {', '.join(CATALOG)}")
    check_choices(services.loras, owner, request.loras, model)
    if request.upscaler == "learned" and services.upscaler_model is None:
        raise ModelUnavailable("upscaler: this server has no learned upscaler (ECHOEL_UPSCALER_MODEL: an ESRGAN-family "
                               "file or hub:<owner>/<repository>/<file>); use 'classical'")
    seed = seed_or_random(request.seed)
    stored = GenerationSpec(**{**request.model_dump(), "model": model, "seed": seed})
    spec = CATALOG[model]
    estimate = services.estimator.estimate(spec, make_plan(stored, spec, seed),
                                           model_loaded=services.models.loaded_model == model)
    return Prepared(stored, estimate.seconds)


def submit(services: "FeatureServices", request: GenerationRequest, owner: str, priority: int = NORMAL_PRIORITY,
           idempotency_key: str | None = None) -> SubmitResponse:
    """Store a text-to-video task and queue it; the row is committed before this returns.

    ``owner`` is the API key id (or the UI visitor's owner); only the owner sees the task afterwards.
    """
    services.refuse_new_work()
    if request.webhook_url:
        validate_url(request.webhook_url, services.fetch_policy)
    prepared = prepare(services, request, owner)
    task, created = services.store.create_task(
        GenerationSpec.KIND, prepared.stored.stored(), priority=priority, estimated_seconds=round(prepared.estimate, 2),
        owner=owner, webhook_url=request.webhook_url, idempotency_key=idempotency_key,
        idempotency_body=request.model_dump(),  # what the client sent, before a random seed is drawn
        queue=queue_of(prepared.stored))
    # Measured before waking the worker, so the reply describes the queue it joined.
    reply = SubmitResponse(
        task_id=task.id,
        status=task.status,
        message="Task queued for processing" if created else "Existing task for this Idempotency-Key",
        estimated_time_seconds=round(services.queue_wait(task.id) + prepared.estimate, 2) if created else
        round(task.eta_seconds if task.eta_seconds is not None else prepared.estimate, 2),
        queue_position=services.store.queue_position(task.id),
    )
    if created:
        services.wake()
    return reply
