"""The step cache behind the Speculative Decoder: diffusers' FirstBlockCache with honest, measured stats.

This is engine mechanics (applied around every denoising run); the feature's API (its routes and
response shapes) is ``studio.genius.decoder.stats``.

What the seed calls a "speculative decoder" is, in this studio, a *step cache* on the video
transformer. For every transformer forward pass (one per denoising step and CFG branch):

- **draft**: the first transformer block runs; its residual (output - input) is the cheap
  prediction of how much this pass differs from the last fully computed one;
- **verify**: the relative mean absolute change of that residual against the residual stored at
  the last fully computed pass of the same CFG branch,
  ``mean|r_now - r_last| / mean|r_last|``, is compared with the level's threshold;
- **accept** (below the threshold): the remaining blocks are *not* run; the pass reuses the
  residual the remaining blocks added last time (``hidden + cached_tail_residual``);
- **reject** (above): the remaining blocks run and the cache is refreshed.

This is diffusers' ``FirstBlockCacheConfig`` (``diffusers/hooks/first_block_cache.py``), enabled
with ``transformer.enable_cache(config)`` on ``pipe.transformer`` and, for Wan2.2-A14B, on
``pipe.transformer_2`` (each expert keeps its own cache). WanPipeline wraps the two CFG passes
in ``cache_context("cond")`` / ``cache_context("uncond")``, so each branch compares against its
own history.

Levels (``GenerationRequest.acceleration``) and why these thresholds
(``shared/research/perf_anchors.md`` §2; all figures are for the *real* trained models):

=========  ==================  ==========================================================
level      cache               rationale
=========  ==================  ==========================================================
off        none                every pass computes every block; output bit-identical to
                               a run without this module
balanced   FirstBlockCache     Comfy-WaveSpeed's shipped Wan default. A third-party check on
           threshold 0.09      Wan2.2-A14B (RTX 4090, 20 steps) measured 1.85x at 0.10 with
                               "comparable quality"; at 0.05 the cache never fired there.
fast       FirstBlockCache     diffusers PR #11180 on Wan2.1-1.3B: 0.10 -> 2.5x, 0.20 ->
           threshold 0.15      3.9x, with "values below 0.2 work well; higher values lead to
                               blurring and artifacting". 0.15 stays clear of 0.2; it was
                               not measured directly (expect between 2.5x and 3.9x on 1.3B).
=========  ==================  ==========================================================

MagCache and TaylorSeer were considered (``bench/bench_step_cache.py`` compares them on the
tiny model). MagCache needs per-checkpoint magnitude ratios (diffusers ships only Flux's; Wan
needs a calibration run per model and step count) and skips the first block too, so it cannot
report a draft; TaylorSeer skips on a fixed schedule (no draft/verify at all) and shows the
largest drift from uncached Wan output in the published comparisons (PSNR 13.5 on 1.3B). Both
are therefore not used for the levels.

The offline ``tiny`` model is untrained: its first-block residual changes by ~2-9 % per step
(measured at 10-50 steps), less than a trained Wan's, so the same thresholds skip *more* there. Its figures
test the mechanism, not the quality trade-off of the real models.

Stats (per task, ``DecoderStats``; aggregated over tasks, ``DecoderStatsAggregate``):

- ``passes``: transformer forward passes run (steps x 2 with CFG, x 1 without).
- ``tokens_per_pass``: latent tokens the transformer processes in one pass
  (batch x latent frames / p_t x latent height / p_h x latent width / p_w).
- ``total_tokens`` = passes x tokens_per_pass: the transformer token work requested.
- ``accepted_tokens`` = reused passes x tokens_per_pass: work whose remaining blocks were
  skipped because the draft was accepted (the output of the cached residual was used instead).
- ``acceptance_rate`` = accepted_tokens / total_tokens (0 when nothing ran).
- ``average_draft_time_ms``: mean wall time of the first-block pass (block 0's forward plus its
  residual), over passes that ran with a cache. 0 with ``off`` (no draft exists).
- ``average_verify_time_ms``: mean wall time of the comparison (the two abs-means, the division
  and the ``.item()`` that brings the decision to the host), over passes that compared (the
  first pass of each branch and expert has nothing to compare with). 0 with ``off``.
  On CUDA the clock is synchronised before the draft, between draft and verify, and after
  verify, so queued GPU work is not billed to the wrong phase; on CPU it is plain wall time.
- ``full_step_seconds``: mean engine step time (``RunOutput.step_seconds``: from one step's end
  to the next, the studio's own hooks excluded) of the steps after the first whose every pass
  was fully computed, minus the comparison time measured in those steps (an uncached run would
  not compare). Falls back to the first step when no later step was fully computed.
  ``full_step_samples`` says how many steps it was measured over: when the cache reuses almost
  every pass (``fast`` on the tiny model) that is 1, and the estimate carries the noise of a
  single step time (see bench/bench_step_cache.py for self-reported vs measured speedups).
- ``uncached_estimate_seconds`` = first step + full_step_seconds x (steps - 1): what the
  denoising steps would have taken without the cache. The first step is taken as measured
  because it is always fully computed (nothing to compare with yet) and carries any first-call
  overhead that an uncached run pays too.
- ``denoise_seconds``: the actual sum of the engine's step times.
- ``estimated_speedup_factor`` = uncached_estimate_seconds / denoise_seconds: the in-run
  extrapolation. It is NOT a measurement: with ``fast`` on the tiny model every pass after the
  first step is reused, so it rests on the first step alone (which carries first-call overhead),
  and an A/B run measured it 17-19 % above the real speedup (1.84 vs 1.54 at 20 steps); on a
  loaded machine it can as well fall below.
- ``uncached_measured_seconds``: the median denoising time of the last ``baseline_runs``
  (at most :data:`BASELINE_RUNS`) ``off`` runs of the same shape (model, generated size and
  frames, steps, guidance, group size, resumed-from step) in this process
  (:data:`BASELINES`, recorded by the engine after every completed ``off`` denoise); None
  when there is none yet.
- ``speedup_factor``: what is reported. With a baseline, the measured A/B speedup
  ``uncached_measured_seconds / denoise_seconds`` (``speedup_basis`` starts with
  ``measured``); without one, ``estimated_speedup_factor`` (``speedup_basis`` starts with
  ``estimate`` and says what it rests on). Exactly 1.0 with ``off`` (basis ``off``).

Caveats: the A/B baseline is another run, so it shares this run's conditions only as far as the
machine's load did not change in between (the median of several ``off`` runs damps that); it
lives in memory, so after a restart the first cached run of a shape reports an estimate.
"""

