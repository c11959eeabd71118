"""The time model: how long a planned run takes on this device, from measured rates or priors.

**Rates.** Measured rates are moving averages the worker records after every run in the task
store's ``timings`` table (``step_s_per_ktoken``: seconds per CFG step per 1000 latent tokens,
an uncached figure; ``encode_s_per_mpx``: decode + encode seconds per output megapixel;
``load_s``). Until one was measured the rate is a prior: the H200 anchor of
``shared/research/gpu_anchor_h200.md`` (Wan2.1-1.3B, 1.244 s per CFG step at 32,760 tokens;
its VAE decode + postprocess, 3.10 s for 480x832x81), and for ``tiny`` what
``bench/bench_stack.py`` measured on the 2-core CPU (bench/RESULTS.md). The load time of a real
model has no anchor: its prior (60 s) is an assumption until the first load.

**Time.** ``total = load (when the model is not resident) + first-run compile (a compiled model
that has not run this shape yet) + steps x step time + offload transfers + decode/encode``. A
long clip generated as a chain of windows (``studio.engine.long_video``) counts ``passes x
steps`` at the longest window's step time, one transfer set per pass, and the
load of its continuation model (none when the model continues itself).

- FLOPs per transformer forward (``shared/research/flops.py``): linear ``2 L (6 d^2 + 2 d ffn)``
  per layer plus cross-attention K/V on 512 text tokens ``2 x 512 x 2 d^2``, self-attention
  ``4 L^2 d``, cross-attention ``4 L x 512 x d``, times layers. A step is 2 forwards with
  classifier-free guidance (guidance > 1), else 1 (A14B: one expert per step, same cost).
- step time = FLOPs per step / the device's throughput (FLOP/s), chosen in this order:
  1. measured for this model here: the engine's recorded rate (``timings`` table,
     ``step_s_per_ktoken``, an uncached moving average) turned back into FLOP/s at the token
     count and guidance of the model's most recent completed task (its native plan when none
     is on record); every completed task moves it;
  2. measured here for another real model (the mean of their FLOP/s): at these token counts
     the achieved FLOP/s hardly depends on the model (H200: 447-522 TFLOP/s from 1.3B to 14B);
  3. prior: the H200's plain-diffusers pipeline step (Wan2.1-1.3B, 480x832x81, 1.244 s per CFG
     step, ``gpu_anchor_h200.md``) = 455 TFLOP/s, labelled "prior (H200)" in the reasons, times
     the speed-up of the settings the model runs with (``Acceleration``, from
     ``studio.models.speed``), as the same H200 run measured them on the same shapes: regional
     compile 1.249 -> 1.046 s (x1.19), fp8 + compile 0.976 s (x1.28), fp8 eager 1.527 s (x0.82).
  Measured rates (1 and 2) need no factor: each is learnt under its settings (``rate_key``: the
  model id with ``+compile``, ``+fp8``, ``@group_offload``), and only rates of the settings a run
  will have are read for it; other settings' runs never blend in.
- first-run compile: a compiled transformer compiles at its first call of a shape. Its cost is
  what this machine measured for the model (``warmup_s``: the first step's excess over the
  steady ones, recorded by the engine), else the H200's first call less a warm step (regional
  compile 11.9 s, fp8 + compile 123 s), once per transformer (A14B: two). None when the
  resident model already ran the plan's shape (``CostInputs.warm``).
  With group offload the weights cross PCIe every forward pass, overlapped with compute:
  ``max(compute, weight bytes / 31.5 GB/s)`` (PCIe 4.0 x16 nominal; a lower bound on transfer
  time); with model offload each component crosses once per video; with text-encoder offload
  the encoder's weights cross once per task.
- ``tiny`` runs on the CPU and is overhead-bound, not FLOP-bound: its step time is its measured
  seconds per step per 1000 tokens x tokens (or that rate's prior).
- load and decode/encode time: the measured rates (``load_s``, ``encode_s_per_mpx``), or their
  documented priors.

The weight bytes and the offload profiles are those of ``studio.models.cost.vram``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from studio.errors import StorageFull, StoreUnavailable
from studio.models.catalog import CATALOG, TINY, ModelSpec, get_spec
from studio.models.cost.architectures import ARCHITECTURES, TEXT_TOKENS, Architecture, architecture_of
from studio.models.cost.vram import PROFILES, STUDIO_SETUP, PipelineSetup


class PlannedRun(Protocol):
    """What the cost model reads of a run's plan (``studio.engine.plan.GenerationPlan``)."""

    model: str
    gen_width: int
    gen_height: int
    gen_frames: int
    latent_frames: int
    out_width: int
    out_height: int
    out_frames: int
    num_inference_steps: int
    guidance_scale: float
    passes: int  # model passes (a long clip's windows; each has the shape above at most)
    total_steps: int  # denoising steps of the whole run (every window's, or every chunk's)
    continuation_model: str | None  # the model of the passes after the first


