"""The task worker: claims tasks from the store and runs them on the device.

One worker per GPU. Embedded, it is a thread of the server process that polls the queue; in a
Celery worker process (``studio.celery_worker``) Celery calls ``run_queued`` for each message.
Either way it holds the GPU lock for the whole run, stores progress in the task row, publishes
live events, and turns every failure into a terminal task state with a clear error, then keeps
serving.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from studio.engine.edit import FRAME_RATE, EditRunner, run_edit, timing_key
from studio.engine.edit import Cancelled as EditCancelled
from studio.engine.estimate import Estimator
from studio.engine.gpu import GPU_LOCK
from studio.engine.request import GenerationSpec
from studio.engine.run import model_run
from studio.engine.step_cache import DecoderStatsAggregate
from studio.errors import InternalError, StorageFull, StoreUnavailable, StudioError, VramExceeded, storage_fault
from studio.jobs import events as ev
from studio.jobs import store as st
from studio.jobs.events import Event, EventBus
from studio.jobs.generation import INTERNAL_ERROR, INTERNAL_ERROR_DETAIL, GenerationRunner
from studio.jobs.specs import SpecRegistry
from studio.jobs.store import Task, TaskStore
from studio.jobs.workers import MAX_ATTEMPTS
from studio.media.frame_boards import StreamHub
from studio.media.paths import MediaPaths
from studio.media.storage import StorageGuard
from studio.models.loader import ModelCache

log = logging.getLogger(__name__)

REQUEUED_STEP = "Queued again: the server stopped during the run; it starts over after restart"
STORE_RETRY_SECONDS = 1.0  # how soon the loop retries after the task store failed


@dataclass
class _EditHooks:
    """Hooks of a video-side task: progress rows and events (at most every 0.2 s), cancellation."""

    worker: "Worker"
    task: Task
    last_update: float = 0.0

    def should_cancel(self) -> bool:
        return self.worker.should_stop(self.task.id)

    def on_progress(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - self.last_update < 0.2 and fraction < 1.0:
            return
        self.last_update = now
        elapsed = time.time() - (self.task.started_at or time.time())
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.02 else None
        self.worker.store.update_progress(self.task.id, fraction, message, eta)
        self.worker.publish(self.task.id, ev.PROGRESS, status=st.GENERATING, progress=round(fraction, 4),
                            step=message, eta_seconds=eta)


class Worker:
    """Runs queued tasks one at a time on a background thread."""

    def __init__(self, store: TaskStore, bus: EventBus, models: ModelCache, estimator: Estimator,
                 paths: MediaPaths, preview_width: int = 256, decoder_stats: DecoderStatsAggregate | None = None,
                 data_dir: Path | None = None, storage: StorageGuard | None = None,
                 edit_runners: dict[str, EditRunner] | None = None, specs: SpecRegistry | None = None,
                 upscaler_model: str | None = None, interpolator_model: str | None = None):
        self.store, self.bus, self.models, self.estimator, self.paths = store, bus, models, estimator, paths
        self.upscaler_model = upscaler_model  # generate's learned upscaler (Settings.upscaler_model)
        self.interpolator_model = interpolator_model  # generate's learned interpolator (Settings.interpolator_model)
        self.data_dir = data_dir if data_dir is not None else paths.root.parent  # edit tasks' inputs live here
        self.preview_width = preview_width
        # Step-cache ("speculative decoder") totals of every completed task, for /v1/genius/decoder/stats.
        self.decoder_stats = decoder_stats if decoder_stats is not None else DecoderStatsAggregate()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._cancels: set[str] = set()
        self._cancels_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.current_task_ids: list[str] = []
        self.on_generation = None  # (seconds, ok) -> None: the SLA monitor's record_generation
        self.streams: StreamHub | None = None  # Progressive Streaming's frame boards, when wired
        self.storage = storage  # no run starts while its disk is (almost) full
        self.edit_runners = dict(edit_runners or {})  # task kind -> the feature's run (video-side tasks)
        self.specs = specs if specs is not None else SpecRegistry()  # task kind -> its typed spec class
        self.waiting_for_space = False
        # Task ends the store could not record (disk full, database failing), retried every loop.
        self._unrecorded: dict[str, tuple] = {}
        self.generation = GenerationRunner(self)  # text-to-video runs (studio.jobs.generation)
        self.live = None  # cancel flags shared between processes (studio.jobs.live.RedisLive), when set
        self.worker_id: str | None = None  # this worker's row in ``workers`` (Celery workers)
        # Where claimed tasks run: None, here; on ZeroGPU, a GPU process (studio.jobs.zero_gpu).
        self.gate = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, preload: str | None = None) -> None:
        """Start the thread; ``preload`` names a model to load before the first task."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, args=(preload,), name="studio-worker", daemon=True)
        self._thread.start()

    def begin_stop(self) -> None:
        """Claim nothing more, and stop the running task at its next step (it goes back in the
        queue: a shutdown is not its owner's cancel). Returns at once; ``stop`` waits."""
        self._stopping.set()
        self._wake.set()
        if self.gate is not None:
            self.gate.begin_stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self, timeout: float = 30.0) -> None:
        """``begin_stop``, then wait for the thread. Tasks still running when ``timeout`` runs
        out (a step that takes longer) are put back in the queue from here."""
        self.begin_stop()
        if self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                for task_id in list(self.current_task_ids):
                    self.store.requeue(task_id, REQUEUED_STEP)

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running (health reports it)."""
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Tell the worker new work is queued (it also polls every second)."""
        self._wake.set()

    def cancel(self, task_id: str) -> None:
        """Flag ``task_id`` for cancellation: its run stops at its next step, in whichever
        process runs it when the flags are shared (``live``)."""
        if self.live is not None:
            try:
                self.live.flag_cancel(task_id)
            except Exception as error:  # the run still sees the row's flag (cancel_requested below)
                log.warning("could not set the cancel flag of %s in Redis: %s", task_id, error)
            return
        with self._cancels_lock:
            self._cancels.add(task_id)

    def cancel_requested(self, task_id: str) -> bool:
        if self.live is not None:
            try:
                return self.live.cancel_flagged(task_id)
            except Exception:  # Redis is down: the task row's flag (set by Studio.cancel) says it
                task = self.store.get(task_id)
                return task is not None and task.cancel_requested
        with self._cancels_lock:
            return task_id in self._cancels

    def should_stop(self, task_id: str) -> bool:
        """Whether a run must stop at its next step: its owner cancelled it, or the server stops."""
        return self._stopping.is_set() or self.cancel_requested(task_id)

    def publish(self, task_id: str, type_: str, **data) -> None:
        self.bus.publish(Event(task_id, type_, {k: v for k, v in data.items() if v is not None}))

    # -- the loop ---------------------------------------------------------------------------

    def preload(self, model_id: str) -> None:
        """Load ``model_id`` now, before the first task needs it (errors are left to that task)."""
        try:
            with GPU_LOCK, model_run(self.models, model_id):  # out of memory: evicted, not left half-loaded
                pass
        except Exception:  # the first task that needs it will report the error properly
            log.exception("preloading %s failed", model_id)

    def _loop(self, preload: str | None) -> None:
        if preload:
            self.preload(preload)
        while not self._stopping.is_set():
            try:
                task = self._next_task()
            except Exception as error:  # the store failed: the only worker must outlive that
                log.error("the worker could not use the task store (%s); retrying", storage_fault(error) or error)
                self._stopping.wait(STORE_RETRY_SECONDS)
                continue
            if task is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._run_guarded(task)

    def run_queued(self, queue: str) -> Task | None:
        """A Celery message said work waits on ``queue`` (``studio.jobs.celery_app``): claim the
        next ready task there for this worker and run it. None when there was nothing to claim
        (another worker was quicker, or the task was cancelled meanwhile). ``StorageFull`` while
        the disk is (almost) full: the message goes back and the task waits, as with the thread."""
        self._record_unrecorded()
        if self.storage is not None and self.storage.low():
            self.waiting_for_space = True
            raise StorageFull("the worker's disk is almost full; the task waits")
        self.waiting_for_space = False
        task = self.store.claim_next(queue=queue, worker_id=self.worker_id)
        if task is not None:
            self._run_guarded(task)
        return task

    def _run_guarded(self, task: Task) -> None:
        if self.gate is not None:
            self.gate.run(task)
        else:
            self.run_task(task)

    def run_task(self, task: Task) -> None:
        """Run the claimed ``task`` here to its end, whatever happens (never raises)."""
        try:
            self._run_claimed(task)
        except Exception:  # every path below ends its tasks; this is the last line of defence
            log.exception("task %s escaped its error handling", task.id)
            self._end(task, st.FAILED, INTERNAL_ERROR_DETAIL, "InternalError", ev.ERROR, title="Internal error")

    def _next_task(self) -> Task | None:
        """Record task ends that failed to record earlier, then claim the next task unless the
        disk is (almost) full: queued tasks then wait, they are not failed for want of space."""
        self._record_unrecorded()
        self.waiting_for_space = self.storage is not None and self.storage.low()
        if self.waiting_for_space or self._stopping.is_set():
            return None
        return self.store.claim_next()

    def _run_claimed(self, task: Task) -> None:
        if task.kind == GenerationSpec.KIND:
            self.generation.run_claimed(task)
        else:
            self._run_single_edit(task)

    def forget(self, tasks: list[Task]) -> None:
        """The run of ``tasks`` is over: they are no longer current, their cancel flags go."""
        self.current_task_ids = []
        with self._cancels_lock:
            self._cancels.difference_update(t.id for t in tasks)
        if self.live is not None:
            try:
                self.live.forget_cancel([t.id for t in tasks])
            except Exception as error:  # the flags expire by themselves
                log.warning("could not clear cancel flags: %s", error)

    @property
    def current_task_id(self) -> str | None:
        return self.current_task_ids[0] if self.current_task_ids else None

    def _run_single_edit(self, task: Task) -> None:
        self.current_task_ids = [task.id]
        try:
            self._run_edit(task)
        finally:
            self.forget([task])

    def _run_edit(self, task: Task) -> None:
        """Run a video-side genius task (``studio.engine.edit``); failures end it like a generation's."""
        hooks = _EditHooks(self, task)
        try:
            self.store.set_status(task.id, st.GENERATING, "Starting")
            with GPU_LOCK:
                result, seconds_per_frame = run_edit(task, self.specs.of(task), self._edit_runner(task.kind),
                                                     self.data_dir, self.paths, hooks, self.store, self.models)
            self.store.record_timing(timing_key(task.kind, result["metadata"]["path"]), FRAME_RATE, seconds_per_frame)
            self.publish_outputs(task.id)
            if self.store.finish(task.id, st.COMPLETED, result=result, attempt=task.attempt):
                self._generation_done(task, True)
                self._announce_complete(task.id, result["metadata"]["frames"])
        except EditCancelled:
            self._end_stopped(task)
        except Exception as exc:
            error = self._as_studio_error(exc)
            if error is None:
                log.exception("task %s (%s) failed", task.id, task.kind)
                error = INTERNAL_ERROR
            self.end_failed_run(task, error)

    def publish_outputs(self, task_id: str) -> None:
        """Make a finished task's video and thumbnail reachable from every process (object
        storage: uploaded; a shared or local folder: nothing to do). Raises ``MediaUnavailable``,
        which fails the task: a result must never name files nobody can fetch."""
        for kind in ("videos", "thumbnails"):
            if self.paths.path(kind, task_id).is_file():
                self.paths.publish(kind, task_id)

    def publish_preview(self, task_id: str) -> None:
        """The newest preview, for API processes elsewhere; a failure costs one preview, not the run."""
        if self.paths.remote:
            try:
                self.paths.publish("previews", task_id)
            except Exception as error:
                log.warning("could not publish the preview of %s: %s", task_id, error)

    def _generation_done(self, task: Task, ok: bool) -> None:
        """Tell the SLA monitor how long the task ran, from its claim to its end."""
        if self.on_generation is not None and task.started_at is not None:
            try:
                self.on_generation(time.time() - task.started_at, ok)
            except Exception:
                log.exception("recording the generation time of %s failed", task.id)

    def _edit_runner(self, kind: str) -> EditRunner:
        """The run of a video-side task kind; a kind this worker was not given fails its task."""
        if kind not in self.edit_runners:
            raise InternalError(f"this worker runs no {kind!r} tasks")
        return self.edit_runners[kind]

    def _as_studio_error(self, error: BaseException) -> StudioError | None:
        """What a failed run tells its owner: the deliberate error, a full disk or failing store
        (``StorageFull`` / ``StoreUnavailable``), or None for an unexpected error (reported as
        an internal error, and logged). A store or file error while the disk is full is
        ``StorageFull`` whatever words SQLite or the OS chose ("disk I/O error", ...)."""
        fault = error if isinstance(error, StudioError) else storage_fault(error)
        if (isinstance(fault, StoreUnavailable) or isinstance(error, OSError)) and \
                self.storage is not None and self.storage.low():
            return StorageFull("the server's disk filled up during the run; the task could not be written")
        return fault

    def _end_stopped(self, task: Task) -> None:
        """A run that stopped at a step: its owner's cancel, or the server stopping (then the
        task goes back in the queue and runs again after restart; nobody cancelled it)."""
        if self._stopping.is_set() and not self.cancel_requested(task.id):
            self._remove_outputs(task)
            try:
                self.store.requeue(task.id, REQUEUED_STEP)
            except Exception as error:  # the next start fails it as interrupted instead
                log.error("could not requeue task %s at shutdown: %s", task.id, storage_fault(error) or error)
            return
        self._end(task, st.CANCELLED, "Task cancelled", "TaskCancelled", ev.CANCELLED)

    def end_with_partial_result(self, task: Task, result: dict, frames: int) -> None:
        """A cancel that kept finished work (a long video's finished windows): the task ends
        ``cancelled`` with that work as its result (``partial: true``), served like any result.
        A stop of the server that nobody asked for requeues the task instead, as any stopped run."""
        if self._stopping.is_set() and not self.cancel_requested(task.id):
            self._end_stopped(task)
            return
        detail = "Task cancelled; the finished part was kept as a partial result"
        self.publish_outputs(task.id)
        if self.store.finish(task.id, st.CANCELLED, result=result, error=detail, error_type="TaskCancelled",
                             attempt=task.attempt):
            done = ev.completion(task.id, frames)
            self.publish(task.id, ev.CANCELLED, error="Task cancelled", detail=detail, error_type="TaskCancelled",
                         partial=True, **done)
            self._stream_outcome(task.id, ev.CANCELLED, error="Task cancelled", detail=detail,
                                 error_type="TaskCancelled", partial=True, video_url=done["video_url"])

    def end_failed_run(self, task: Task, error: StudioError) -> None:
        """A run of ``task`` failed with ``error``: the task ends failed, unless the GPU ran out of
        memory and the model's next load takes a leaner memory profile (``VramExceeded``'s
        ``leaner_profile``). Then it is queued again to run with that profile, up to
        ``MAX_ATTEMPTS`` runs in all: its owner waits longer instead of getting a failure the
        device's own answer has already fixed."""
        leaner = error.leaner_profile if isinstance(error, VramExceeded) else None
        if leaner is not None and task.attempt < MAX_ATTEMPTS:
            reason = f"Queued again: the GPU ran out of memory; it runs again with the leaner {leaner} memory profile"
            self._remove_outputs(task)
            try:
                requeued = self.store.requeue(task.id, reason)
            except Exception as fault:
                log.error("could not requeue task %s after running out of memory: %s", task.id,
                          storage_fault(fault) or fault)
                requeued = False
            if requeued:
                self.publish(task.id, ev.PROGRESS, status=st.PENDING, progress=0.0, step=reason)
                return
        self._end(task, st.FAILED, error.detail, error.type, ev.ERROR, title=error.title)

    def end_failed(self, task: Task, detail: str, error_type: str, title: str) -> None:
        """End a running ``task`` failed from outside its run (its run was lost); never raises."""
        self._end(task, st.FAILED, detail, error_type, ev.ERROR, title=title)

    def _end(self, task: Task, status: str, detail: str, error_type: str, event_type: str,
             title: str | None = None) -> None:
        """End a task truthfully. Never raises: when the store cannot record the end (disk full,
        database failing), followers still hear it now and the row is written by a later loop."""
        self._remove_outputs(task)
        try:
            ended = self.store.finish(task.id, status, error=detail, error_type=error_type, attempt=task.attempt)
        except Exception as error:
            log.error("could not record the end of task %s (%s); retrying: %s", task.id, error_type,
                      storage_fault(error) or error)
            self._unrecorded[task.id] = (status, detail, error_type, task.attempt)
            ended = True
        if ended:
            if status == st.FAILED:  # cancelled runs say nothing about the service
                self._generation_done(task, False)
            self.publish(task.id, event_type, error=title or detail, detail=detail, error_type=error_type)
            self._stream_outcome(task.id, event_type, error=title or detail, detail=detail, error_type=error_type)

    def _remove_outputs(self, task: Task) -> None:
        """A task that did not complete leaves no video (nor a half-written one) behind."""
        for path in (self.paths.video(task.id), self.paths.video(task.id).with_name(f"{task.id}.mp4.part")):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass

    def _record_unrecorded(self) -> None:
        """Retry writing the task ends the store refused earlier (oldest first)."""
        for task_id, (status, detail, error_type, attempt) in list(self._unrecorded.items()):
            # raises while still failing
            self.store.finish(task_id, status, error=detail, error_type=error_type, attempt=attempt)
            del self._unrecorded[task_id]

    def _announce_complete(self, task_id: str, total_frames: int) -> None:
        """Tell followers and the task's stream that it completed, with its media URLs."""
        done = ev.completion(task_id, total_frames)
        self.publish(task_id, ev.COMPLETE, **done)
        self._stream_outcome(task_id, ev.COMPLETE, video_url=done["video_url"], total_frames=total_frames)

    def _stream_outcome(self, task_id: str, type_: str, **data) -> None:
        if self.streams is not None:
            self.streams.finish(task_id, {"type": type_, "task_id": task_id, **data})