from __future__ import annotations

import logging
import threading
import time
import statistics
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import torch


log = logging.getLogger(__name__)

Acceleration = Literal["off", "balanced", "fast"]
LEVELS: tuple[str, ...] = ("off", "balanced", "fast")
FIRST_BLOCK_CACHE = "first_block_cache"


@dataclass(frozen=True)
class CacheLevel:
    """What one ``acceleration`` level turns on."""

    name: str
    method: str | None  # FIRST_BLOCK_CACHE, or None for off
    threshold: float | None
    rationale: str

    def config(self):
        """The diffusers cache config, or None for ``off``."""
        if self.method is None:
            return None
        from diffusers import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=self.threshold)


CACHE_LEVELS: dict[str, CacheLevel] = {
    "off": CacheLevel("off", None, None, "no cache: every transformer pass computes every block"),
    "balanced": CacheLevel(
        "balanced", FIRST_BLOCK_CACHE, 0.09,
        "FirstBlockCache 0.09: Comfy-WaveSpeed's Wan default; 0.10 measured 1.85x on Wan2.2-A14B "
        "with comparable quality (0.05 never fired there)"),
    "fast": CacheLevel(
        "fast", FIRST_BLOCK_CACHE, 0.15,
        "FirstBlockCache 0.15: below the 0.2 where diffusers PR #11180 reports blurring; "
        "0.10 gave 2.5x and 0.20 3.9x on Wan2.1-1.3B"),
}


