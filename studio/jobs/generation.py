"""Text-to-video runs for the worker: a claimed task, with the tasks of its batch that can share
its pipeline call, denoised and encoded by the engine (``studio.engine.t2v``).

Grouping is the queue's decision (``BatchOptions`` of the stored batch: ``max_concurrent``,
``vram_budget_gb``, similarity caching), so this runner lives with the worker rather than in the
``studio.genius.generate`` feature package, which submits these tasks. Batch similarity caching:
equal prompts share one text encoding; near-identical prompts resume from a cached early
denoising state (``studio.engine.state_cache``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from studio.db.loras import LoraRecords
from studio.engine.chunked import run_chunked
from studio.engine.edit import inputs_folder
from studio.engine.estimate import split_warmup
from studio.engine.gpu import GPU_LOCK
from studio.engine.learned_interpolation import LearnedInterpolation
from studio.engine.long_video import run_chain
from studio.engine.loras import Adapter, adapters_applied
from studio.engine.output_frames import LearnedNetworks
from studio.engine.plan import GenerationPlan, make_plan
from studio.engine.request import GenerationSpec
from studio.engine.run import model_run
from studio.engine.state_cache import DenoisingStateCache, StateMatch, capture_steps, pooled_text, reusable
from studio.engine.super_resolution import LearnedUpscale
from studio.engine.t2v import (
    DENOISE_SHARE,
    Cancelled,
    FrameImages,
    Resume,
    RunOutput,
    TextEncoding,
    encode_texts,
    run_group,
    select_texts,
)
from studio.engine.text_cache import TextEmbeddingCache
from studio.errors import InternalError, ModelUnavailable
from studio.jobs import events as ev
from studio.jobs import store as st
from studio.jobs.adapters import fast_adapters, task_adapters
from studio.jobs.specs import BatchOptions, load_as
from studio.jobs.store import Task
from studio.media.paths import media_url
from studio.media.video import write_jpeg
from studio.models.catalog import get_spec
from studio.models.esrgan import load_upscaler
from studio.models.loader import group_fits_here
from studio.models.rife import load_interpolator
from studio.models.speed import in_effect

if TYPE_CHECKING:
    from studio.jobs.worker import Worker

log = logging.getLogger(__name__)

INTERNAL_ERROR_DETAIL = "the generation failed inside the server; the error was logged"
INTERNAL_ERROR = InternalError(INTERNAL_ERROR_DETAIL)
T2V_ADVICE = "try a lower resolution, a shorter duration or a smaller model"  # on running out of GPU memory
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
        # The first step carries one-time costs (a compiled model's compile, kernel autotuning):
        # the later steps set the pace as soon as there are any.
        pace = float(np.mean(self.step_seconds[1:] or self.step_seconds))
        eta = pace * (total - step) + self.encode_estimate
        message = f"Denoising step {step}/{total}"
        preview_url = preview_file = None
        if preview is not None:
            path = self.worker.paths.preview(self.task.id)
            write_jpeg(path, preview)
            self.worker.publish_preview(self.task.id)
            preview_file = str(path.relative_to(self.worker.paths.root))  # the row keeps a file, not a URL
            preview_url = media_url("previews", self.task.id)
        self.worker.store.update_progress(self.task.id, progress, message, eta, preview_path=preview_file)
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


class GenerationRunner:
    """The worker's text-to-video runs, with the caches they share across tasks."""

    def __init__(self, worker: "Worker"):
        self.worker = worker
        self.loras = LoraRecords(worker.store.database)
        self.networks: dict[tuple[str, str, str], object] = {}  # (field, source, device) -> the loaded network
        self.text_cache = TextEmbeddingCache()  # batch similarity caching: equal prompts' encodings
        self.shared_calls: dict[str, list[str]] = {}  # task id -> the tasks of its pipeline call (this run's)
        self.state_cache = DenoisingStateCache()  # and near-identical prompts' early denoising states

    def run_claimed(self, task: Task) -> None:
        """Run ``task`` and the companions of its batch that can share its call."""
        options = self._batch_options(task)
        group = [task] + self._companions(task, options)
        self.worker.current_task_ids = [t.id for t in group]
        try:
            self._run(group, reuse_text=options is not None and options.enable_similarity_caching)
        finally:
            self.worker.forget(group)

    def _batch_options(self, task: Task) -> BatchOptions | None:
        """How the batch a task belongs to lets its tasks share calls (None: not in a batch)."""
        found = self.worker.store.batch(task.batch_id) if task.batch_id else None
        return BatchOptions.model_validate(found[0]["request"]) if found else None

    def _companions(self, head: Task, options: BatchOptions | None) -> list[Task]:
        """More tasks of ``head``'s batch that can share its pipeline call: same model and
        shape, within the batch's ``max_concurrent`` (and ``vram_budget_gb``, see ``_fits``)."""
        if options is None:  # not in a batch (and a row that does not load fails in _run, not here)
            return []
        plan = _plan_of(head)
        if plan.passes > 1 or plan.chunk_frames:  # a chain or a chunked clip runs alone
            return []  # (a task with images is never in a batch: batch settings have no images)
        key = _shape_key(head)
        members = [head]

        def compatible(task: Task) -> bool:
            if _shape_key(task) != key or not self._fits(members + [task], options.vram_budget_gb):
                return False
            members.append(task)
            return True

        return self.worker.store.claim_companions(head, options.max_concurrent - 1, compatible)

    def _fits(self, tasks: list[Task], budget_gb: float | None) -> bool:
        """Whether a group may share one pipeline call: ``studio.models.loader.group_fits_here``
        (the orchestrator's group peak against this device's free memory, counting only the
        activations when the group's model is already resident, and against ``vram_budget_gb``)."""
        return group_fits_here([_plan_of(t) for t in tasks], self.worker.models, budget_gb)

    def _run(self, tasks: list[Task], reuse_text: bool = False) -> None:
        """Run a group (usually of one) in one pipeline call; every failure ends all of them.
        ``reuse_text``: batch similarity caching (equal prompts share a text encoding)."""
        self.shared_calls = {}
        try:
            requests = [load_as(GenerationSpec, t.request) for t in tasks]
            spec = get_spec(requests[0].model)
            plans = [make_plan(r, spec, seed=r.seed) for r in requests]
            # A group shares its adapters (_shape_key): the fast mode's distillation LoRAs and the task's own.
            distilled = fast_adapters(spec, self.worker.models.models_dir) if plans[0].mode == "fast" else []
            adapters = task_adapters(self.loras, self.worker.data_dir, self.worker.paths, tasks[0].owner,
                                     requests[0].loras, spec)
            with GPU_LOCK:
                for task in tasks:
                    self.worker.publish(task.id, ev.PROGRESS, status=st.LOADING_MODEL, progress=0.0, step=f"Loading {spec.id}")
                was_loaded = self.worker.models.loaded_model == spec.id
                with model_run(self.worker.models, spec.id, advice=T2V_ADVICE,
                               on_progress=lambda f, msg: [self._loading(t.id, f, msg) for t in tasks]) as run:
                    model = run.model
                    run.size = (plans[0].gen_width, plans[0].gen_height)
                    estimate = self.worker.estimator.estimate(spec, plans[0], model_loaded=True)
                    hooks = [_TaskHooks(self.worker, t, p, estimate.encode_seconds) for t, p in zip(tasks, plans)]
                    learned = self._learned(model, plans[0])
                    images = self._images(requests[0])  # a task with images is never grouped
                    if plans[0].passes > 1:
                        outputs = [self._chain(model, tasks[0], plans[0], hooks[0], distilled + adapters, learned,
                                               images)]
                        matches = [None]
                    elif plans[0].chunk_frames:
                        with adapters_applied(model.pipe, adapters):
                            outputs = [self._chunked(model, tasks[0], plans[0], hooks[0], learned, images)]
                        matches = [None]
                    else:
                        with adapters_applied(model.pipe, distilled + adapters):
                            outputs, matches = self._generate(model, tasks, plans, hooks, reuse_text, learned, images)
                if not was_loaded:
                    self.worker.estimator.record(spec, plans[0], None, None, model.load_seconds)
            load_seconds = 0.0 if was_loaded else model.load_seconds
            for task, request, plan, output, match in zip(tasks, requests, plans, outputs, matches):
                if output is None:
                    self.worker._end_stopped(task)
                else:
                    self._complete(task, request, plan, model, output, load_seconds, match, adapters, learned)
        except Cancelled:
            for task in tasks:
                self.worker._end_stopped(task)
        except Exception as exc:
            error = self.worker._as_studio_error(exc)
            if error is None:
                log.exception("tasks %s failed", [t.id for t in tasks])
                error = INTERNAL_ERROR
            for task in tasks:
                self.worker.end_failed_run(task, error)

    def _generate(self, model, tasks: list[Task], plans: list[GenerationPlan], hooks: list[_TaskHooks],
                  similarity: bool, learned: LearnedNetworks | None = None, images: FrameImages | None = None
                  ) -> tuple[list[RunOutput | None], list[StateMatch | None]]:
        """The group's pipeline calls. Without similarity caching: one call. With it (batch
        ``enable_similarity_caching``): equal prompts share text encodings, and prompts
        near-identical to an earlier one (cached, or earlier in this group) start from that
        run's cached early state: the others run first, keeping their early states, then the
        near-identical ones resume, grouped by how many steps they skip."""
        outputs: list[RunOutput | None] = [None] * len(tasks)
        matches: list[StateMatch | None] = [None] * len(tasks)
        if not similarity:
            self._call(model, tasks, plans, hooks, list(range(len(tasks))), outputs, learned=learned, images=images)
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
                   capture=tuple(capture_steps(plans[0].num_inference_steps)), learned=learned)
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
            self._call(model, tasks, plans, hooks, rows, outputs, texts, resume=resume, learned=learned)
        return outputs, matches

    def _chain(self, model, task: Task, plan: GenerationPlan, hooks: _TaskHooks, adapters: Sequence[Adapter],
               learned: LearnedNetworks | None, images: FrameImages | None) -> RunOutput | None:
        """A long clip, window by window (``studio.engine.long_video``); None when cancelled in
        its first window (a later cancel keeps the finished windows: ``RunOutput.partial``)."""
        first_window = replace(plan, gen_frames=plan.windows[0].frames)
        cold = model.is_cold(first_window)
        try:
            output = run_chain(self.worker.models, model, plan, hooks, self.worker.paths.video(task.id),
                               self.worker.paths.thumbnail(task.id), text_cache=self.text_cache,
                               preview_width=self.worker.preview_width, advice=T2V_ADVICE, adapters=adapters,
                               learned=learned, images=images)
        except Cancelled:
            return None
        model.ran(first_window)
        if not output.partial:  # the first window's steps are the text-to-video model's rate
            steps = output.step_seconds[:plan.num_inference_steps]
            seconds, warmup = split_warmup(steps, cold)
            self.worker.estimator.record(model.spec, first_window, seconds / len(steps), output.decode_encode_seconds,
                                         None, warmup, model.acceleration, model.memory_profile)
        return output

    def _chunked(self, model, task: Task, plan: GenerationPlan, hooks: _TaskHooks, learned: LearnedNetworks | None,
                 images: FrameImages | None) -> RunOutput | None:
        """A clip of an autoregressive model, chunk by chunk (``studio.engine.chunked``); None when
        cancelled in its first chunk (a later cancel keeps the finished chunks: ``RunOutput.partial``)."""
        cold = model.is_cold(plan)
        try:
            output = run_chunked(model, plan, hooks, self.worker.paths.video(task.id),
                                 self.worker.paths.thumbnail(task.id), text_cache=self.text_cache,
                                 preview_width=self.worker.preview_width, learned=learned, images=images)
        except Cancelled:
            return None
        model.ran(plan)
        if not output.partial and output.step_seconds:
            seconds, warmup = split_warmup(output.step_seconds, cold)
            self.worker.estimator.record(model.spec, plan, seconds / len(output.step_seconds),
                                         output.decode_encode_seconds, None, warmup, model.acceleration,
                                         model.memory_profile)
        return output

    def _call(self, model, tasks: list[Task], plans: list[GenerationPlan], hooks: list[_TaskHooks],
              rows: list[int], outputs: list, texts: TextEncoding | None = None, resume: Resume | None = None,
              capture: tuple[int, ...] = (), learned: LearnedNetworks | None = None,
              images: FrameImages | None = None) -> None:
        """One batched pipeline call over ``rows`` of the group; fills ``outputs[row]`` (None
        for a cancelled task) and learns the call's step and encode times."""
        if not rows:
            return
        cold = model.is_cold(plans[rows[0]], len(rows))
        try:
            results = run_group(model, [plans[i] for i in rows], [hooks[i] for i in rows],
                                [self.worker.paths.video(tasks[i].id) for i in rows],
                                [self.worker.paths.thumbnail(tasks[i].id) for i in rows], self.worker.preview_width,
                                texts=select_texts(texts, rows), resume=resume, capture_steps=capture,
                                learned=learned, images=images)
        except Cancelled:
            return
        model.ran(plans[rows[0]], len(rows))
        for i, result in zip(rows, results):
            outputs[i] = result
            self.shared_calls[tasks[i].id] = [tasks[r].id for r in rows]
        first = next(o for o in results if o is not None)
        steady, warmup = split_warmup(first.step_seconds, cold)
        # The rate learnt is the uncached one (measured where an A/B baseline exists), so step-cache
        # runs do not make later estimates optimistic; a first-call compile is learnt apart.
        step_rate = ((first.decoder.uncached_seconds - (warmup or 0.0)) / first.decoder.steps
                     if first.decoder and first.decoder.steps else steady / max(1, len(first.step_seconds)))
        self.worker.estimator.record(model.spec, plans[rows[0]], step_rate / len(rows), first.decode_encode_seconds,
                                     None, warmup, model.acceleration, model.memory_profile)
        if first.decoder:
            self.worker.decoder_stats.add(first.decoder)  # once per pipeline call, not per task

    def _images(self, request: GenerationSpec) -> FrameImages | None:
        """The frames an image-to-video task starts (and ends) on, from its inputs folder
        (fetched from object storage when another process stored them)."""
        if request.inputs_id is None:
            return None
        folder = inputs_folder(self.worker.data_dir, request.inputs_id)
        self.worker.paths.fetch_inputs(folder)

        def read(name: str | None) -> np.ndarray | None:
            return cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB) if name else None

        return FrameImages(read(request.image), read(request.last_image))

    def _learned(self, model, plan: GenerationPlan) -> LearnedNetworks | None:
        """The server's networks ``plan`` asks for, on ``model``'s device, each loaded once."""
        upscale = self._network("upscaler", self.worker.upscaler_model, "ECHOEL_UPSCALER_MODEL", model,
                                lambda source: LearnedUpscale(load_upscaler(source), model.device)) \
            if plan.upscaler == "learned" else None
        interpolate = self._network("interpolator", self.worker.interpolator_model, "ECHOEL_INTERPOLATOR_MODEL", model,
                                    lambda source: LearnedInterpolation(load_interpolator(source), model.device)) \
            if plan.interpolator == "learned" else None
        return LearnedNetworks(upscale, interpolate) if upscale or interpolate else None

    def _network(self, field: str, source: str | None, variable: str, model, load: Callable):
        if source is None:  # the submit refused it; a worker configured apart from its API can still lack one
            raise ModelUnavailable(f"{field}: this worker has no learned {field} ({variable})")
        key = (field, source, str(model.device))
        if key not in self.networks:
            self.networks[key] = load(source)
        return self.networks[key]

    def _loading(self, task_id: str, fraction: float, message: str) -> None:
        self.worker.store.update_progress(task_id, 0.0, message, None)
        self.worker.publish(task_id, ev.PROGRESS, status=st.LOADING_MODEL, progress=0.0, step=message,
                     download_progress=fraction)

    def _complete(self, task: Task, request: GenerationSpec, plan: GenerationPlan, model, output: RunOutput,
                  load_seconds: float, match: StateMatch | None = None, adapters: Sequence[Adapter] = (),
                  learned: LearnedNetworks | None = None) -> None:
        load_seconds += output.continuation_load_seconds
        upscale = learned.upscale if learned is not None and plan.spatial == "upscale" else None
        interpolate = learned.interpolate if learned is not None and plan.temporal == "flow" else None
        generation_time = output.denoise_seconds + output.decode_encode_seconds + load_seconds
        result = {
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
                "generated_frames": plan.clip_frames,
                "num_inference_steps": plan.num_inference_steps,
                "guidance_scale": plan.guidance_scale,
                "memory_profile": model.memory_profile,
                "frame_rate_method": _frame_rate_method(plan, learned),
                "scaling_method": "learned" if upscale is not None else plan.spatial,
                "upscaler": upscale.describe(plan.out_width, plan.out_height, (plan.gen_width, plan.gen_height))
                if upscale is not None else None,
                "interpolator": interpolate.describe() if interpolate is not None else None,
                "timings": {
                    "load_seconds": round(load_seconds, 3),
                    "denoise_seconds": round(output.denoise_seconds, 3),
                    "mean_step_seconds": round(output.mean_step_seconds, 4),
                    "decode_encode_seconds": round(output.decode_encode_seconds, 3),
                },
                "notes": plan.notes + output.notes + ([_resume_note(match)] if match else [])
                + ([_partial_note(plan, output)] if output.partial else [])
                + ([_lora_note(adapters, plan)] if adapters else []),
                "loras": [a.to_dict() for a in adapters] or None,
                "speed": in_effect(model.pipe, model.speed).to_dict(),
                "mode": plan.mode,
                "conditioning": plan.conditioning,
                "windows": output.windows or None,
                "chunks": output.chunks or None,
                "continuation_model": plan.continuation_model,
                "decoder": output.decoder.to_dict() if output.decoder else None,
                "batch": {"batch_id": task.batch_id, "group_size": output.group_size,
                          "group": self.shared_calls.get(task.id, [task.id]),
                          "text_encoding": "reused" if output.text_encoding_reused else "computed",
                          "denoising_state": match.to_dict() if match else None}
                if task.batch_id else None,
            },
        }
        if output.partial:
            self.worker.end_with_partial_result(task, {**result, "partial": True}, output.frames)
            return
        self.worker.publish_outputs(task.id)  # before the row says completed: the result's files exist everywhere
        if self.worker.store.finish(task.id, st.COMPLETED, result=result, attempt=task.attempt):
            self.worker._generation_done(task, True)
            self.worker._announce_complete(task.id, output.frames)


