"""Submitting a generation task: resolve, estimate, store, queue.

A request with ``image`` (and ``last_image``) runs an image-to-video model: the one it names, or,
when it names none or ``auto``, the default one for that many frames
(``studio.models.loader.default_image_model``). The images (base64, or URLs fetched through the
guarded fetcher) are stored as PNGs in the task's inputs folder, published with object storage.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from studio.config import AUTO_MODEL
from studio.engine.edit import inputs_folder, store_image
from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest, GenerationSpec, seed_or_random
from studio.errors import InvalidRequest, ModelUnavailable
from studio.genius.edit_submit import new_inputs
from studio.genius.generate.loras import check_choices
from studio.genius.orchestrator.selection import choose_model, device_of_workers
from studio.jobs.routing import queue_of
from studio.media.inputs import image_from
from studio.media.url_policy import validate_url
from studio.models.catalog import GENERATION_CATALOG, ModelSpec
from studio.models.loader import default_image_model
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
    """Resolve ``owner``'s request for storage (model, seed, images) and estimate its own run
    time; its ``loras`` must be ``owner``'s and fit the model, its images the model (400 otherwise)."""
    model = _model_for(services, request)
    check_images(GENERATION_CATALOG[model], request)
    check_choices(services.loras, owner, request.loras, model)
    if request.upscaler == "learned" and services.upscaler_model is None:
        raise ModelUnavailable("upscaler: this server has no learned upscaler (ECHOEL_UPSCALER_MODEL: an ESRGAN-family "
                               "file or hub:<owner>/<repository>/<file>); use 'classical'")
    if request.interpolator == "learned" and services.interpolator_model is None:
        raise ModelUnavailable("interpolator: this server has no learned interpolator (ECHOEL_INTERPOLATOR_MODEL: a "
                               "RIFE 4.6 file or hub:<owner>/<repository>/<file>); use 'classical'")
    seed = seed_or_random(request.seed)
    stored = GenerationSpec(**{**request.model_dump(), "model": model, "seed": seed, **_stored_images(services, request)})
    spec = GENERATION_CATALOG[model]
    estimate = services.estimator.estimate(spec, make_plan(stored, spec, seed),
                                           model_loaded=services.models.loaded_model == model)
    return Prepared(stored, estimate.seconds)


@dataclass(frozen=True)
class Forecast:
    """What a request would run on here, and for how long, before it is queued."""

    model: str
    seconds: float
    basis: str  # "prior" or "measured" (the cost model's step rate)


def forecast(services: "FeatureServices", request: GenerationRequest) -> Forecast:
    """The model and the estimated seconds of ``request`` on this server, without queueing it (the
    Generate tab shows it before you press Generate); the same model choice and cost model as a
    submit, so the number is the one the task would report."""
    model = _model_for(services, request)
    spec = GENERATION_CATALOG[model]
    estimate = services.estimator.estimate(spec, make_plan(request, spec, seed=0),
                                           model_loaded=services.models.loaded_model == model)
    return Forecast(model, estimate.seconds, estimate.basis)


def _model_for(services: "FeatureServices", request: GenerationRequest) -> str:
    """The model a request runs: named, the orchestrator's pick for ``auto``, or the default (the
    server's for text, the default image-to-video model for a request with images)."""
    if request.image and request.model in (None, AUTO_MODEL):
        return default_image_model(2 if request.last_image else 1)
    model = request.model or services.default_model
    if model == AUTO_MODEL:
        model, _reasons = choose_model(services.costs, request, device_of_workers(services.worker_devices()))
    if model not in GENERATION_CATALOG:
        raise InvalidRequest(f"model must be one of {', '.join(GENERATION_CATALOG)}")
    return model


def check_images(spec: ModelSpec, request: GenerationRequest) -> None:
    """400 unless the request gives ``spec`` the frames it is conditioned on (``ModelSpec.images``)."""
    takes = {n: [s.id for s in GENERATION_CATALOG.values() if s.images == n or n == 1 and s.optional_image]
             for n in (1, 2)}
    if request.last_image and not request.image:
        raise InvalidRequest("last_image needs image (the first frame) too")
    if spec.images == 0 and request.image and not spec.optional_image:
        raise InvalidRequest(f"image: {spec.id} generates from text only; models that start from an image: "
                             f"{', '.join(takes[1] + takes[2])}")
    if spec.images and not request.image:
        raise InvalidRequest(f"image: {spec.id} generates from an image; give image (base64 or an http(s) URL)")
    if request.last_image and spec.images < 2:  # TI2V too: its image conditioning is a first frame
        raise InvalidRequest(f"last_image: {spec.id} takes a first frame only; first-and-last-frame models: "
                             f"{', '.join(takes[2])}")
    if spec.images == 2 and not request.last_image:
        raise InvalidRequest(f"last_image: {spec.id} goes from a first to a last frame; give last_image too")


def _stored_images(services: "FeatureServices", request: GenerationRequest) -> dict:
    """The request's images decoded and saved in a new inputs folder: the stored spec's fields."""
    if not request.image:
        return {}
    images = {name: image_from(value, services.fetch_policy, field)
              for name, field, value in (("first.png", "image", request.image),
                                         ("last.png", "last_image", request.last_image)) if value}
    inputs_id, folder = new_inputs(services)
    try:
        for name, image in images.items():
            store_image(folder, name, image)
        services.paths.publish_inputs(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return {"inputs_id": inputs_id, "image": "first.png", "last_image": "last.png" if request.last_image else None}


def _discard_inputs(services: "FeatureServices", stored: GenerationSpec) -> None:
    """Remove the images a request stored when no task of it was created."""
    if stored.inputs_id:
        shutil.rmtree(inputs_folder(services.data_dir, stored.inputs_id), ignore_errors=True)


def submit(services: "FeatureServices", request: GenerationRequest, owner: str, priority: int = NORMAL_PRIORITY,
           idempotency_key: str | None = None) -> SubmitResponse:
    """Store a text-to-video task and queue it; the row is committed before this returns.

    ``owner`` is the API key id (or the UI visitor's owner); only the owner sees the task afterwards.
    """
    services.refuse_new_work()
    if request.webhook_url:
        validate_url(request.webhook_url, services.fetch_policy)
    prepared = prepare(services, request, owner)
    try:
        task, created = services.store.create_task(
            GenerationSpec.KIND, prepared.stored.stored(), priority=priority,
            estimated_seconds=round(prepared.estimate, 2), owner=owner, webhook_url=request.webhook_url,
            idempotency_key=idempotency_key,
            idempotency_body=request.model_dump(),  # what the client sent, before a random seed is drawn
            queue=queue_of(prepared.stored))
    except BaseException:
        _discard_inputs(services, prepared.stored)
        raise
    if not created:  # the earlier task of this Idempotency-Key keeps its own inputs
        _discard_inputs(services, prepared.stored)
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