def cache_level(level: str) -> CacheLevel:
    try:
        return CACHE_LEVELS[level]
    except KeyError:
        raise ValueError(f"acceleration must be one of {', '.join(LEVELS)}") from None


# -- per-task stats ---------------------------------------------------------------------------


@dataclass
class DecoderStats:
    """One task's step-cache figures (definitions in the module docstring)."""

    level: str
    method: str | None
    threshold: float | None
    steps: int
    passes: int
    passes_reused: int
    steps_fully_computed: int
    steps_fully_reused: int
    tokens_per_pass: int
    total_tokens: int
    accepted_tokens: int
    acceptance_rate: float
    speedup_factor: float
    average_draft_time_ms: float
    average_verify_time_ms: float
    draft_passes: int
    verify_passes: int
    full_step_seconds: float
    full_step_samples: int
    uncached_estimate_seconds: float
    denoise_seconds: float
    # Defaults keep older callers (and stored results) valid; the engine always sets them.
    speedup_basis: str = "estimate: in-run extrapolation (no A/B baseline given)"
    estimated_speedup_factor: float | None = None
    uncached_measured_seconds: float | None = None
    baseline_runs: int = 0

    @property
    def uncached_seconds(self) -> float:
        """The uncached time the reported speedup rests on: measured when there is a baseline."""
        return self.uncached_measured_seconds if self.uncached_measured_seconds is not None \
            else self.uncached_estimate_seconds

    def to_dict(self, digits: int = 6) -> dict[str, Any]:
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class PassRecord:
    """One transformer forward pass as the instrumentation saw it."""

    expert: int                    # 0: pipe.transformer, 1: pipe.transformer_2
    step: int | None               # denoising step index (from the cache context / scheduler)
    tokens: int
    branch: str | None = None      # "cond" / "uncond" (cache context name)
    computed: bool = True          # False: remaining blocks skipped, cached residual reused
    draft_seconds: float | None = None
    verify_seconds: float | None = None  # None: nothing to compare with (first pass of a branch)
    _draft_started: float | None = None


def _clock(tensor: torch.Tensor | None = None) -> float:
    if tensor is not None and tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)
    return time.perf_counter()


def _hidden_states(args: tuple, kwargs: dict) -> torch.Tensor | None:
    value = kwargs.get("hidden_states", args[0] if args else None)
    return value if isinstance(value, torch.Tensor) else None


