"""The studio's core functions. The UI, the Gradio API and REST are thin adapters over these.

``Studio`` owns the task store, the event bus, the model cache and the worker. Every way in
submits to the same durable queue, so UI work and API work share one queue and one GPU lock.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from studio.config import AUTO_MODEL, Settings
from studio.db import Database
from studio.db.loras import LoraRecords
from studio.db.state import MAINTENANCE, StudioState
from studio.engine.edit import inputs_folder
from studio.engine.estimate import Estimator
from studio.engine.genres import GENRES
from studio.engine.request import GenerationRequest, GenerationSpec
from studio.engine.spec import TaskSpec
from studio.engine.step_cache import DecoderStatsAggregate
from studio.errors import InvalidRequest, ServiceUnavailable, TaskInUse, TaskNotFound, TaskNotReady
from studio.genius.consistency import run as consistency_run
from studio.genius.consistency.schema import ConsistencySpec
from studio.genius.consistency.task import EntityStore
from studio.genius.generate import submit as generate
from studio.genius.generate.loras import LoraLibrary
from studio.genius.inpaint import run as inpaint_run
from studio.genius.inpaint.schema import InpaintSpec
from studio.genius.lipsync import run as lipsync_run
from studio.genius.lipsync.schema import LipSyncSpec
from studio.genius.scene import run as scene_run
from studio.genius.scene import shot as scene_shot_run
from studio.genius.scene.schema import SceneShotSpec, SceneSpec
from studio.genius.sla import SlaMonitor
from studio.genius.v2v import run as v2v_run
from studio.genius.v2v.schema import V2VSpec
from studio.jobs import events as ev
from studio.jobs import store as st
from studio.jobs.cluster import Cluster
from studio.jobs.events import Event, EventBus
from studio.jobs.library import TaskLibrary, summary
from studio.jobs.routing import queue_of
from studio.jobs.services import FeatureServices
from studio.jobs.specs import SpecRegistry
from studio.jobs.store import Task, TaskStore
from studio.jobs.webhooks import WebhookDispatcher
from studio.jobs.worker import Worker
from studio.jobs.zero_gpu import ZeroGpu
from studio.keys import KeyStore
from studio.media.frame_boards import StreamHub
from studio.media.object_store import ObjectMediaPaths
from studio.media.paths import MediaPaths, media_url
from studio.media.storage import StorageGuard
from studio.media.url_policy import FetchPolicy
from studio.models.catalog import CATALOG, MODELS, TINY
from studio.models.loader import ModelCache, cuda_available, default_model, unavailable_reason
from studio.ui_access import AnonymousLimits, OwnerCookies
from studio.views import (
    EditMetadata,
    GenreInfo,
    Health,
    ModelInfo,
    ResultMetadata,
    SubmitResponse,
    TaskPage,
    TaskResult,
    TaskStatus,
)

log = logging.getLogger(__name__)

INTERRUPTED_REASON = "the server stopped while this task was running; submit it again"
UI_OWNER = "ui"  # the default owner of core calls (tests, scripts); UI visitors own theirs: studio.ui_access
#: The video-side features this studio runs, by task kind: their ``run`` is handed to the worker.
EDIT_RUNNERS = {feature.KIND: feature.run for feature in (
    consistency_run, inpaint_run, lipsync_run, scene_shot_run, scene_run, v2v_run)}
#: The typed spec of every task kind this studio stores (``studio.engine.spec``), by kind.
SPECS = SpecRegistry([
    InpaintSpec, LipSyncSpec,
    V2VSpec,
    GenerationSpec,
    SceneSpec, SceneShotSpec,
    ConsistencySpec,
])


class Studio:
    """One studio instance per process: start it, use it from any thread, stop it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # The one database (one connection pool) every store shares, migrated before any use.
        self.database = Database(settings.db_url)
        self.database.migrate()
        self.store = TaskStore(self.database)
        self.task_library = TaskLibrary(self.database)
        self.bus = EventBus()
        self.store.on_dependant_failed = self._announce_dependant_failed
        # The media folder, and object storage when ECHOEL_MEDIA_URL is set (studio.media.object_store).
        self.paths = ObjectMediaPaths(settings.media_dir, settings.media_url, settings.s3_endpoint_url) \
            if settings.media_url else MediaPaths(settings.media_dir)
        self.storage = StorageGuard(settings.data_dir, settings.min_free_mb * 2**20)
        self.models = ModelCache(settings.models_dir)
        self.estimator = Estimator(self.store, self.models)
        self.keys = KeyStore(self.database, settings.api_keys)
        self.entities = EntityStore(self.database)  # the Consistency Tracker's registered entities
        self.loras = LoraLibrary(LoraRecords(self.database), settings.data_dir, self.paths,
                                 settings.max_lora_mb * 2**20)  # Generate's LoRA adapters
        self.fetch_policy = FetchPolicy(allow_loopback=settings.allow_loopback_urls)
        self.webhooks = WebhookDispatcher(self.store, self.keys, self.fetch_policy,
                                          settings.webhook_retry_base_seconds)
        self.decoder_stats = DecoderStatsAggregate()
        self.worker = self._new_worker(self.store, self.bus, self.estimator)
        # What crosses processes when tasks run on Celery workers (nothing when embedded).
        self.cluster = Cluster(settings, self.database, self.store, self.bus)
        self.sla = SlaMonitor(self.database, default_level=settings.sla_level, queue_depth=self.store.queue_depth,
                              **self.cluster.monitor_sources())
        self.worker.on_generation = self.sla.record_generation
        self.streams = StreamHub(settings.media_dir / "stream", relay=self.cluster.live)
        # UI visitors' own owners (signed cookie) and their anonymous work limits: studio.ui_access.
        self.state = StudioState(self.database)  # what every process agrees on: cookie secret, maintenance
        self.ui_cookies = OwnerCookies.load(settings.data_dir, self.state)
        self.ui_limits = AnonymousLimits(self.store.active_count)
        self.worker.streams = self.streams
        self.cluster.wire(self.worker, self.streams)
        self.zero_gpu = self._zero_gpu() if settings.zero_gpu else None
        self.default_model = default_model() if settings.model == AUTO_MODEL else settings.model
        if self.default_model not in CATALOG:
            raise ValueError(f"unknown default model {self.default_model!r}; choose one of {', '.join(CATALOG)}")
        self.services = FeatureServices(
            store=self.store, paths=self.paths, fetch_policy=self.fetch_policy, data_dir=settings.data_dir,
            default_model=self.default_model, streams=self.streams, models=self.models, estimator=self.estimator,
            task=self.task, status=self.status,
            result=self.result, refuse_new_work=self.refuse_new_work, submit_spec=self.submit_spec,
            prepare=self.prepare, queue_wait=self.queue_wait, wake=self.cluster.wake, final_event=self.final_event,
            loras=self.loras.records, worker_devices=self.cluster.devices, upscaler_model=settings.upscaler_model,
            interpolator_model=settings.interpolator_model)

    def _new_worker(self, store: TaskStore, bus: EventBus, estimator: Estimator | None = None) -> Worker:
        """A task worker over ``store`` and ``bus`` with this studio's models, media and features."""
        settings = self.settings
        return Worker(store, bus, self.models, estimator or Estimator(store, self.models), self.paths,
                      preview_width=settings.preview_width, decoder_stats=self.decoder_stats,
                      data_dir=settings.data_dir, storage=self.storage, edit_runners=EDIT_RUNNERS,
                      specs=SPECS, upscaler_model=settings.upscaler_model,
                      interpolator_model=settings.interpolator_model)

    def _zero_gpu(self) -> ZeroGpu:
        """On a ZeroGPU Space: every claimed task runs inside a ``spaces.GPU`` call, charged to
        the visitor who submitted it (``studio.jobs.zero_gpu``)."""
        if self.cluster.distributed:
            raise ValueError("ZeroGPU runs tasks in the server process: unset ECHOEL_BROKER_URL")
        try:
            import spaces
        except ImportError as error:
            raise RuntimeError("SPACES_ZERO_GPU is set but the `spaces` package is missing "
                               "(ZeroGPU Spaces provide it)") from error
        gate = ZeroGpu(self.worker, self._new_worker, self.settings.db_url, self.streams,
                       self.settings.zero_gpu_max_seconds, gpu=spaces.GPU)
        gate.install()
        self.worker.gate = gate
        self.store.on_created = gate.remember_callers
        return gate

    def start(self) -> None:
        """Start this process's part. Embedded: fail tasks a previous process left running, then
        start the worker thread (which loads the offline model at once when it is the default: it
        is local and cheap, unlike hub models). With Celery workers: no worker thread; an upkeep
        thread recovers lost workers' tasks and re-announces ready tasks the broker lost."""
        if self.settings.role == "worker":  # a Celery worker process (studio.celery_worker)
            self.cluster.start_worker(self.models)
            if TINY in self.cluster.served_models() and self.default_model == TINY:
                self.worker.preload(TINY)
            return
        self.sla.start()  # first: the uptime history starts when the process is up
        self.bus.closed = False  # a stopped studio that starts again has followers again
        if not self.cluster.distributed:
            self.store.fail_interrupted(INTERRUPTED_REASON)
            if self.zero_gpu is not None:
                self._start_zero_gpu()
            else:
                self.worker.start(preload=TINY if self.default_model == TINY else None)
        self.cluster.start_api()
        self.webhooks.start()

    def _start_zero_gpu(self) -> None:
        """ZeroGPU wants models loaded in the server before it starts: the platform packs their
        weights once and moves them onto each call's GPU. ``spaces`` runs that step from
        ``gr.Blocks.launch``, which a mounted app never calls, so it runs here."""
        import spaces.zero

        self.worker.preload(self.default_model)
        startup = getattr(spaces.zero, "startup", None)
        if startup is None:
            raise RuntimeError("this `spaces` package has no zero.startup: ZeroGPU cannot start the studio")
        startup()
        self.worker.start()

    def stop(self) -> None:
        self.begin_shutdown()
        self.worker.stop()
        self.cluster.stop()
        self.webhooks.stop()
        self.sla.stop()  # the last heartbeat
        self.store.close()
        self.keys.close()
        self.database.dispose()

    # -- generation -------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        """True while the maintenance flag file exists: new work is refused, running work finishes."""
        return self.settings.maintenance_flag.exists() or self.state.get(MAINTENANCE) == "on"

    def prepare(self, request: GenerationRequest, owner: str) -> generate.Prepared:
        """Resolve ``owner``'s request for storage (model, seed, its LoRAs checked) and estimate
        its own run time."""
        return generate.prepare(self.services, request, owner)

    def submit(self, request: GenerationRequest, owner: str = UI_OWNER, priority: int = generate.NORMAL_PRIORITY,
               idempotency_key: str | None = None) -> SubmitResponse:
        """Store a text-to-video task and queue it (``studio.genius.generate.submit``); the row is
        committed before this returns. ``owner`` is the API key id (or ``ui``); only the owner
        sees the task afterwards."""
        return generate.submit(self.services, request, owner, priority, idempotency_key)

    def refuse_new_work(self) -> None:
        """Refuse new work while it cannot be taken: 503 in maintenance (the flag file; running
        tasks finish) or while shutting down, 507 ``StorageFull`` while the data disk is
        (almost) full (queued tasks wait; both clear by themselves)."""
        if self.draining or self.worker.stopping:
            raise ServiceUnavailable("the server is in maintenance: running tasks finish, new work is refused; "
                                     "retry later")
        self.storage.require_space()

    def submit_spec(self, spec: TaskSpec, owner: str, estimate: float,
                    depends_on: list[str] | None = None) -> SubmitResponse:
        """Store a feature's typed task spec (``studio.engine.spec``) as a task and queue it; with
        ``depends_on`` (the owner's task ids) it starts only once those have completed (a
        scene's stitch after its shots)."""
        self.refuse_new_work()
        if getattr(spec, "inputs_id", None):  # workers elsewhere fetch them from object storage
            self.paths.publish_inputs(inputs_folder(self.settings.data_dir, spec.inputs_id))
        task, _ = self.store.create_task(spec.KIND, spec.stored(), priority=generate.NORMAL_PRIORITY,
                                         estimated_seconds=round(estimate, 2), owner=owner, depends_on=depends_on,
                                         queue=queue_of(spec))
        reply = SubmitResponse(task_id=task.id, status=task.status, message=f"{spec.KIND} task queued for processing",
                               estimated_time_seconds=round(self.queue_wait(task.id) + estimate, 2),
                               queue_position=self.store.queue_position(task.id))
        self.cluster.wake()
        return reply

    def queue_wait(self, task_id: str) -> float:
        """Seconds until ``task_id`` can start: what is left of the running tasks plus the
        estimates of the pending tasks ahead of it."""
        wait = 0.0
        for task in self.store.tasks_ahead(task_id):
            if task.is_running:
                wait += task.eta_seconds if task.eta_seconds is not None else (task.estimated_seconds or 0.0)
            else:
                wait += task.estimated_seconds or 0.0
        return wait

    def cancel(self, task_id: str, owner: str = UI_OWNER) -> TaskStatus:
        """Cancel a pending task at once, or a running one at its next step. Finished tasks are
        left as they are (cancelling twice is harmless).

        With dependencies: the tasks waiting on this one end ``failed`` (``DependencyFailed``,
        naming this task) as it ends; the unfinished tasks this one waits on are cancelled too,
        each only when no other unfinished task waits on it. So cancelling a scene edit (its
        stitch) cancels its shots, but not a shot that something else still needs."""
        task = self.task(task_id, owner)
        if not task.is_terminal:
            self.worker.cancel(task_id)
            if self.store.request_cancel(task_id):
                self.bus.publish(Event(task_id, ev.CANCELLED, {"error": "Task cancelled",
                                                              "error_type": "TaskCancelled"}))
            # After this task ended, so that it ends cancelled, not failed by its cancelled parts.
            for dependency in self.store.dependencies(task_id):
                waiting = [self.store.get(d) for d in self.store.dependants(dependency) if d != task_id]
                if all(t is None or t.is_terminal for t in waiting):
                    self.cancel(dependency, owner)
        return self.status(task_id, owner)

    # -- reading ----------------------------------------------------------------------------

    def task(self, task_id: str, owner: str) -> Task:
        """The task if it exists and belongs to ``owner``; otherwise the same 404 either way,
        so nobody learns whether another key's task exists."""
        task = self.store.get(task_id) if isinstance(task_id, str) and len(task_id) <= 64 else None
        if task is None or not hmac.compare_digest(task.owner, owner):
            raise TaskNotFound(f"no task with id {str(task_id)[:64]!r}")
        return task

    def status(self, task_id: str, owner: str = UI_OWNER) -> TaskStatus:
        task = self.task(task_id, owner)
        if task.started_at is None:
            elapsed = 0.0
        else:
            elapsed = (task.finished_at or time.time()) - task.started_at
        progress, step = task.progress, task.current_step
        spec = _spec_if_loadable(task)
        if isinstance(spec, SceneSpec) and not task.is_terminal:
            progress, step = self._scene_progress(task, spec)
        if task.status == st.PENDING and not self.cluster.served(task.queue):
            step = f"Queued: no running worker serves queue {task.queue} (python -m studio worker --models ...)"
        return TaskStatus(
            task_id=task.id,
            status=task.status,
            progress=round(progress, 4),
            current_step=step,
            elapsed_seconds=round(elapsed, 3),
            eta_seconds=None if task.eta_seconds is None else round(task.eta_seconds, 2),
            preview_url=media_url("previews", task.id) if task.preview_path else None,
            queue_position=self.store.queue_position(task.id),
            error=task.error,
            error_type=task.error_type,
            **self.estimator.status_basis(task, spec),
        )

    def _scene_progress(self, task: Task, scene: SceneSpec) -> tuple[float, str]:
        """A scene edit's progress covers its shots: 90% for generating them (their mean
        progress), 10% for stitching."""
        shots = [self.store.get(shot_id) for shot_id in scene.shots]
        done = [1.0 if s is None or s.is_terminal else s.progress for s in shots]
        running = next((i for i, s in enumerate(shots) if s is not None and not s.is_terminal), None)
        step = task.current_step if running is None else \
            f"Shot {running + 1}/{len(shots)}: {shots[running].current_step or shots[running].status}"
        return 0.9 * sum(done) / len(done) + 0.1 * task.progress, step

    def result(self, task_id: str, owner: str = UI_OWNER, kind: str | None = None) -> TaskResult:
        """The finished task's result (409 until completed; a cancelled long video that kept its
        finished windows has one too, ``partial``); with ``kind``, 404 for a task of another kind
        (the genius features' own result routes)."""
        task = self.task(task_id, owner)
        if kind is not None and task.kind != kind:
            raise TaskNotFound(f"no {kind} task with id {task.id!r}")
        kept = task.status == st.CANCELLED and bool(task.result)  # a cancelled long video's finished windows
        if (task.status != st.COMPLETED and not kept) or not task.result:
            if task.status in (st.FAILED, st.CANCELLED):
                raise TaskNotReady(f"task {task.status}: {task.error}")
            raise TaskNotReady(f"task is {task.status} ({task.progress:.0%}); poll /v1/status/{task.id}")
        data = dict(task.result)
        meta = data.pop("metadata")
        metadata = EditMetadata(**meta) if "feature" in meta else ResultMetadata(**meta)
        data.pop("video_url", None), data.pop("thumbnail_url", None)  # rows made before URLs left the store
        urls = ev.completion(task.id, None)
        return TaskResult(task_id=task.id, status=task.status, metadata=metadata, video_url=urls["video_url"],
                          thumbnail_url=urls["thumbnail_url"], **data)

    def library(self, owner: str = UI_OWNER, *, limit: int = 20, cursor: str | None = None,
                status: str | None = None, kind: str | None = None) -> TaskPage:
        """``owner``'s tasks, newest first, ``limit`` at a time (``cursor``: the previous page's
        ``next_cursor``), optionally of one ``status`` or ``kind`` (``studio.jobs.library``)."""
        if cursor is not None and not (cursor.isdigit() and len(cursor) <= 18):
            raise InvalidRequest("cursor: pass the next_cursor of the previous page")
        found, next_seq = self.task_library.page(owner, limit=limit, before=int(cursor) if cursor else None,
                                                 status=status, kind=kind)
        return TaskPage(tasks=[summary(task, _spec_if_loadable(task)) for task in found],
                        next_cursor=None if next_seq is None else str(next_seq))

    def spec(self, task_id: str, owner: str = UI_OWNER) -> TaskSpec:
        """The typed request of a task of ``owner``'s (the Library's "reuse settings")."""
        return SPECS.of(self.task(task_id, owner))

    def forget(self, task_id: str, owner: str = UI_OWNER) -> None:
        """Delete a finished task of ``owner``'s and its files (``TaskInUse`` while it runs, or
        while an unfinished task waits on it)."""
        task = self.task(task_id, owner)
        why_not = self.task_library.forget(task.id)
        if why_not is not None:
            raise TaskInUse(f"task {task.id} cannot be deleted: {why_not}")
        self.paths.remove(task.id)

    def media_file(self, kind: str, task_id: str, owner: str = UI_OWNER) -> Path:
        """The on-disk file behind a media URL, or ``TaskNotFound``."""
        task = self.task(task_id, owner)
        try:  # with object storage: a local copy of what a worker made (previews change: always fresh)
            return self.paths.fetch(kind, task.id, fresh=kind == "previews")
        except FileNotFoundError:
            raise TaskNotFound(f"no {kind[:-1]} for task {task.id} (yet)") from None

    def follow(self, task_id: str, owner: str = UI_OWNER, poll_seconds: float = 1.0) -> Iterator[Event]:
        """The task's events from now on, starting with its current state, ending with its
        final event (``complete``, ``error`` or ``cancelled``), or with nothing more when the
        server stops (the task is then requeued or still queued; follow it again after restart).
        For threads (the UI's generators); websockets use ``follow_async``."""
        task = self.task(task_id, owner)
        with self.bus.subscribe(task.id) as sub:
            for event in self._opening_events(task_id, owner):
                yield event
                if event.is_final:
                    return
            while not sub.closed:
                event = self._after_wait(sub.get(timeout=poll_seconds), task_id, owner)
                if event is not None:
                    yield event
                    if event.is_final:
                        return

    async def follow_async(self, task_id: str, owner: str = UI_OWNER,
                           poll_seconds: float = 1.0) -> AsyncIterator[Event]:
        """``follow`` for the event loop: waiting for the next event holds no thread, so any
        number of idle followers cost nothing (the store reads are single indexed rows)."""
        task = self.task(task_id, owner)
        with self.bus.subscribe(task.id) as sub:
            for event in self._opening_events(task_id, owner):
                yield event
                if event.is_final:
                    return
            while not sub.closed:
                event = self._after_wait(await sub.get_async(timeout=poll_seconds), task_id, owner)
                if event is not None:
                    yield event
                    if event.is_final:
                        return

    def _opening_events(self, task_id: str, owner: str) -> list[Event]:
        """The task's current state (read after subscribing, so no event falls in between),
        plus its final event when it has already ended."""
        task = self.task(task_id, owner)
        opening = [Event(task.id, ev.PROGRESS, {"status": task.status, "progress": task.progress,
                                                 "step": task.current_step})]
        return opening + [self.final_event(task)] if task.is_terminal else opening

    def _after_wait(self, event: Event | None, task_id: str, owner: str) -> Event | None:
        """What a follower yields after one wait: the event, or after a quiet wait the final
        event of a task that ended without one reaching this process (e.g. another process)."""
        if event is not None:
            return event
        task = self.task(task_id, owner)
        return self.final_event(task) if task.is_terminal else None

    @property
    def shutting_down(self) -> bool:
        """True from the moment a shutdown began (followers then end without a final event)."""
        return self.worker.stopping or self.bus.closed

    def _announce_dependant_failed(self, task_id: str, detail: str) -> None:
        """Live followers of a task that a failed or cancelled dependency ended hear it now."""
        self.bus.publish(Event(task_id, ev.ERROR, {"error": "Dependency failed", "detail": detail,
                                                   "error_type": st.DEPENDENCY_FAILED}))

    def begin_shutdown(self) -> None:
        """The server is going down: start no task, stop the running one at its next step (it
        is requeued, not cancelled), refuse new work, and end every follower so websockets
        close now instead of holding the shutdown open. Safe to call more than once."""
        self.worker.begin_stop()
        self.bus.close()

    @staticmethod
    def final_event(task: Task) -> Event:
        """The closing event of an ended task, rebuilt from its row."""
        if task.status == st.COMPLETED:
            frames = ((task.result or {}).get("metadata") or {}).get("frames")
            return Event(task.id, ev.COMPLETE, ev.completion(task.id, frames))
        if task.status == st.CANCELLED:
            kept = {}
            if task.result:  # a long video's finished windows, kept as a partial result
                kept = {"partial": True, **ev.completion(task.id, (task.result.get("metadata") or {}).get("frames"))}
            return Event(task.id, ev.CANCELLED, {"error": "Task cancelled", "error_type": "TaskCancelled", **kept})
        return Event(task.id, ev.ERROR, {"error": task.error, "error_type": task.error_type})

    # -- catalog ----------------------------------------------------------------------------

    def list_models(self) -> list[ModelInfo]:
        """Every model: text-to-video (``task`` t2v, what ``model`` of a generation takes) and the
        editing features' (``vace``: Video Inpainting's and Scenes' ``model``; ``animate``: V2V
        motion transfer's and Lip-Sync's; ``i2v``: Scenes' ``morph_model``), and whether it can
        run here."""
        infos = []
        for spec in MODELS.values():
            why_not = unavailable_reason(spec)
            if why_not is not None:
                available, why = False, why_not
            elif spec.repo_id is None:
                available, why = True, "offline model, always available (untrained: noise-like output)"
            else:
                available, why = True, "downloads from the Hugging Face Hub on first use unless cached"
            infos.append(ModelInfo(
                id=spec.id, task=spec.task, label=spec.label, repo_id=spec.repo_id, trained=spec.trained,
                native_width=spec.native_width, native_height=spec.native_height, native_fps=spec.native_fps,
                max_frames=spec.max_frames, continuation=spec.continuation,
                chunk_frames=spec.chunked.frames if spec.chunked else None,
                fast_steps=spec.fast.steps if spec.fast else None, images=spec.images, vram_gb=spec.vram_gb,
                available=available, availability=why,
                loaded=self.models.loaded_model == spec.id, default=spec.id == self.default_model))
        return infos

    @staticmethod
    def list_genres() -> list[GenreInfo]:
        return [GenreInfo(name=g.name, description=g.description, prompt_suffix=g.prompt_suffix,
                          negative_suffix=g.negative_suffix) for g in GENRES.values()]

    def health(self) -> Health:
        """What the service can do now. ``status``: ``ok``; ``maintenance`` (new work refused);
        ``degraded`` when the worker is not running, the data disk is (almost) full, or the
        task store cannot be read — ``problems`` says which."""
        problems = []
        workers_running = self.cluster.workers_running()
        if not workers_running:
            problems.append("the worker is not running: queued tasks do not start" if not self.cluster.distributed else
                            "no Celery worker has sent a heartbeat lately: queued tasks do not start")
        try:
            free_mb = self.storage.free_bytes() // 2**20
        except OSError:
            free_mb = 0
        if self.storage.low():
            problems.append(f"the data disk is almost full ({free_mb} MiB free, {self.settings.min_free_mb} MiB "
                            "needed): new tasks are refused with 507, queued tasks wait")
        try:
            self.store.queue_depth()
        except Exception:
            problems.append("the task store cannot be read")
        status = "maintenance" if self.draining or self.worker.stopping else "degraded" if problems else "ok"
        return Health(status=status, default_model=self.default_model, loaded_model=self.models.loaded_model,
                      cuda=cuda_available(), running_task=self.cluster.running_task(),
                      worker_running=workers_running, free_disk_mb=free_mb, problems=problems)


def _spec_if_loadable(task: Task) -> TaskSpec | None:
    """The task's spec, for what its status derives from it; None for a row this version cannot
    read (a newer version's, or spoiled): its status still answers, and its run fails naming why."""
    try:
        return SPECS.of(task)
    except InvalidRequest:
        return None