class TimingStore(Protocol):
    """Where measured rates live (the task store's ``timings`` table)."""

    path: Path

    def timing(self, model: str, name: str) -> float | None: ...

    def timing_samples(self, model: str, name: str) -> int: ...


# -- rates: measured here, or documented priors ---------------------------------------------------

STEP_RATE = "step_s_per_ktoken"     # seconds per CFG step per 1000 latent tokens
ENCODE_RATE = "encode_s_per_mpx"    # seconds to decode+encode one megapixel of output frames
LOAD_SECONDS = "load_s"
WARMUP_SECONDS = "warmup_s"         # a compiled model's first run of a shape: seconds beyond its steady steps

_H200_13B_STEP_S_PER_KTOKEN = 1.244 / 32.76
_PRIORS = {
    TINY: {STEP_RATE: 0.05, ENCODE_RATE: 0.02, LOAD_SECONDS: 2.0},
}
# H200, plain diffusers, Wan2.1 VAE decode + postprocess of 480x832x81: 3.10 s (gpu_anchor_h200.md).
_REAL_PRIOR_ENCODE = 3.10 / (832 * 480 * 81 / 1e6)
_REAL_PRIOR_LOAD = 60.0  # an assumption, not a measurement: replaced by the first measured load


@dataclass(frozen=True)
class Acceleration:
    """The speed settings a run's step time depends on (``studio.models.speed`` chooses them)."""

    compile: bool = False  # regional compile of the transformer blocks
    fp8: bool = False      # torchao fp8 linear layers in the blocks

    def words(self) -> str:
        return " + ".join(n for n, on in (("regional compile", self.compile), ("fp8", self.fp8)) if on) or "eager"


EAGER = Acceleration()
#: H200, Wan2.1-1.3B transformer, 480x832x81, one CFG step (two forwards), each variant measured
#: in the same run (``gpu_anchor_h200.md``, second run): the step, and for the compiled variants
#: the first call, compile included.
H200_VARIANT_STEP_S = {EAGER: 1.249, Acceleration(compile=True): 1.046, Acceleration(fp8=True): 1.527,
                       Acceleration(compile=True, fp8=True): 0.976}
H200_FIRST_CALL_S = {Acceleration(compile=True): 12.9, Acceleration(compile=True, fp8=True): 124.0}


def prior_speedup(acceleration: Acceleration) -> float:
    """How much faster than eager a step runs with ``acceleration`` (the H200 ratio, same shapes)."""
    return H200_VARIANT_STEP_S[EAGER] / H200_VARIANT_STEP_S[acceleration]


def prior_warmup_seconds(acceleration: Acceleration) -> float:
    """A compiled transformer's first-call cost beyond a warm step (H200; 0 when eager)."""
    if not acceleration.compile:
        return 0.0
    return H200_FIRST_CALL_S[acceleration] - H200_VARIANT_STEP_S[acceleration]


def run_shape(plan: "PlannedRun", rows: int = 1) -> tuple[int, int, int, int]:
    """What a compiled transformer compiles for: (rows batched, frames, height, width)."""
    return rows, plan.gen_frames, plan.gen_height, plan.gen_width