class DecoderRecorder:
    """Observes the denoisers during one run: a pass record per transformer forward, with the
    FirstBlockCache decision, the draft time and the verify time."""

    def __init__(self, level: CacheLevel, pipe):
        self.level = level
        self.pipe = pipe
        self.passes: list[PassRecord] = []
        self._current: PassRecord | None = None

    # instrumentation callbacks ----------------------------------------------------------------

    def _on_pass(self, expert: int, patch_size: tuple[int, int, int]):
        def pre_hook(module, args, kwargs):
            hidden = _hidden_states(args, kwargs)
            tokens = 0
            if hidden is not None and hidden.ndim == 5:
                b, _c, f, h, w = hidden.shape
                pt, ph, pw = patch_size
                tokens = b * (f // pt) * (h // ph) * (w // pw)
            step = getattr(self.pipe.scheduler, "step_index", None)  # None before the first step()
            self._current = PassRecord(expert=expert, step=step if step is not None else 0, tokens=tokens)
            self.passes.append(self._current)
        return pre_hook

    def _on_draft_start(self, module, args):
        if self._current is not None:
            self._current._draft_started = _clock(args[0] if args and isinstance(args[0], torch.Tensor) else None)

    def _wrap_decision(self, hook) -> None:
        """Time and record FBCHeadBlockHook's decision (instance attribute, removed with the hook)."""
        decide = hook._should_compute_remaining_blocks
        recorder = self

        @torch.compiler.disable
        def timed_decision(residual: torch.Tensor) -> bool:
            record = recorder._current
            state = hook.state_manager.get_state()
            compares = state.head_block_residual is not None
            started = _clock(residual)
            should_compute = decide(residual)
            ended = _clock(residual)
            if record is not None:
                context = hook.state_manager._context
                if context is not None:
                    record.branch = context.name
                    if context.step_index is not None:
                        record.step = int(context.step_index)
                record.computed = bool(should_compute)
                if record._draft_started is not None:
                    record.draft_seconds = started - record._draft_started
                record.verify_seconds = ended - started if compares else None
            return should_compute

        hook._should_compute_remaining_blocks = timed_decision

    # summary ----------------------------------------------------------------------------------

    def stats(self, step_seconds: list[float], baseline: list[float] | None = None) -> DecoderStats:
        """The run's stats, given the engine's per-step times (``RunOutput.step_seconds``) and
        the measured denoising times of earlier ``off`` runs of the same shape (``BASELINES``)."""
        steps = len(step_seconds)
        passes = [p for p in self.passes if p.step is None or p.step < steps] if steps else list(self.passes)
        by_step: dict[int, list[PassRecord]] = {}
        for record in passes:
            by_step.setdefault(record.step or 0, []).append(record)

        def verify_in(i: int) -> float:
            return sum(p.verify_seconds or 0.0 for p in by_step.get(i, ()))

        full = [i for i in range(1, steps) if by_step.get(i) and all(p.computed for p in by_step[i])]
        reused_steps = [i for i in range(steps) if by_step.get(i) and not any(p.computed for p in by_step[i])]
        computed_steps = [i for i in range(steps) if by_step.get(i) and all(p.computed for p in by_step[i])]
        denoise = float(sum(step_seconds))
        if steps:
            first = step_seconds[0] - verify_in(0)
            full_step = (sum(step_seconds[i] - verify_in(i) for i in full) / len(full)) if full else first
            uncached = first + full_step * (steps - 1)
        else:
            first = full_step = uncached = 0.0
        tokens_per_pass = max((p.tokens for p in passes), default=0)
        total_tokens = sum(p.tokens for p in passes)
        accepted_tokens = sum(p.tokens for p in passes if not p.computed)
        drafts = [p.draft_seconds for p in passes if p.draft_seconds is not None]
        verifies = [p.verify_seconds for p in passes if p.verify_seconds is not None]
        samples = len(full) if full else min(steps, 1)
        estimated = uncached / denoise if denoise > 0 else 1.0
        measured = statistics.median(baseline) if baseline and self.level.method is not None else None
        if self.level.method is None:
            speedup, basis = 1.0, "off: no step cache ran, nothing was skipped"
        elif measured is not None and denoise > 0:
            speedup = measured / denoise
            basis = (f"measured: A/B against the median denoising time of {len(baseline)} acceleration=off run(s) "
                     "of the same model, size, frames, steps, guidance and group size on this server")
        else:
            speedup = estimated
            basis = (f"estimate: first step + mean fully computed step ({samples} sample(s)) x (steps - 1), "
                     "extrapolated from this run; no acceleration=off run of this shape measured here yet")
        return DecoderStats(
            level=self.level.name,
            method=self.level.method,
            threshold=self.level.threshold,
            steps=steps,
            passes=len(passes),
            passes_reused=sum(1 for p in passes if not p.computed),
            steps_fully_computed=len(computed_steps),
            steps_fully_reused=len(reused_steps),
            tokens_per_pass=tokens_per_pass,
            total_tokens=total_tokens,
            accepted_tokens=accepted_tokens,
            acceptance_rate=accepted_tokens / total_tokens if total_tokens else 0.0,
            speedup_factor=speedup,
            average_draft_time_ms=1000 * sum(drafts) / len(drafts) if drafts else 0.0,
            average_verify_time_ms=1000 * sum(verifies) / len(verifies) if verifies else 0.0,
            draft_passes=len(drafts),
            verify_passes=len(verifies),
            full_step_seconds=full_step,
            full_step_samples=samples,
            uncached_estimate_seconds=uncached,
            denoise_seconds=denoise,
            speedup_basis=basis,
            estimated_speedup_factor=estimated if self.level.method is not None else 1.0,
            uncached_measured_seconds=measured,
            baseline_runs=len(baseline) if measured is not None else 0,
        )


# -- A/B baselines ----------------------------------------------------------------------------

BASELINE_RUNS = 5       # off runs kept per shape: their median is the uncached time
BASELINE_SHAPES = 64    # shapes kept (least recently used dropped first)


class UncachedBaselines:
    """Measured denoising times of completed ``off`` runs, per run shape (thread-safe, in memory).

    The engine adds every completed ``off`` denoise and looks the shape up for cached runs, so a
    cached run's ``speedup_factor`` is an A/B measurement whenever the same shape ran uncached.
    """

    def __init__(self, runs: int = BASELINE_RUNS, shapes: int = BASELINE_SHAPES) -> None:
        self._lock = threading.Lock()
        self._runs, self._shapes = runs, shapes
        self._times: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def add(self, shape: Hashable, denoise_seconds: float) -> None:
        """Record one completed uncached denoise of ``shape``."""
        with self._lock:
            times = self._times.setdefault(shape, deque(maxlen=self._runs))
            times.append(float(denoise_seconds))
            self._times.move_to_end(shape)
            while len(self._times) > self._shapes:
                self._times.popitem(last=False)

    def get(self, shape: Hashable) -> list[float]:
        """The recorded times of ``shape`` (oldest first; empty when none)."""
        with self._lock:
            return list(self._times.get(shape, ()))

    def clear(self) -> None:
        with self._lock:
            self._times.clear()


#: The process's baselines (the engine's, shared by every task).
BASELINES = UncachedBaselines()


def denoisers(pipe) -> list[torch.nn.Module]:
    """The pipeline's transformers: ``transformer`` and, for Wan2.2-A14B, ``transformer_2``."""
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]


