"""One task's step-cache figures (``DecoderStats``) and the A/B baselines they compare against.

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

import statistics
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from typing import Any

from studio.engine.step_cache.levels import CacheLevel


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


def summarize(level: CacheLevel, records: list[PassRecord], step_seconds: list[float],
              baseline: list[float] | None = None) -> DecoderStats:
    """One run's stats from its pass records (``DecoderRecorder.passes``), the engine's per-step
    times (``RunOutput.step_seconds``) and the measured denoising times of earlier ``off`` runs of
    the same shape (``BASELINES``); every figure is defined in the module docstring."""
    steps = len(step_seconds)
    passes = [p for p in records if p.step is None or p.step < steps] if steps else list(records)
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
    measured = statistics.median(baseline) if baseline and level.method is not None else None
    if level.method is None:
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
        level=level.name,
        method=level.method,
        threshold=level.threshold,
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
        estimated_speedup_factor=estimated if level.method is not None else 1.0,
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
