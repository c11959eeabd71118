"""Time estimates for a plan, from measured rates that improve as tasks complete.

estimate = load (if the model is not resident) + steps x seconds per step + output encode time.
seconds per step = (seconds per step per 1000 latent tokens) x tokens, the rate being the moving
average of what this machine measured for the model (``timings`` table). Until a model has run
here, the rate is a prior: for the real models the H200 figure in
``shared/research/gpu_anchor_h200.md`` (Wan2.1-1.3B, 1.244 s per CFG step at 32,760 tokens),
scaled by parameter count; for ``tiny``, what ``bench/bench_stack.py`` measured on the 2-core
CPU (bench/RESULTS.md). Priors are labelled as such in the estimate's ``basis``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
_REAL_PRIOR_ENCODE = 0.02
_REAL_PRIOR_LOAD = 60.0


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


@dataclass(frozen=True)
class Estimate:
    seconds: float
    step_seconds: float
    encode_seconds: float
    load_seconds: float
    basis: str  # "measured" or "prior"


class Estimator:
    """Estimates from the store's measured rates (falling back to documented priors)."""

    def __init__(self, store: TaskStore):
        self.store = store

    def rate(self, spec: ModelSpec, name: str) -> tuple[float, bool]:
        measured = self.store.timing(spec.id, name)
        return (measured, True) if measured is not None else (_prior(spec, name), False)

    def estimate(self, spec: ModelSpec, plan: GenerationPlan, model_loaded: bool) -> Estimate:
        step_rate, measured = self.rate(spec, STEP_RATE)
        encode_rate, _ = self.rate(spec, ENCODE_RATE)
        load, _ = self.rate(spec, LOAD_SECONDS)
        step_seconds = step_rate * latent_tokens(spec, plan) / 1000
        megapixels = plan.out_frames * plan.out_width * plan.out_height / 1e6
        encode = encode_rate * megapixels
        load = 0.0 if model_loaded else load
        total = load + step_seconds * plan.num_inference_steps + encode
        return Estimate(total, step_seconds, encode, load, "measured" if measured else "prior")

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
