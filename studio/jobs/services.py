"""The narrow services a feature gets: what its submit and its readers may use of the studio.

Features (``studio/genius/<feature>/``) receive a :class:`FeatureServices`, never the whole
``Studio``: the task store, media paths, the guarded fetcher's policy, the data folder, and the
few service calls a feature needs (read a caller's task, queue a typed spec, prepare a
text-to-video request). The composition root (``studio.core.Studio``) builds it once; a
feature that needs something else says so by adding a field here, in one place a reviewer sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.models.cost.timing import CostInputs

if TYPE_CHECKING:
    from studio.db.loras import LoraRecords
    from studio.engine.estimate import Estimator
    from studio.jobs.events import Event
    from studio.jobs.store import Task, TaskStore
    from studio.media.frame_boards import StreamHub
    from studio.media.paths import MediaPaths
    from studio.media.url_policy import FetchPolicy
    from studio.models.loader import DeviceMemory, ModelCache
    from studio.views import SubmitResponse, TaskResult, TaskStatus


@dataclass(frozen=True)
class FeatureServices:
    """What the studio lends a feature."""

    store: "TaskStore"  # task rows (a scene's shots, a batch's members) and measured timings
    paths: "MediaPaths"  # finished tasks' videos and thumbnails
    fetch_policy: "FetchPolicy"  # for every URL a feature fetches (studio.media.url_policy)
    data_dir: Path  # where tasks' stored inputs live (data_dir / "inputs" / <inputs_id>)
    default_model: str  # the server's text-to-video model
    streams: "StreamHub"  # live frame boards of streamed generations
    models: "ModelCache"  # the worker's loaded pipelines (which model is resident)
    estimator: "Estimator"  # the one cost model's run-time estimates, with this server's measurements
    #: the caller's task (404 ``TaskNotFound`` for anyone else's): (task_id, owner) -> Task
    task: Callable[[str, str], "Task"]
    #: a task's status as ``GET /v1/status`` reports it: (task_id, owner) -> TaskStatus
    status: Callable[[str, str], "TaskStatus"]
    #: a finished task's result (409 until completed), optionally only of one kind
    result: Callable[..., "TaskResult"]
    #: raises 503 in maintenance or shutdown, 507 when the data disk is full
    refuse_new_work: Callable[[], None]
    #: store a typed spec as a task and queue it: (spec, owner, estimate, depends_on=None)
    submit_spec: Callable[..., "SubmitResponse"]
    #: an owner's text-to-video request resolved for storage (model, seed) with its own estimate:
    #: (request, owner) -> Prepared
    prepare: Callable[[Any, str], Any]
    #: seconds until a task can start (the running and queued work ahead of it)
    queue_wait: Callable[[str], float]
    #: wake the worker after queueing rows directly in the store
    wake: Callable[[], None]
    #: the closing event of an ended task
    final_event: Callable[["Task"], "Event"]
    loras: "LoraRecords"  # registered LoRA adapters (Generate's loras)
    #: the devices of the Celery workers serving now; empty when tasks run in this process
    worker_devices: Callable[[], list["DeviceMemory"]] = list
    upscaler_model: str | None = None  # generate's learned upscaler, if the server has one
    interpolator_model: str | None = None  # generate's learned frame interpolator, if the server has one

    @property
    def costs(self) -> CostInputs:
        """What the cost model reads of this server now: the measured rates, the resident model."""
        return CostInputs.here(self.estimator, self.models)