@contextmanager
def apply(pipe, level: str) -> Iterator[DecoderRecorder]:
    """Run the body with ``level``'s step cache on every denoiser of ``pipe``, recording stats.

    On exit (normal, cancelled or failed) the cache is disabled and every instrumentation hook
    removed, so the cached pipeline object is clean for the next task. Call it while holding the
    GPU lock (the pipeline object is shared). ``off`` enables nothing; it only counts passes.
    """
    spec = cache_level(level)
    recorder = DecoderRecorder(spec, pipe)
    handles: list[Any] = []
    enabled: list[torch.nn.Module] = []
    try:
        for expert, model in enumerate(denoisers(pipe)):
            patch = tuple(model.config.patch_size)
            handles.append(model.register_forward_pre_hook(recorder._on_pass(expert, patch), with_kwargs=True))
            config = spec.config()
            if config is None:
                continue
            if model.is_cache_enabled:
                raise RuntimeError(f"a step cache ({type(model._cache_config).__name__}) is already enabled on "
                                   f"the pipeline's denoiser; disable it before using acceleration={level!r}")
            model.enable_cache(config)
            enabled.append(model)
            _instrument_first_block_cache(model, recorder, handles)
        yield recorder
    finally:
        for handle in handles:
            handle.remove()
        for model in enabled:
            model.disable_cache()


def _instrument_first_block_cache(model: torch.nn.Module, recorder: DecoderRecorder, handles: list) -> None:
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK

    head = model.blocks[0]
    hook = HookRegistry.check_if_exists_or_initialize(head).get_hook(_FBC_LEADER_BLOCK_HOOK)
    if hook is None:  # diffusers changed where the decision lives: run, but without stats
        log.warning("FirstBlockCache head hook not found on %s.blocks[0]; decoder stats unavailable",
                    type(model).__name__)
        return
    recorder._wrap_decision(hook)
    handles.append(head.register_forward_pre_hook(recorder._on_draft_start))


# -- the aggregate ----------------------------------------------------------------------------


