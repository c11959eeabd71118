"""Time estimates for a plan, from measured rates that improve as tasks complete.

There is ONE cost model, ``studio.models.cost`` (``estimate_time``; its docstring has the
formulas and the priors):

estimate = load (if the model is not resident) + steps x step time + output decode/encode time,
step time = the plan's FLOPs per step / this device's FLOP/s for real models (measured here for
the model, else measured here for another real model, else the H200 prior), and for ``tiny``
(CPU, overhead-bound) seconds per step per 1000 latent tokens x tokens.

This module applies it to the engine's plans and records what every finished run measured
(the worker calls ``record``), so the rates are moving averages of this machine's runs.

Every estimate says what it rests on: ``basis`` is ``prior`` or ``measured`` and ``samples``
how many measured runs the step rate averages (0 for a prior); the task status shows both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from studio.engine.plan import GenerationPlan
from studio.engine.request import GenerationSpec
from studio.engine.spec import EditSpec, TaskSpec
from studio.models.catalog import GENERATION_CATALOG, ModelSpec
from studio.models.cost.architectures import ARCHITECTURES, architecture_of
from studio.models.cost.timing import (
    EAGER,
    ENCODE_RATE,
    LOAD_SECONDS,
    STEP_RATE,
    WARMUP_SECONDS,
    Acceleration,
    CostInputs,
    Rates,
    ServerModels,
    TimingStore,
    device_throughput,
    estimate_time,
    latent_tokens,
    rate_key,
    timing_samples,
)


@dataclass(frozen=True)
class Estimate:
    seconds: float
    step_seconds: float
    encode_seconds: float
    load_seconds: float
    basis: str  # "measured" or "prior": what the step time rests on
    samples: int = 0  # measured runs the step rate averages (0 for a prior)
    source: str = ""  # in words, e.g. "measured here for wan2.1-t2v-14b (...)" or "prior (H200): ..."


class Estimator(Rates):
    """Estimates from the store's measured rates (falling back to documented priors), and the
    recording of every finished run's rates. With the server's loader (``models``), estimates
    follow its speed settings and compiled shapes, and the memory profile a model has or would
    get here."""

    store: TimingStore

    def __init__(self, store: TimingStore | None, models: "ServerModels | None" = None):
        super().__init__(store)
        self.models = models

    def estimate(self, spec: ModelSpec, plan: GenerationPlan, model_loaded: bool, profile: str | None = None
                 ) -> Estimate:
        """The orchestrator's estimate of ``plan`` on ``spec`` (the one cost model), with its basis;
        ``profile`` None: the one the model has here (or would be loaded with)."""
        if self.models is None:
            inputs = CostInputs(self, spec.id if model_loaded else None)
        else:
            inputs = CostInputs.here(self, self.models, loaded=model_loaded)
        profile = profile or (self.models.profile_for(spec.id) if self.models is not None else "gpu")
        time = estimate_time(inputs, spec, plan, profile)
        if time.throughput is None:  # tiny: the engine's own per-token rate
            _rate, measured = self.rate(spec, STEP_RATE)
            samples = timing_samples(self.store, spec.id, STEP_RATE) if measured else 0
            basis = "measured" if measured else "prior"
            source = (f"measured here for {spec.id} ({samples} run(s))" if measured
                      else f"prior for {spec.id} (bench/RESULTS.md)")
        else:
            basis, samples, source = time.throughput.basis, time.throughput.samples, time.throughput.source
        return Estimate(time.seconds, time.step_seconds, time.encode_seconds, time.load_seconds, basis, samples, source)

    def status_basis(self, task, spec: TaskSpec | None) -> dict:
        """``estimate_basis`` / ``estimate_samples`` of a task's status: what its estimate rests
        on, ``prior`` or ``measured`` with the runs averaged (empty once the task ended).

        Generation tasks (``spec`` a ``GenerationSpec``): the step rate of the one cost model
        (measured here for the model, for another real model, or the prior); video-side tasks
        (an ``EditSpec``): the seconds-per-frame rate of their kind and path
        (``studio.genius.edit_submit.estimate_seconds``)."""
        if task.is_terminal:
            return {}
        if isinstance(spec, GenerationSpec):
            model = GENERATION_CATALOG.get(spec.model)
            if model is None or model.id not in ARCHITECTURES and model.architecture not in ARCHITECTURES:
                return {}
            if architecture_of(model).on_cpu:  # tiny: the engine's own per-token rate
                measured = self.store.timing(model.id, STEP_RATE) is not None
                samples = timing_samples(self.store, model.id, STEP_RATE) if measured else 0
                return {"estimate_basis": "measured" if measured else "prior", "estimate_samples": samples}
            profile = self.models.profile_for(model.id) if self.models is not None else "gpu"
            acceleration = self.models.acceleration(model.id, profile) if self.models is not None else EAGER
            throughput = device_throughput(self.store, model.id, acceleration, profile)
            return {"estimate_basis": throughput.basis, "estimate_samples": throughput.samples}
        from studio.engine.edit import FRAME_RATE, timing_key

        key = timing_key(task.kind, spec.path if isinstance(spec, EditSpec) else "classical")
        samples = timing_samples(self.store, key, FRAME_RATE)
        return {"estimate_basis": "measured" if samples else "prior", "estimate_samples": samples}

    def record(self, spec: ModelSpec, plan: GenerationPlan, mean_step_seconds: float | None,
               encode_seconds: float | None, load_seconds: float | None, warmup_seconds: float | None = None,
               acceleration: Acceleration = EAGER, profile: str = "gpu") -> None:
        """Fold one finished run's measurements (those not None) into the model's rates;
        ``mean_step_seconds`` is a steady step's (``split_warmup``), ``warmup_seconds`` a cold
        compiled run's first-call cost; both are learnt under the run's speed settings and memory
        profile (``rate_key``)."""
        tokens = latent_tokens(spec, plan)
        if mean_step_seconds and tokens:
            self.store.record_timing(rate_key(spec.id, acceleration, profile), STEP_RATE,
                                     mean_step_seconds / tokens * 1000)
        if warmup_seconds is not None:
            self.store.record_timing(rate_key(spec.id, acceleration), WARMUP_SECONDS, warmup_seconds)
        megapixels = plan.out_frames * plan.out_width * plan.out_height / 1e6
        if encode_seconds is not None and megapixels:
            self.store.record_timing(spec.id, ENCODE_RATE, encode_seconds / megapixels)
        if load_seconds is not None:
            self.store.record_timing(spec.id, LOAD_SECONDS, load_seconds)


def split_warmup(step_seconds: Sequence[float], cold: bool) -> tuple[float, float | None]:
    """(the run's total step seconds less its first-call compile, that compile's seconds).

    A cold compiled run (``LoadedModel.is_cold``) compiles inside its first step: that step's
    excess over the median of the others is the compile (None for a warm run, or one too short to
    tell). Taking it out keeps the learnt step rate a steady one; the compile is learnt apart."""
    total = float(sum(step_seconds))
    if not cold or len(step_seconds) < 3:
        return total, None
    warmup = max(0.0, step_seconds[0] - float(np.median(step_seconds[1:])))
    return total - warmup, warmup
