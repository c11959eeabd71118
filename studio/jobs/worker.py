"""The task worker: a thread that claims tasks from the store and runs them on the device.

One worker per GPU (one per process today). It holds the GPU lock for the whole run, stores
progress in the task row, publishes live events, and turns every failure into a terminal task
state with a clear error, then keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from studio.engine.edit import FRAME_RATE, EditRunner, run_edit, timing_key
from studio.engine.edit import Cancelled as EditCancelled
from studio.engine.estimate import Estimator
from studio.engine.gpu import GPU_LOCK
from studio.engine.plan import GenerationPlan, make_plan
from studio.engine.request import GenerationRequest
from studio.engine.run import model_run
from studio.engine.state_cache import DenoisingStateCache, StateMatch, capture_steps, pooled_text, reusable
from studio.engine.t2v import (
    DENOISE_SHARE,
    Cancelled,
    Resume,
    RunOutput,
    TextEncoding,
    encode_texts,
    run_group,
    select_texts,
)
from studio.engine.step_cache import DecoderStatsAggregate
from studio.engine.text_cache import TextEmbeddingCache
from studio.errors import InternalError, StorageFull, StoreUnavailable, StudioError, storage_fault
from studio.jobs import events as ev
from studio.jobs import store as st
from studio.jobs.events import Event, EventBus
from studio.jobs.specs import SpecRegistry
from studio.jobs.store import Task, TaskStore
from studio.media.frame_boards import StreamHub
from studio.media.paths import MediaPaths, media_url
from studio.media.storage import StorageGuard
from studio.media.video import write_jpeg
from studio.models.catalog import get_spec
from studio.models.loader import ModelCache, group_fits_here

log = logging.getLogger(__name__)

INTERNAL_ERROR_DETAIL = "the generation failed inside the server; the error was logged"
REQUEUED_STEP = "Queued again: the server stopped during the run; it starts over after restart"
STORE_RETRY_SECONDS = 1.0  # how soon the loop retries after the task store failed
PROGRESS_WEBHOOK_INTERVAL = 2.0  # seconds; the seed's task.progress is a hint, not a stream


@dataclass
class _TaskHooks:
    """Engine hooks for one task: persist progress, publish events, check cancellation."""

    worker: "Worker"
    task: Task
    plan: GenerationPlan
    encode_estimate: float
    started: float = field(default_factory=time.perf_counter)
    step_seconds: list[float] = field(default_factory=list)
    last_progress_webhook: float = 0.0

    def should_cancel(self) -> bool:
        return self.worker.should_stop(self.task.id)

    def on_phase(self, status: str, message: str) -> None:
        self.worker.store.set_status(self.task.id, status, message)
        self.worker.publish(self.task.id, ev.PROGRESS, status=status, step=message,
                            progress=DENOISE_SHARE if status == st.ENCODING else 0.0)

    def on_step(self, step: int, total: int, step_seconds: float, preview: np.ndarray | None) -> None:
        self.step_seconds.append(step_seconds)
        progress = DENOISE_SHARE * step / total
        eta = float(np.mean(self.step_seconds)) * (total - step) + self.encode_estimate
        message = f"Denoising step {step}/{total}"
        preview_url = None
        if preview is not None:
            write_jpeg(self.worker.paths.preview(self.task.id), preview)
            preview_url = media_url("previews", self.task.id)
        self.worker.store.update_progress(self.task.id, progress, message, eta,
                                          preview_path=preview_url)
        self.worker.publish(self.task.id, ev.PROGRESS, status=st.GENERATING, progress=progress,
                            step=message, eta_seconds=eta, current_step=step, total_steps=total)
        self._progress_webhook(progress, message)
        if preview_url:
            self.worker.publish(self.task.id, ev.FRAME_AVAILABLE, quality="preview",
                                frame_index=self.plan.gen_frames // 2, step=step,
                                progress=progress, preview_url=f"{preview_url}?step={step}")

    def _progress_webhook(self, progress: float, message: str) -> None:
        """At most one ``task.progress`` webhook per ``PROGRESS_WEBHOOK_INTERVAL`` seconds."""
        now = time.monotonic()
        if self.task.webhook_url and now - self.last_progress_webhook >= PROGRESS_WEBHOOK_INTERVAL:
            self.last_progress_webhook = now
            self.worker.store.queue_progress_webhook(self.task.id, {"progress": round(progress, 4), "step": message})

    def streaming(self) -> bool:
        return self.worker.streams is not None and self.worker.streams.board(self.task.id) is not None

    def on_stream_frame(self, frame_index: int, quality: str, rgb: np.ndarray, progress: float) -> None:
        board = self.worker.streams.board(self.task.id) if self.worker.streams else None
        if board is not None:
            board.put(frame_index, quality, rgb, progress)

    def on_encoded(self, frames_done: int, total: int) -> None:
        progress = DENOISE_SHARE + (1 - DENOISE_SHARE) * frames_done / max(total, 1)
        message = f"Encoding frame {frames_done}/{total}"
        eta = self.encode_estimate * (1 - frames_done / max(total, 1))
        self.worker.store.update_progress(self.task.id, progress, message, eta)
        self.worker.publish(self.task.id, ev.PROGRESS, status=st.ENCODING, progress=progress, step=message,
                            eta_seconds=eta)


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
                 edit_runners: dict[str, EditRunner] | None = None, specs: SpecRegistry | None = None):
        self.store, self.bus, self.models, self.estimator, self.paths = store, bus, models, estimator, paths
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
        self.text_cache = TextEmbeddingCache()
        self.state_cache = DenoisingStateCache()
        self.on_generation = None  # (seconds, ok) -> None: the SLA monitor's record_generation
        self.streams: StreamHub | None = None  # Progressive Streaming's frame boards, when wired
        self.storage = storage  # no run starts while its disk is (almost) full
        self.edit_runners = dict(edit_runners or {})  # task kind -> the feature's run (video-side tasks)
        self.specs = specs if specs is not None else SpecRegistry()  # task kind -> its typed spec class
        self.waiting_for_space = False
        # Task ends the store could not record (disk full, database failing), retried every loop.
        self._unrecorded: dict[str, tuple] = {}

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
        with self._cancels_lock:
            self._cancels.add(task_id)

    def cancel_requested(self, task_id: str) -> bool:
        with self._cancels_lock:
            return task_id in self._cancels

    def should_stop(self, task_id: str) -> bool:
        """Whether a run must stop at its next step: its owner cancelled it, or the server stops."""
        return self._stopping.is_set() or self.cancel_requested(task_id)

    def publish(self, task_id: str, type_: str, **data) -> None:
        self.bus.publish(Event(task_id, type_, {k: v for k, v in data.items() if v is not None}))

    # -- the loop ---------------------------------------------------------------------------

    def _preload(self, model_id: str) -> None:
        try:
            with GPU_LOCK, model_run(self.models, model_id):  # out of memory: evicted, not left half-loaded
                pass
        except Exception:  # the first task that needs it will report the error properly
            log.exception("preloading %s failed", model_id)

    def _loop(self, preload: str | None) -> None:
        if preload:
            self._preload(preload)
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
        if task.kind != "t2v":
            self._run_single_edit(task)
            return
        options = self._batch_options(task)
        group = [task] + self._companions(task, options)
        self.current_task_ids = [t.id for t in group]
        try:
            self._run(group, reuse_text=bool(options and options.get("enable_similarity_caching", True)))
        finally:
            self.current_task_ids = []
            with self._cancels_lock:
                self._cancels.difference_update(t.id for t in group)

    @property
    def current_task_id(self) -> str | None:
        return self.current_task_ids[0] if self.current_task_ids else None

    def _batch_options(self, task: Task) -> dict | None:
        """The batch request a task belongs to (max_concurrent, budget, caching), if any."""
        found = self.store.batch(task.batch_id) if task.batch_id else None
        return found[0]["request"] if found else None

    def _companions(self, head: Task, options: dict | None) -> list[Task]:
        """More tasks of ``head``'s batch that can share its pipeline call: same model and
        shape, within the batch's ``max_concurrent`` (and ``vram_budget_gb``, see ``_fits``)."""
        if options is None:
            return []
        key = _shape_key(head)
        members = [head]

        def compatible(task: Task) -> bool:
            if _shape_key(task) != key or not self._fits(members + [task], options.get("vram_budget_gb")):
                return False
            members.append(task)
            return True

        return self.store.claim_companions(head, options["max_concurrent"] - 1, compatible)

    def _fits(self, tasks: list[Task], budget_gb: float | None) -> bool:
        """Whether a group may share one pipeline call: ``studio.models.loader.group_fits_here``
        (the orchestrator's group peak against this device's free memory, counting only the
        activations when the group's model is already resident, and against ``vram_budget_gb``)."""
        return group_fits_here([_plan_of(t) for t in tasks], self.models, budget_gb)

    def _run(self, tasks: list[Task], reuse_text: bool = False) -> None:
        """Run a group (usually of one) in one pipeline call; every failure ends all of them.
        ``reuse_text``: batch similarity caching (equal prompts share a text encoding)."""
        try:
            requests = [GenerationRequest.model_validate(t.request) for t in tasks]
            spec = get_spec(requests[0].model)
            plans = [make_plan(r, spec, seed=r.seed) for r in requests]
            with GPU_LOCK:
                for task in tasks:
                    self.publish(task.id, ev.PROGRESS, status=st.LOADING_MODEL, progress=0.0, step=f"Loading {spec.id}")
                was_loaded = self.models.loaded_model == spec.id
                with model_run(self.models, spec.id, advice=T2V_ADVICE,
                               on_progress=lambda f, msg: [self._loading(t.id, f, msg) for t in tasks]) as run:
                    model = run.model
                    run.size = (plans[0].gen_width, plans[0].gen_height)
                    estimate = self.estimator.estimate(spec, plans[0], model_loaded=True)
                    hooks = [_TaskHooks(self, t, p, estimate.encode_seconds) for t, p in zip(tasks, plans)]
                    outputs, matches = self._generate(model, tasks, plans, hooks, reuse_text)
                if not was_loaded:
                    self.estimator.record(spec, plans[0], None, None, model.load_seconds)
            load_seconds = 0.0 if was_loaded else model.load_seconds
            for task, request, plan, output, match in zip(tasks, requests, plans, outputs, matches):
                if output is None:
                    self._end_stopped(task)
                else:
                    self._complete(task, request, plan, model, output, load_seconds, match)
        except Cancelled:
            for task in tasks:
                self._end_stopped(task)
        except Exception as exc:
            error = self._as_studio_error(exc)
            if error is None:
                log.exception("tasks %s failed", [t.id for t in tasks])
                error = _INTERNAL
            for task in tasks:
                self._end(task, st.FAILED, error.detail, error.type, ev.ERROR, title=error.title)

    def _run_single_edit(self, task: Task) -> None:
        self.current_task_ids = [task.id]
        try:
            self._run_edit(task)
        finally:
            self.current_task_ids = []
            with self._cancels_lock:
                self._cancels.discard(task.id)

    def _run_edit(self, task: Task) -> None:
        """Run a video-side genius task (``studio.engine.edit``); failures end it like a generation's."""
        hooks = _EditHooks(self, task)
        try:
            self.store.set_status(task.id, st.GENERATING, "Starting")
            with GPU_LOCK:
                spec = self.specs.of(task) if task.kind in self.specs.kinds else None
                result, seconds_per_frame = run_edit(task, self._edit_runner(task.kind), self.data_dir, self.paths,
                                                     hooks, self.store, self.models, spec)
            self.store.record_timing(timing_key(task.kind, result["metadata"]["path"]), FRAME_RATE, seconds_per_frame)
            if self.store.finish(task.id, st.COMPLETED, result=result):
                self._generation_done(task, True)
                total = result["metadata"]["frames"]
                self.publish(task.id, ev.COMPLETE, video_url=result["video_url"],
                             thumbnail_url=result["thumbnail_url"], total_frames=total)
                self._stream_outcome(task.id, ev.COMPLETE, video_url=result["video_url"], total_frames=total)
        except EditCancelled:
            self._end_stopped(task)
        except Exception as exc:
            error = self._as_studio_error(exc)
            if error is None:
                log.exception("task %s (%s) failed", task.id, task.kind)
                error = _INTERNAL
            self._end(task, st.FAILED, error.detail, error.type, ev.ERROR, title=error.title)

    def _generate(self, model, tasks: list[Task], plans: list[GenerationPlan], hooks: list[_TaskHooks],
                  similarity: bool) -> tuple[list[RunOutput | None], list[StateMatch | None]]:
        """The group's pipeline calls. Without similarity caching: one call. With it (batch
        ``enable_similarity_caching``): equal prompts share text encodings, and prompts
        near-identical to an earlier one (cached, or earlier in this group) start from that
        run's cached early state: the others run first, keeping their early states, then the
        near-identical ones resume, grouped by how many steps they skip."""
        outputs: list[RunOutput | None] = [None] * len(tasks)
        matches: list[StateMatch | None] = [None] * len(tasks)
        if not similarity:
            self._call(model, tasks, plans, hooks, list(range(len(tasks))), outputs)
            return outputs, matches
        with torch.inference_mode():
            texts = encode_texts(model.pipe, plans, self.text_cache)
            pooled = pooled_text(texts.prompt_embeds)
        key = _state_key(tasks[0], plans[0])
        leaders: list[int] = []
        followers: list[int] = []
        for i, plan in enumerate(plans):
            near_leader = any(reusable(float(pooled[i] @ pooled[j]), plan.prompt, plan.seed,
                                       plans[j].prompt, plans[j].seed) for j in leaders)
            cached = self.state_cache.match(key, pooled[i], plan.prompt, plan.seed, plan.num_inference_steps)
            (followers if near_leader or cached else leaders).append(i)
        self._call(model, tasks, plans, hooks, leaders, outputs, texts,
                   capture=tuple(capture_steps(plans[0].num_inference_steps)))
        for i in leaders:
            if outputs[i] is not None:
                self.state_cache.add(key, tasks[i].id, plans[i].prompt, plans[i].seed, pooled[i], outputs[i].states)
        by_step: dict[int, list[int]] = {}
        for i in followers:
            matches[i] = self.state_cache.match(key, pooled[i], plans[i].prompt, plans[i].seed,
                                                plans[i].num_inference_steps)
            by_step.setdefault(matches[i].skipped_steps if matches[i] else 0, []).append(i)
        for step, rows in sorted(by_step.items()):
            resume = Resume(step, torch.cat([matches[i].latents for i in rows])) if step else None
            self._call(model, tasks, plans, hooks, rows, outputs, texts, resume=resume)
        return outputs, matches

    def _call(self, model, tasks: list[Task], plans: list[GenerationPlan], hooks: list[_TaskHooks],
              rows: list[int], outputs: list, texts: TextEncoding | None = None, resume: Resume | None = None,
              capture: tuple[int, ...] = ()) -> None:
        """One batched pipeline call over ``rows`` of the group; fills ``outputs[row]`` (None
        for a cancelled task) and learns the call's step and encode times."""
        if not rows:
            return
        try:
            results = run_group(model, [plans[i] for i in rows], [hooks[i] for i in rows],
                                [self.paths.video(tasks[i].id) for i in rows],
                                [self.paths.thumbnail(tasks[i].id) for i in rows], self.preview_width,
                                texts=select_texts(texts, rows), resume=resume, capture_steps=capture)
        except Cancelled:
            return
        for i, result in zip(rows, results):
            outputs[i] = result
        first = next(o for o in results if o is not None)
        # The rate learnt is the uncached one (measured where an A/B baseline exists), so step-cache
        # runs do not make later estimates optimistic.
        step_rate = (first.decoder.uncached_seconds / first.decoder.steps
                     if first.decoder and first.decoder.steps else first.mean_step_seconds)
        self.estimator.record(model.spec, plans[rows[0]], step_rate / len(rows), first.decode_encode_seconds, None)
        if first.decoder:
            self.decoder_stats.add(first.decoder)  # once per pipeline call, not per task

    def _generation_done(self, task: Task, ok: bool) -> None:
        """Tell the SLA monitor how long the task ran, from its claim to its end."""
        if self.on_generation is not None and task.started_at is not None:
            try:
                self.on_generation(time.time() - task.started_at, ok)
            except Exception:
                log.exception("recording the generation time of %s failed", task.id)

    def _loading(self, task_id: str, fraction: float, message: str) -> None:
        self.store.update_progress(task_id, 0.0, message, None)
        self.publish(task_id, ev.PROGRESS, status=st.LOADING_MODEL, progress=0.0, step=message,
                     download_progress=fraction)

    def _complete(self, task: Task, request: GenerationRequest, plan: GenerationPlan, model, output: RunOutput,
                  load_seconds: float, match: StateMatch | None = None) -> None:
        generation_time = output.denoise_seconds + output.decode_encode_seconds + load_seconds
        result = {
            "video_url": media_url("videos", task.id),
            "thumbnail_url": media_url("thumbnails", task.id),
            "duration_seconds": round(output.frames / output.fps, 3),
            "resolution": request.resolution,
            "file_size_mb": round(output.video_path.stat().st_size / 2**20, 3),
            "generation_time_seconds": round(generation_time, 3),
            "metadata": {
                "prompt": request.prompt,
                "model": plan.model,
                "seed": plan.seed,
                "negative_prompt": request.negative_prompt,
                "genre": request.genre,
                "model_trained": model.spec.trained,
                "fps": output.fps,
                "frames": output.frames,
                "width": output.width,
                "height": output.height,
                "generated_width": plan.gen_width,
                "generated_height": plan.gen_height,
                "generated_frames": plan.gen_frames,
                "num_inference_steps": plan.num_inference_steps,
                "guidance_scale": plan.guidance_scale,
                "memory_profile": model.memory_profile,
                "timings": {
                    "load_seconds": round(load_seconds, 3),
                    "denoise_seconds": round(output.denoise_seconds, 3),
                    "mean_step_seconds": round(output.mean_step_seconds, 4),
                    "decode_encode_seconds": round(output.decode_encode_seconds, 3),
                },
                "notes": plan.notes + ([_resume_note(match)] if match else []),
                "decoder": output.decoder.to_dict() if output.decoder else None,
                "batch": {"batch_id": task.batch_id, "group_size": output.group_size,
                          "text_encoding": "reused" if output.text_encoding_reused else "computed",
                          "denoising_state": match.to_dict() if match else None}
                if task.batch_id else None,
            },
        }
        if self.store.finish(task.id, st.COMPLETED, result=result):
            self._generation_done(task, True)
            self.publish(task.id, ev.COMPLETE, video_url=result["video_url"],
                         thumbnail_url=result["thumbnail_url"], total_frames=output.frames)
            self._stream_outcome(task.id, ev.COMPLETE, video_url=result["video_url"], total_frames=output.frames)

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

    def _end(self, task: Task, status: str, detail: str, error_type: str, event_type: str,
             title: str | None = None) -> None:
        """End a task truthfully. Never raises: when the store cannot record the end (disk full,
        database failing), followers still hear it now and the row is written by a later loop."""
        self._remove_outputs(task)
        try:
            ended = self.store.finish(task.id, status, error=detail, error_type=error_type)
        except Exception as error:
            log.error("could not record the end of task %s (%s); retrying: %s", task.id, error_type,
                      storage_fault(error) or error)
            self._unrecorded[task.id] = (status, detail, error_type)
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
        for task_id, (status, detail, error_type) in list(self._unrecorded.items()):
            self.store.finish(task_id, status, error=detail, error_type=error_type)  # raises while still failing
            del self._unrecorded[task_id]

    def _stream_outcome(self, task_id: str, type_: str, **data) -> None:
        if self.streams is not None:
            self.streams.finish(task_id, {"type": type_, "task_id": task_id, **data})


_INTERNAL = InternalError(INTERNAL_ERROR_DETAIL)
T2V_ADVICE = "try a lower resolution, a shorter duration or a smaller model"  # on running out of GPU memory


def _resume_note(match: StateMatch) -> str:
    return (f"similarity caching: started after step {match.skipped_steps} from the denoising state of task "
            f"{match.source_task_id} (near-identical prompt, cosine {match.cosine:.3f}); this seed's own noise "
            "was not used")


def _state_key(task: Task, plan: GenerationPlan) -> tuple:
    """Which cached denoising states a task may start from: its owner's, of the same shape."""
    return (task.owner, plan.model, plan.gen_width, plan.gen_height, plan.gen_frames, plan.num_inference_steps,
            plan.guidance_scale, plan.acceleration)


def _plan_of(task: Task) -> GenerationPlan:
    request = GenerationRequest.model_validate(task.request)
    return make_plan(request, get_spec(request.model), seed=request.seed)


def _shape_key(task: Task) -> tuple:
    """What tasks must share to be denoised in one batched call."""
    plan = _plan_of(task)
    return (plan.model, plan.gen_width, plan.gen_height, plan.gen_frames, plan.num_inference_steps,
            plan.guidance_scale, plan.acceleration)