def latent_tokens(spec: ModelSpec, plan: "PlannedRun") -> int:
    """Transformer sequence length: latent frames x (H / stride) x (W / stride), where the
    stride (VAE downsampling x patch size) equals the model's size multiple."""
    stride = spec.size_multiple
    return plan.latent_frames * (plan.gen_height // stride) * (plan.gen_width // stride)


def prior_rate(spec: ModelSpec, name: str) -> float:
    """The documented prior of a rate, used until this machine measured it (see the docstring)."""
    for key in (spec.id, spec.architecture):  # a tiny variant starts from tiny's priors
        if key in _PRIORS:
            return _PRIORS[key][name]
    return {
        STEP_RATE: _H200_13B_STEP_S_PER_KTOKEN * spec.params_b / 1.3,
        ENCODE_RATE: _REAL_PRIOR_ENCODE,
        LOAD_SECONDS: _REAL_PRIOR_LOAD,
    }[name]


def timing_samples(store: "TimingStore | None", key: str, name: str) -> int:
    """How many measurements the store's moving average ``(key, name)`` folds (0: none)."""
    return store.timing_samples(key, name) if store is not None else 0


class Rates:
    """A model's rates from the store's measurements, falling back to the documented priors."""

    def __init__(self, store: TimingStore | None):
        self.store = store

    def rate(self, spec: ModelSpec, name: str) -> tuple[float, bool]:
        """(value, measured): the moving average measured here, else the prior."""
        measured = self.store.timing(spec.id, name) if self.store is not None else None
        return (measured, True) if measured is not None else (prior_rate(spec, name), False)


# -- FLOPs and time -----------------------------------------------------------------------------

PCIE_BYTES_PER_S = 31.5e9              # PCIe 4.0 x16, nominal


def flops_per_forward(arch: Architecture, tokens: int) -> float:
    """One transformer forward pass over ``tokens`` latent tokens (``shared/research/flops.py``)."""
    d, ffn, n = arch.dim, arch.ffn_dim, arch.num_layers
    linear = 2 * (6 * d * d + 2 * d * ffn) * tokens * n + 2 * (2 * d * d) * TEXT_TOKENS * n
    self_attention = 4 * tokens * tokens * d * n
    cross_attention = 4 * tokens * TEXT_TOKENS * d * n
    return float(linear + self_attention + cross_attention)


def cfg_passes(guidance_scale: float) -> int:
    """Transformer passes per step: diffusers runs the unconditional pass only when guidance > 1."""
    return 2 if guidance_scale > 1.0 else 1


def flops_per_step(arch: Architecture, tokens: int, guidance_scale: float) -> float:
    """FLOPs of one denoising step: a forward pass per CFG branch."""
    return cfg_passes(guidance_scale) * flops_per_forward(arch, tokens)


#: The H200 anchor: plain diffusers WanPipeline, Wan2.1-1.3B bf16, 480x832x81, 1.244 s per CFG step.
H200_ANCHOR = {"model": "wan2.1-t2v-1.3b", "tokens": 32_760, "step_seconds": 1.244, "guidance_scale": 5.0}
H200_PRIOR_FLOP_S = flops_per_step(ARCHITECTURES[H200_ANCHOR["model"]], H200_ANCHOR["tokens"],
                                   H200_ANCHOR["guidance_scale"]) / H200_ANCHOR["step_seconds"]


@dataclass(frozen=True)
class Throughput:
    flop_per_s: float
    basis: str        # "measured" or "prior"
    source: str       # words for the reasons
    samples: int = 0  # measured runs behind it (summed over the models it comes from; 0: prior)


def _reference_plan(store, spec: ModelSpec) -> tuple[int, float, str]:
    """(tokens, guidance, what) of the model's most recent completed task, or of its native plan.

    Read through the store (``TaskStore.recent_results``: its own connection pool, no lock held
    between reads); a store that cannot answer means the native plan."""
    recent_results = getattr(store, "recent_results", None)
    if recent_results is not None:
        try:
            for result in recent_results(50):
                meta = (result or {}).get("metadata") or {}
                if meta.get("model") != spec.id:
                    continue
                w, h, f = meta["generated_width"], meta["generated_height"], meta["generated_frames"]
                stride = spec.size_multiple
                tokens = ((int(f) - 1) // 4 + 1) * (int(h) // stride) * (int(w) // stride)
                return tokens, float(meta.get("guidance_scale", 5.0)), f"its last run ({w}x{h}x{f})"
        except (StorageFull, StoreUnavailable, KeyError, TypeError, ValueError):
            pass
    stride = spec.size_multiple
    native = ((spec.pass_frames - 1) // 4 + 1) * (spec.native_height // stride) * (spec.native_width // stride)
    size = f"{spec.native_width}x{spec.native_height}x{spec.pass_frames}"
    return native, spec.default_guidance, f"its native size ({size})"


def rate_key(model_id: str, acceleration: Acceleration = EAGER, profile: str = "gpu") -> str:
    """The timings row a model's step rate (and compile cost) is learnt under: the model id, with
    the speed settings (``+compile``, ``+fp8``) and ``@group_offload`` when the weights stream in
    every step. Runs with other settings have other step times and must not blend in."""
    settings = "".join(tag for tag, on in (("+compile", acceleration.compile), ("+fp8", acceleration.fp8)) if on)
    return model_id + settings + ("@group_offload" if profile == "group_offload" else "")


def _measured_flop_s(store, spec: ModelSpec, key: str) -> tuple[float, str] | None:
    rate = store.timing(key, STEP_RATE) if store is not None else None
    if rate is None or rate <= 0 or spec.id not in ARCHITECTURES:
        return None
    tokens, guidance, what = _reference_plan(store, spec)
    step_seconds = rate * tokens / 1000
    return flops_per_step(ARCHITECTURES[spec.id], tokens, guidance) / step_seconds, what


def device_throughput(store, model_id: str, acceleration: Acceleration = EAGER, profile: str = "gpu") -> Throughput:
    """This device's FLOP/s for ``model_id`` run with ``acceleration`` in ``profile``: measured
    for it with these settings (``rate_key``; with group offload, its streaming runs first, else
    its resident ones, which the transfer bound then caps), measured for other real models with
    these settings (resident runs only), or the H200 prior made faster by ``acceleration`` as
    measured there (see the module docstring)."""
    with_settings = "" if acceleration == EAGER else f" with {acceleration.words()}"
    own_keys = [rate_key(model_id, acceleration, profile)]
    if profile == "group_offload":
        own_keys.append(rate_key(model_id, acceleration))
    for key in own_keys:
        own = _measured_flop_s(store, CATALOG[model_id], key)
        if own is not None:
            return Throughput(own[0], "measured", f"measured here for {model_id}{with_settings} (engine step "
                              f"times, converted at {own[1]})", timing_samples(store, key, STEP_RATE))
    others = []
    for other in ARCHITECTURES:
        if other in (TINY, model_id) or other not in CATALOG:
            continue
        measured = _measured_flop_s(store, CATALOG[other], rate_key(other, acceleration))
        if measured is not None:
            others.append((other, measured[0]))
    if others:
        mean = sum(flop_s for _, flop_s in others) / len(others)
        names = ", ".join(m for m, _ in others)
        return Throughput(mean, "measured", f"measured here on {names}{with_settings} (same GPU, FLOP/s carried "
                          "over)", sum(timing_samples(store, rate_key(m, acceleration), STEP_RATE) for m, _ in others))
    source = "prior (H200): Wan2.1-1.3B plain diffusers, 1.244 s per CFG step at 480x832x81"
    speedup = prior_speedup(acceleration)
    if acceleration != EAGER:
        source += f", x{speedup:.2f} with {acceleration.words()} (H200, same shapes)"
    return Throughput(H200_PRIOR_FLOP_S * speedup, "prior", source)


@dataclass(frozen=True)
class TimeEstimate:
    seconds: float
    step_seconds: float
    steps: int
    load_seconds: float
    encode_seconds: float
    transfer_seconds: float  # weights crossing PCIe, the whole run
    flops_per_step: float
    throughput: Throughput | None
    warmup_seconds: float = 0.0  # a compiled model's first run of this shape


class ServerModels(Protocol):
    """What a time estimate reads of the server's loader (``studio.models.loader.ModelCache``)."""

    @property
    def loaded_model(self) -> str | None: ...

    def acceleration(self, model_id: str, profile: str) -> Acceleration: ...

    def is_warm(self, model_id: str, plan: "PlannedRun") -> bool: ...

    def profile_for(self, model_id: str) -> str: ...

    def fastest_allowed(self, model_id: str) -> str: ...

    def memory_setup(self) -> PipelineSetup: ...


def _eager(model_id: str, profile: str) -> Acceleration:
    return EAGER


def _cold(model_id: str, plan: "PlannedRun") -> bool:
    return False


def _every_profile(model_id: str) -> str:
    return PROFILES[0]


@dataclass(frozen=True)
class CostInputs:
    """What a time estimate reads of this server: its rates (measured in the task store, else
    the priors), which model is resident (loading that one costs nothing), the speed settings a
    model runs with in a memory profile, and whether a compiled model already ran a plan's shape
    (then it pays no compile), the precisions its memory estimates assume, and the fastest memory
    profile a model may still take on this device (a faster one ran out of memory here). Without a
    loader: eager, nothing warm, the default precisions, every profile."""

    rates: Rates
    loaded_model: str | None = None
    acceleration: Callable[[str, str], Acceleration] = _eager
    warm: Callable[[str, "PlannedRun"], bool] = _cold
    setup: PipelineSetup = STUDIO_SETUP  # precisions of the weights and the VAE (fp8 blocks, bf16 VAE)
    fastest_allowed: Callable[[str], str] = _every_profile

    @classmethod
    def of(cls, store: TimingStore | None, loaded_model: str | None = None) -> "CostInputs":
        """The inputs from a task store's measurements (None: the priors alone)."""
        return cls(Rates(store), loaded_model)

    @classmethod
    def here(cls, rates: Rates, models: ServerModels, loaded: bool = True) -> "CostInputs":
        """The inputs of a server: its rates and its loader's state (``loaded=False``: estimate as
        if no model were resident)."""
        return cls(rates, models.loaded_model if loaded else None, models.acceleration, models.is_warm,
                   models.memory_setup(), models.fastest_allowed)


def estimate_time(inputs: CostInputs, spec: ModelSpec, plan: "PlannedRun", profile: str = "gpu",
                  throughput: Throughput | None = None) -> TimeEstimate:
    """Seconds to generate ``plan`` with ``spec`` on this device (see the module docstring)."""
    rates, store = inputs.rates, inputs.rates.store
    load = 0.0 if inputs.loaded_model == spec.id else rates.rate(spec, LOAD_SECONDS)[0]
    if plan.continuation_model not in (None, spec.id):  # a chain loads its continuation model after window 1
        load += rates.rate(get_spec(plan.continuation_model), LOAD_SECONDS)[0]
    encode = rates.rate(spec, ENCODE_RATE)[0] * plan.out_frames * plan.out_width * plan.out_height / 1e6
    arch = architecture_of(spec)
    tokens = latent_tokens(spec, plan)
    step_flops = flops_per_step(arch, tokens, plan.guidance_scale)
    steps = plan.total_steps  # every window (or chunk) at the longest one's step time
    if arch.on_cpu:  # overhead-bound: the engine's own per-token rate
        rate, _ = rates.rate(spec, STEP_RATE)
        step = rate * tokens / 1000
        return TimeEstimate(load + step * steps + encode, step, steps, load, encode, 0.0, step_flops, None)
    acceleration = inputs.acceleration(spec.id, profile)
    tp = throughput or device_throughput(store, spec.id, acceleration, profile)
    step = step_flops / tp.flop_per_s
    transfer = 0.0
    setup = inputs.setup
    text_weights = arch.text_encoder.params * setup.text_bytes
    if profile == "group_offload":  # weights stream in every pass, overlapped with compute
        passes = cfg_passes(plan.guidance_scale)
        per_pass = max(step / passes, setup.transformer_bytes(arch) / PCIE_BYTES_PER_S)
        step = per_pass * passes
    elif profile == "model_cpu_offload":  # each component crosses once per video
        weights = setup.transformer_bytes(arch) * arch.experts
        transfer = (weights + text_weights + arch.vae_params * setup.vae_bytes) / PCIE_BYTES_PER_S
    warmup = 0.0
    if acceleration.compile and not inputs.warm(spec.id, plan):
        measured = store.timing(rate_key(spec.id, acceleration), WARMUP_SECONDS) if store is not None else None
        warmup = measured if measured is not None else prior_warmup_seconds(acceleration) * arch.experts
    transfer *= plan.passes
    if profile == "text_encoder_offload":  # the encoder crosses once: the text cache serves later windows
        transfer += text_weights / PCIE_BYTES_PER_S
    total = load + warmup + step * steps + transfer + encode
    return TimeEstimate(total, step, steps, load, encode, transfer, step_flops, tp, warmup)