def _frame_rate_method(plan: GenerationPlan, learned: LearnedNetworks | None) -> str:
    if plan.temporal != "flow":
        return "nearest"
    return "learned" if learned is not None and learned.interpolate is not None else "optical_flow"


def _resume_note(match: StateMatch) -> str:
    return (f"similarity caching: started after step {match.skipped_steps} from the denoising state of task "
            f"{match.source_task_id} (near-identical prompt, cosine {match.cosine:.3f}); this seed's own noise "
            "was not used")


def _lora_note(adapters: list[Adapter], plan: GenerationPlan) -> str:
    applied = ", ".join(f"{a.name!r} at scale {a.scale:g}" for a in adapters)
    where = f"{plan.model} and {plan.continuation_model}" if plan.continuation_model else plan.model
    return f"LoRAs applied to {where}: {applied}; removed after the task"


def _partial_note(plan: GenerationPlan, output: RunOutput) -> str:
    if plan.chunk_frames:
        return (f"cancelled after {len(output.chunks)} of {plan.chunks} chunks: this partial result holds the "
                f"finished chunks ({output.frames} of {plan.out_frames} frames, {output.frames / output.fps:.2f} s)")
    return (f"cancelled after {len(output.windows)} of {plan.passes} windows: this partial result holds the finished "
            f"windows ({output.frames} of {plan.out_frames} frames, {output.frames / output.fps:.2f} s)")


def _state_key(task: Task, plan: GenerationPlan) -> tuple:
    """Which cached denoising states a task may start from: its owner's, of the same shape."""
    return (task.owner, plan.model, plan.gen_width, plan.gen_height, plan.gen_frames, plan.num_inference_steps,
            plan.guidance_scale, plan.acceleration, plan.mode, _loras_key(task))


def _plan_of(task: Task) -> GenerationPlan:
    request = load_as(GenerationSpec, task.request)
    return make_plan(request, get_spec(request.model), seed=request.seed)


def _shape_key(task: Task) -> tuple:
    """What tasks must share to be denoised in one batched call (the same LoRAs too)."""
    plan = _plan_of(task)
    return (plan.model, plan.gen_width, plan.gen_height, plan.gen_frames, plan.passes, plan.num_inference_steps,
            plan.guidance_scale, plan.acceleration, plan.mode, plan.upscaler, plan.interpolator, _loras_key(task))


def _loras_key(task: Task) -> tuple:
    return tuple((c.id, c.scale) for c in load_as(GenerationSpec, task.request).loras)
