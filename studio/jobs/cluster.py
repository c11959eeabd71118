"""This process's part in a studio of several processes: API processes and Celery workers.

Built by the composition root (``studio.core.Studio``) from the settings. Embedded (no
``ECHOEL_BROKER_URL``) it does nothing and the worker thread runs tasks. With Celery workers it
wires what crosses processes:

- new tasks are announced to the broker once their submit has measured its reply (``wake``),
  and tasks that became ready on a worker (requeued, last dependency completed) after their
  commit (``TaskStore.on_ready``);
- events, cancel flags and stream frames go through Redis (``studio.jobs.live``);
- workers register and send heartbeats (``studio.jobs.workers``); API processes run an upkeep
  thread that recovers lost workers' tasks and re-announces ready tasks the broker lost;
- what the monitors and the orchestrator read of every worker (memory, queues, work done).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from studio.config import Settings
from studio.db import Database
from studio.jobs.celery_app import make_app
from studio.jobs.dispatch import CeleryDispatch
from studio.jobs.events import EventBus
from studio.jobs.live import RedisLive
from studio.jobs.periodic import Periodic
from studio.jobs.routing import queues_for
from studio.jobs.store import TaskStore
from studio.jobs.workers import HEARTBEAT_SECONDS, Beat, WorkerInfo, WorkerRegistry, new_worker_id, recover_lost_work
from studio.models.catalog import MODELS
from studio.models.loader import DeviceMemory, device_memory

if TYPE_CHECKING:
    from studio.jobs.worker import Worker
    from studio.media.frame_boards import StreamHub
    from studio.models.loader import ModelCache

log = logging.getLogger(__name__)

ALIVE_CACHE_SECONDS = 1.0  # status polls of pending tasks ask who serves their queue: read the table at most this often
UPKEEP_SECONDS = 5.0  # how often API processes recover lost workers' tasks and re-announce lost messages
ROLES = ("all", "api", "worker")


def check_topology(settings: Settings) -> None:
    """Refuse a configuration that cannot work, saying what to set."""
    if settings.role not in ROLES:
        raise ValueError(f"unknown role {settings.role!r}; choose one of {', '.join(ROLES)}")
    if settings.role != "all" and not settings.distributed:
        raise ValueError(f"role {settings.role!r} runs tasks on Celery workers: set ECHOEL_BROKER_URL "
                         "(redis://... or amqp://...)")
    if settings.distributed and not settings.redis_url:
        raise ValueError("Celery workers (ECHOEL_BROKER_URL) need ECHOEL_REDIS_URL too: it carries live events "
                         "and cancel flags between the processes")


class Cluster:
    """The cross-process parts of one studio process (see the module docstring)."""

    def __init__(self, settings: Settings, database: Database, store: TaskStore, bus: EventBus):
        check_topology(settings)
        self.settings, self.store, self.bus = settings, store, bus
        self.registry = WorkerRegistry(database)
        self.live = RedisLive(settings.redis_url, bus) if settings.redis_url else None
        self.dispatch = CeleryDispatch(make_app(settings.broker_url)) if settings.distributed else None
        self._background: list[Periodic] = []
        self._worker: "Worker | None" = None
        self._alive: tuple[float, list[WorkerInfo]] = (float("-inf"), [])  # (read at, live workers)

    @property
    def distributed(self) -> bool:
        """Whether tasks run on Celery workers (not on this process's worker thread)."""
        return self.dispatch is not None

    def wire(self, worker: "Worker", streams: "StreamHub") -> None:
        """Route this process's events, cancel flags, stream frames and announcements across processes."""
        self._worker = worker
        if self.live is not None:
            self.bus.relay = self.live
            worker.live = self.live
            self.live.on_stream_notice = streams.apply
            self.live.on_final_event = lambda event: streams.finish(event.task_id, event.to_message())
        if self.dispatch is not None:
            self.store.on_ready = self.dispatch.announce

    def monitor_sources(self) -> dict[str, Any]:
        """What the SLA monitor reads of every worker (nothing when embedded: it reads this process)."""
        if not self.distributed:
            return {}
        return {"gpu_memory": self.memory_bytes, "workers": self.registry.alive,
                "ready_by_queue": self.store.ready_by_queue}

    # -- lifecycle --------------------------------------------------------------------------

    def start_api(self) -> None:
        """In an API process: follow every process's events; with Celery workers, the upkeep thread."""
        if self.live is not None:
            self.live.start()
        if self.distributed:
            self._start(Periodic("studio-upkeep", UPKEEP_SECONDS, self._upkeep, at_start=True))

    def start_worker(self, models: "ModelCache") -> None:
        """In a Celery worker process (``studio.celery_worker``): register this worker and keep
        its heartbeat (which also recovers other lost workers' tasks); Celery hands it tasks."""
        worker = self._worker
        served = self.served_models()
        memory = device_memory()
        worker.worker_id = new_worker_id()
        self.registry.register(worker.worker_id, queues_for(served), served, memory.device, memory.total_gb)
        # Its throughput, for every process to read (this process's SLA monitor serves nobody).
        worker.on_generation = lambda seconds, ok: self.registry.task_done(worker.worker_id, seconds)

        def heartbeat() -> None:
            self.registry.beat(worker.worker_id, Beat(current_task=worker.current_task_id,
                                                      loaded_model=models.loaded_model,
                                                      memory_used_gb=device_memory().used_gb))
            recover_lost_work(self.registry, self.store)

        self._start(Periodic("studio-heartbeat", HEARTBEAT_SECONDS, heartbeat))

    def served_models(self) -> list[str]:
        """The models this worker serves: ``ECHOEL_WORKER_MODELS``, else every model."""
        return list(self.settings.worker_models) or list(MODELS)

    def stop(self) -> None:
        for thread in self._background:
            thread.stop()
        if self._worker is not None and self._worker.worker_id is not None:
            self.registry.stopped(self._worker.worker_id)
        if self.live is not None:
            self.live.stop()

    def _start(self, thread: Periodic) -> None:
        self._background.append(thread)
        thread.start()

    def _upkeep(self) -> None:
        recover_lost_work(self.registry, self.store)
        for queue, count in self.dispatch.reconcile(self.store).items():
            # Usually a message a worker took but had not claimed from yet (harmless: the spare
            # claims nothing); after a broker restart, the tasks it lost.
            log.info("upkeep announced %d ready task(s) on %s that had no waiting message", count, queue)

    # -- announcing -------------------------------------------------------------------------

    def wake(self) -> None:
        """New tasks are queued: wake the worker thread, or announce them to the Celery workers
        (every ready task without a waiting message). Called by a submit after it measured its
        reply, so the reply describes the queue the task joined, not a claim that raced it."""
        if not self.distributed:
            self._worker.wake()
            return
        try:
            self.dispatch.reconcile(self.store)
        except Exception as error:  # the broker is down: the upkeep thread announces them later
            log.warning("could not announce new tasks to the Celery workers: %s", error)

    # -- what every worker looks like -------------------------------------------------------

    def alive(self) -> list[WorkerInfo]:
        """The live Celery workers ([] when embedded, or when the database cannot say), as read
        at most ``ALIVE_CACHE_SECONDS`` ago."""
        if not self.distributed:
            return []
        read_at, workers = self._alive
        if time.monotonic() - read_at >= ALIVE_CACHE_SECONDS:
            try:
                workers = self.registry.alive()
            except Exception:
                workers = []
            self._alive = (time.monotonic(), workers)
        return workers

    def workers_running(self) -> bool:
        """The worker thread runs, or (Celery) some worker sends heartbeats."""
        return bool(self.alive()) if self.distributed else self._worker.alive

    def running_task(self) -> bool:
        if not self.distributed:
            return self._worker.current_task_id is not None
        return any(w.current_task for w in self.alive())

    def served(self, queue: str) -> bool:
        """Whether a live Celery worker listens on ``queue`` (always, embedded)."""
        return not self.distributed or any(queue in w.queues for w in self.alive())

    def memory_bytes(self) -> int:
        """Device memory in use on every live worker."""
        return int(sum(w.memory_used_gb or 0.0 for w in self.alive()) * 2**30)

    def devices(self) -> list[DeviceMemory]:
        """The devices of the live Celery workers (empty when tasks run in this process)."""
        return [DeviceMemory(w.device, w.memory_total_gb, w.memory_used_gb) for w in self.alive()]
