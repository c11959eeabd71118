"""Time estimates for a plan, from measured rates that improve as tasks complete.

There is ONE cost model: the Model Orchestrator's (``studio.genius.orchestrator.estimate_time``):

estimate = load (if the model is not resident) + steps x step time + output decode/encode time,
step time = the plan's FLOPs per step / this device's FLOP/s for real models (measured here for
the model, else measured here for another real model, else the H200 prior), and for ``tiny``
(CPU, overhead-bound) seconds per step per 1000 latent tokens x tokens.

The rates are moving averages of what this machine measured (``timings`` table; the worker
records every finished run). Until one was measured the rate is a prior: the H200 anchor of
``shared/research/gpu_anchor_h200.md`` (Wan2.1-1.3B, 1.244 s per CFG step at 32,760 tokens;
its VAE decode + postprocess, 3.10 s for 480x832x81, for the decode/encode rate), and for
``tiny`` what ``bench/bench_stack.py`` measured on the 2-core CPU (bench/RESULTS.md). The load
time of a real model has no anchor: its prior (60 s) is an assumption until the first load.

Every estimate says what it rests on: ``basis`` is ``prior`` or ``measured`` and ``samples``
how many measured runs the step rate averages (0 for a prior); the task status shows both.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from types import SimpleNamespace

from studio.engine.plan import GenerationPlan
from studio.jobs.store import TaskStore
from studio.models.catalog import TINY, ModelSpec

STEP_RATE = "step_s_per_ktoken"     # seconds per CFG step per 1000 latent tokens
ENCODE_RATE = "encode_s_per_mpx"    # seconds to decode+encode one megapixel of output frames
LOAD_SECONDS = "load_s"

_H200_13B_STEP_S_PER_KTOKEN = 1.244 / 32.76
_PRIORS = {
    TINY: {STEP_RATE: 0.05, ENCODE_RATE: 0.02, LOAD_SECONDS: 2.0},
}
# H200, plain diffusers, Wan2.1 VAE decode + postprocess of 480x832x81: 3.10 s (gpu_anchor_h200.md).
_REAL_PRIOR_ENCODE = 3.10 / (832 * 480 * 81 / 1e6)
_REAL_PRIOR_LOAD = 60.0  # an assumption, not a measurement: replaced by the first measured load


def latent_tokens(spec: ModelSpec, plan: GenerationPlan) -> int:
    """Transformer sequence length: latent frames x (H / stride) x (W / stride), where the
    stride (VAE downsampling x patch size) equals the model's size multiple."""
    stride = spec.size_multiple
    return plan.latent_frames * (plan.gen_height // stride) * (plan.gen_width // stride)


def _prior(spec: ModelSpec, name: str) -> float:
    if spec.id in _PRIORS:
        return _PRIORS[spec.id][name]
    return {
        STEP_RATE: _H200_13B_STEP_S_PER_KTOKEN * spec.params_b / 1.3,
        ENCODE_RATE: _REAL_PRIOR_ENCODE,
        LOAD_SECONDS: _REAL_PRIOR_LOAD,
    }[name]


def timing_samples(store: TaskStore | None, key: str, name: str) -> int:
    """How many measurements the store's moving average ``(key, name)`` folds (0: none).

    Read through a separate read-only connection, as the orchestrator reads the store (WAL)."""
    path = getattr(store, "path", None)
    if path is None:
        return 0
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)) as db:
            row = db.execute("SELECT samples FROM timings WHERE model = ? AND name = ?", (key, name)).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Estimate:
    seconds: float
    step_seconds: float
    encode_seconds: float
    load_seconds: float
    basis: str  # "measured" or "prior": what the step time rests on
    samples: int = 0  # measured runs the step rate averages (0 for a prior)
    source: str = ""  # in words, e.g. "measured here for wan2.1-t2v-14b (...)" or "prior (H200): ..."


class Estimator:
    """Estimates from the store's measured rates (falling back to documented priors)."""

    def __init__(self, store: TaskStore):
        self.store = store

    def rate(self, spec: ModelSpec, name: str) -> tuple[float, bool]:
        measured = self.store.timing(spec.id, name)
        return (measured, True) if measured is not None else (_prior(spec, name), False)

    def estimate(self, spec: ModelSpec, plan: GenerationPlan, model_loaded: bool, profile: str = "gpu") -> Estimate:
        """The orchestrator's estimate of ``plan`` on ``spec`` (the one cost model), with its basis."""
        from studio.genius.orchestrator import estimate_time  # the orchestrator builds on this module

        loaded = SimpleNamespace(loaded_model=spec.id if model_loaded else None)
        time = estimate_time(SimpleNamespace(store=self.store, estimator=self, models=loaded), spec, plan, profile)
        if time.throughput is None:  # tiny: the engine's own per-token rate
            _rate, measured = self.rate(spec, STEP_RATE)
            samples = timing_samples(self.store, spec.id, STEP_RATE) if measured else 0
            basis = "measured" if measured else "prior"
            source = (f"measured here for {spec.id} ({samples} run(s))" if measured
                      else f"prior for {spec.id} (bench/RESULTS.md)")
        else:
            basis, samples, source = time.throughput.basis, time.throughput.samples, time.throughput.source
        return Estimate(time.seconds, time.step_seconds, time.encode_seconds, time.load_seconds, basis, samples, source)

    def status_basis(self, task) -> dict:
        """``estimate_basis`` / ``estimate_samples`` of a task's status: what its estimate rests
        on, ``prior`` or ``measured`` with the runs averaged (empty once the task ended).

        Generation tasks: the step rate of the one cost model (measured here for the model, for
        another real model, or the prior); video-side tasks: the seconds-per-frame rate of their
        kind and path (``studio.engine.edit.estimate_seconds``)."""
        if task.is_terminal:
            return {}
        request = task.request or {}
        if task.kind == "t2v":
            from studio.models.catalog import CATALOG

            spec = CATALOG.get(request.get("model"))
            if spec is None:
                return {}
            if spec.id in _PRIORS:  # tiny: the engine's own per-token rate
                measured = self.store.timing(spec.id, STEP_RATE) is not None
                samples = timing_samples(self.store, spec.id, STEP_RATE) if measured else 0
                return {"estimate_basis": "measured" if measured else "prior", "estimate_samples": samples}
            from studio.genius.orchestrator import device_throughput  # the one cost model

            throughput = device_throughput(self.store, spec.id)
            return {"estimate_basis": throughput.basis, "estimate_samples": throughput.samples}
        from studio.engine.edit import FRAME_RATE, timing_key

        key = timing_key(task.kind, request.get("path", "classical"))
        samples = timing_samples(self.store, key, FRAME_RATE)
        return {"estimate_basis": "measured" if samples else "prior", "estimate_samples": samples}

    def record(self, spec: ModelSpec, plan: GenerationPlan, mean_step_seconds: float | None,
               encode_seconds: float | None, load_seconds: float | None) -> None:
        """Fold one finished run's measurements (those not None) into the model's rates."""
        tokens = latent_tokens(spec, plan)
        if mean_step_seconds and tokens:
            self.store.record_timing(spec.id, STEP_RATE, mean_step_seconds / tokens * 1000)
        megapixels = plan.out_frames * plan.out_width * plan.out_height / 1e6
        if encode_seconds is not None and megapixels:
            self.store.record_timing(spec.id, ENCODE_RATE, encode_seconds / megapixels)
        if load_seconds is not None:
            self.store.record_timing(spec.id, LOAD_SECONDS, load_seconds)