@dataclass
class _Totals:
    tasks: int = 0
    steps: int = 0
    passes: int = 0
    passes_reused: int = 0
    total_tokens: int = 0
    accepted_tokens: int = 0
    draft_seconds: float = 0.0
    draft_passes: int = 0
    verify_seconds: float = 0.0
    verify_passes: int = 0
    denoise_seconds: float = 0.0
    uncached_estimate_seconds: float = 0.0
    uncached_seconds: float = 0.0   # measured where a task had an A/B baseline, else its estimate
    cached_tasks: int = 0
    measured_tasks: int = 0

    def add(self, s: DecoderStats) -> None:
        self.tasks += 1
        self.steps += s.steps
        self.passes += s.passes
        self.passes_reused += s.passes_reused
        self.total_tokens += s.total_tokens
        self.accepted_tokens += s.accepted_tokens
        self.draft_seconds += s.average_draft_time_ms / 1000 * s.draft_passes
        self.draft_passes += s.draft_passes
        self.verify_seconds += s.average_verify_time_ms / 1000 * s.verify_passes
        self.verify_passes += s.verify_passes
        self.denoise_seconds += s.denoise_seconds
        self.uncached_estimate_seconds += s.uncached_estimate_seconds
        self.uncached_seconds += s.uncached_seconds
        if s.method is not None:
            self.cached_tasks += 1
            self.measured_tasks += s.uncached_measured_seconds is not None

    def basis(self) -> str:
        """Whether the speedup is measured (every cached task had an A/B baseline) or not."""
        if not self.cached_tasks:
            return "off: no cached task counted"
        if self.measured_tasks == self.cached_tasks:
            return "measured"
        if not self.measured_tasks:
            return "estimate"
        return f"mixed: {self.measured_tasks} of {self.cached_tasks} cached tasks measured, the rest estimated"

    def view(self) -> dict[str, Any]:
        return {
            "total_tokens": self.total_tokens,
            "accepted_tokens": self.accepted_tokens,
            "acceptance_rate": round(self.accepted_tokens / self.total_tokens, 6) if self.total_tokens else 0.0,
            "speedup_factor": round(self.uncached_seconds / self.denoise_seconds, 4)
            if self.denoise_seconds > 0 else 1.0,
            "speedup_basis": self.basis(),
            "measured_tasks": self.measured_tasks,
            "average_draft_time_ms": round(1000 * self.draft_seconds / self.draft_passes, 4) if self.draft_passes else 0.0,
            "average_verify_time_ms": round(1000 * self.verify_seconds / self.verify_passes, 4)
            if self.verify_passes else 0.0,
            "tasks": self.tasks,
            "steps": self.steps,
            "passes": self.passes,
            "passes_reused": self.passes_reused,
            "draft_passes": self.draft_passes,
            "verify_passes": self.verify_passes,
            "denoise_seconds": round(self.denoise_seconds, 4),
            "uncached_estimate_seconds": round(self.uncached_estimate_seconds, 4),
        }


class DecoderStatsAggregate:
    """Totals of every completed task's ``DecoderStats`` since this process started.

    Thread-safe. Kept in memory only: a restart starts from zero (``since`` says when). Ratios
    are ratios of totals (token- and time-weighted), not means of per-task ratios:
    ``acceptance_rate`` = sum accepted / sum total tokens, ``speedup_factor`` = sum of uncached
    times (each task's measured A/B baseline where it had one, else its in-run estimate; see
    ``speedup_basis``) / sum of actual denoising times, averages over all timed drafts / comparisons.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since = datetime.now(timezone.utc)
        self._all = _Totals()
        self._by_level = {level: _Totals() for level in LEVELS}

    def add(self, stats: DecoderStats) -> None:
        with self._lock:
            self._all.add(stats)
            self._by_level.setdefault(stats.level, _Totals()).add(stats)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            body = self._all.view()
            body["since"] = self._since.isoformat(timespec="seconds")
            body["by_level"] = {level: totals.view() for level, totals in self._by_level.items()}
        body["levels"] = {name: {"method": lv.method, "threshold": lv.threshold, "rationale": lv.rationale}
                          for name, lv in CACHE_LEVELS.items()}
        return body

