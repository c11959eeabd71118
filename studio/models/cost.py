"""The one cost model: how much GPU memory and time a planned run needs on this device.

The engine's estimates (``studio.engine.estimate``), the loader's choice of memory profile and
batch fit (``studio.models.loader``) and the Model Orchestrator's recommendations
(``studio.genius.orchestrator.selection``) all read these formulas; nothing else computes memory or time.

**Rates.** Measured rates are moving averages the worker records after every run in the task
store's ``timings`` table (``step_s_per_ktoken``: seconds per CFG step per 1000 latent tokens,
an uncached figure; ``encode_s_per_mpx``: decode + encode seconds per output megapixel;
``load_s``). Until one was measured the rate is a prior: the H200 anchor of
``shared/research/gpu_anchor_h200.md`` (Wan2.1-1.3B, 1.244 s per CFG step at 32,760 tokens;
its VAE decode + postprocess, 3.10 s for 480x832x81), and for ``tiny`` what
``bench/bench_stack.py`` measured on the 2-core CPU (bench/RESULTS.md). The load time of a real
model has no anchor: its prior (60 s) is an assumption until the first load.

**VRAM (GiB = 2^30 bytes; GPU sizes are quoted that way: an "80 GB" H100 has 80 GiB).** The
peak of three phases, text encoding, denoising and VAE decoding, each = the weights resident
in that phase + that phase's activations:

- weights: parameter counts of the real configs (diffusers' ``WanTransformer3DModel`` /
  ``AutoencoderKLWan`` and transformers' ``UMT5EncoderModel`` instantiated on the meta device;
  :data:`ARCHITECTURES`, checked in the tests) x bytes per parameter: transformer bf16 (2),
  UMT5-XXL text encoder bf16 (2), VAE fp32 (4), as ``studio.models.loader`` loads them.
- denoising activations (one forward pass; diffusers runs the conditional and unconditional
  passes one after the other): ``L x (2 (2 ffn + 5 d) + [36 d if the timestep is per token])``
  bytes. At the peak, inside the feed-forward block, the up-projection and its GELU output
  (2 ffn) and about five d-wide tensors are alive in bf16; Wan2.2-TI2V-5B embeds the timestep
  per token, which adds a bf16 (L, 6, d) projection and an fp32 (L, 6, d) modulation (36 d
  bytes). The coefficients are read off a live-tensor trace of the diffusers 0.42 transformer
  forward on the meta device (1.3B: 48.7 KB/token traced vs 51.2 formula; 14B: 113.6 vs 106.5;
  5B: 199.3 vs 198.7) and agree with the H200 measurements (``shared/research/gpu_anchor_h200.md``:
  1.3B 4.2 GiB, 14B 30.2 / 34.8 GiB at 480p / 720p; formula within 5 %).
- text-encoder activations: ``512 x (2 d_ff + 4 d) x 2 + 4 heads x 512^2`` bytes (~0.1 GB).
- VAE decode: diffusers decodes one latent frame at a time with a causal cache, so the peak
  grows with the frame area: ``b (c_vae H W + 3 F H W)`` bytes (b = 4 for fp32; the second term is
  the decoded video), c_vae = 4870 (Wan2.1 VAE) / 5375 (Wan2.2 VAE) values per output pixel;
  with VAE tiling (256 px tiles) ``b max(14 F H W, c_vae 256^2 + 3 F H W)``. Coefficients from a
  live-tensor trace of ``AutoencoderKLWan.decode`` (Wan2.1, 480x832x81, fp32: 7.6 GiB).

Memory profiles (fastest first; the first that fits is used):

- ``gpu``: everything resident: text encoder + transformer(s) (both A14B experts) + VAE, plus
  the largest phase's activations.
- ``model_cpu_offload`` (diffusers ``enable_model_cpu_offload``): one component on the GPU at a
  time, so the peak is max(text encoder + its activations, one transformer + denoising
  activations, VAE + decode activations).
- ``group_offload`` (diffusers group offloading, as ``studio.models.loader.apply_memory_profile``
  applies it: every component but the VAE leaf-level, with CUDA-stream prefetch; VAE resident,
  decoding with diffusers' tiled decode): for the text encoder the UMT5 embedding table + 4
  blocks (an upper bound of leaf level's embedding table + a prefetched layer, kept from the
  published block-level recipe), or two transformer leaf modules (the running and the
  prefetched largest linear layer), plus activations; decode with tiling. The least checked
  profile: no measurement of it is at hand, and the one published figure (diffusers docs:
  "~13GB" for 14B with block-level text offload, VAE not tiled) is 1.6x what the formula gives
  for that recipe (8.1 GiB), so a recommendation that relies on it says so in its reasons.

A model fits a budget when ``peak x 1.05 <= max_vram_gb`` (1.05: the formula is 5 % under
the measured 22.5 GiB peak of the whole 1.3B pipeline on the H200).

**Time.** ``total = load (when the model is not resident) + steps x step time + offload transfers
+ decode/encode``.

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
     step, ``gpu_anchor_h200.md``) = 455 TFLOP/s, labelled "prior (H200)" in the reasons.
  With group offload the weights cross PCIe every forward pass, overlapped with compute:
  ``max(compute, weight bytes / 31.5 GB/s)`` (PCIe 4.0 x16 nominal; a lower bound on transfer
  time); with model offload each component crosses once per video.
- ``tiny`` runs on the CPU and is overhead-bound, not FLOP-bound: its step time is its measured
  seconds per step per 1000 tokens x tokens (or that rate's prior).
- load and decode/encode time: the measured rates (``load_s``, ``encode_s_per_mpx``), or their
  documented priors.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from studio.models.catalog import CATALOG, TINY, ModelSpec


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


class TimingStore(Protocol):
    """Where measured rates live (the task store's ``timings`` table)."""

    path: Path

    def timing(self, model: str, name: str) -> float | None: ...

    def timing_samples(self, model: str, name: str) -> int: ...


# -- rates: measured here, or documented priors ---------------------------------------------------

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


def latent_tokens(spec: ModelSpec, plan: "PlannedRun") -> int:
    """Transformer sequence length: latent frames x (H / stride) x (W / stride), where the
    stride (VAE downsampling x patch size) equals the model's size multiple."""
    stride = spec.size_multiple
    return plan.latent_frames * (plan.gen_height // stride) * (plan.gen_width // stride)


def prior_rate(spec: ModelSpec, name: str) -> float:
    """The documented prior of a rate, used until this machine measured it (see the docstring)."""
    if spec.id in _PRIORS:
        return _PRIORS[spec.id][name]
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


GIB = 2**30
TEXT_TOKENS = 512                      # UMT5 sequence length the Wan pipelines always use
FIT_HEADROOM = 1.05                    # see the module docstring
PCIE_BYTES_PER_S = 31.5e9              # PCIe 4.0 x16, nominal
VAE_TILE = 256                         # diffusers AutoencoderKLWan tile_sample_min_height/width
PROFILES = ("gpu", "model_cpu_offload", "group_offload")
#: The profiles ``studio.models.loader`` applies (``choose_memory_profile`` tries them in this
#: order); ``model="auto"`` and the recommendations only use these, so nothing is recommended
#: that the loader cannot run.
LOADER_PROFILES = PROFILES
Profile = Literal["gpu", "model_cpu_offload", "group_offload"]


# -- architecture data --------------------------------------------------------------------------

@dataclass(frozen=True)
class TextEncoder:
    """A UMT5 encoder: sizes from its config, parameter count from instantiating it."""

    name: str
    params: int
    embedding_params: int
    block_params: int
    d_model: int
    d_ff: int
    num_heads: int


UMT5_XXL = TextEncoder("UMT5-XXL encoder", params=5_680_910_336, embedding_params=1_050_148_864,
                       block_params=192_948_224, d_model=4096, d_ff=10240, num_heads=64)
TINY_TEXT = TextEncoder("tiny UMT5 (d_model 32)", params=36_320, embedding_params=15_616,
                        block_params=10_336, d_model=32, d_ff=64, num_heads=4)


@dataclass(frozen=True)
class Architecture:
    """The transformer, VAE and text encoder of one catalog model (from the published configs).

    ``transformer_params`` / ``vae_params`` are what diffusers 0.42 instantiates from the
    configs (counted on the meta device; ``tests/test_orchestrator.py`` recounts them).
    """

    dim: int
    ffn_dim: int
    num_layers: int
    num_heads: int
    in_channels: int
    transformer_params: int
    block_params: int
    vae: str                       # "wan2.1" (stride 8, z 16) or "wan2.2" (stride 16, z 48)
    vae_params: int
    vae_stride: int
    z_dim: int
    text_encoder: TextEncoder = UMT5_XXL
    experts: int = 1               # Wan2.2-A14B: a high-noise and a low-noise expert
    per_token_timestep: bool = False  # diffusers' expand_timesteps (Wan2.2-TI2V-5B)
    quality_tier: int = 0          # 0: not a real model
    on_cpu: bool = False           # the offline tiny model runs on the CPU

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def largest_linear_params(self) -> int:
        """The biggest single weight matrix (a feed-forward projection): one leaf module."""
        return self.dim * self.ffn_dim + self.ffn_dim


#: c_vae: values alive per output pixel while decoding one latent frame (traced, see docstring).
VAE_DECODE_VALUES_PER_PIXEL = {"wan2.1": 4870.0, "wan2.2": 5375.0}

_WAN21_VAE = dict(vae="wan2.1", vae_params=126_892_531, vae_stride=8, z_dim=16)

ARCHITECTURES: dict[str, Architecture] = {
    TINY: Architecture(dim=24, ffn_dim=32, num_layers=2, num_heads=2, in_channels=16, transformer_params=22_952,
                       block_params=0, vae="tiny", vae_params=14_779, vae_stride=8, z_dim=16,
                       text_encoder=TINY_TEXT, quality_tier=0, on_cpu=True),
    "wan2.1-t2v-1.3b": Architecture(dim=1536, ffn_dim=8960, num_layers=30, num_heads=12, in_channels=16,
                                    transformer_params=1_418_996_800, block_params=46_440_704,
                                    quality_tier=1, **_WAN21_VAE),
    "wan2.2-ti2v-5b": Architecture(dim=3072, ffn_dim=14336, num_layers=30, num_heads=24, in_channels=48,
                                   transformer_params=4_999_787_712, block_params=163_656_704,
                                   vae="wan2.2", vae_params=704_688_668, vae_stride=16, z_dim=48,
                                   per_token_timestep=True, quality_tier=2),
    "wan2.1-t2v-14b": Architecture(dim=5120, ffn_dim=13824, num_layers=40, num_heads=40, in_channels=16,
                                   transformer_params=14_288_491_584, block_params=351_394_304,
                                   quality_tier=3, **_WAN21_VAE),
    "wan2.2-t2v-a14b": Architecture(dim=5120, ffn_dim=13824, num_layers=40, num_heads=40, in_channels=16,
                                    transformer_params=14_288_491_584, block_params=351_394_304,
                                    experts=2, quality_tier=4, **_WAN21_VAE),
}


def architecture(model_id: str) -> Architecture:
    """The architecture data of a catalog model; ``KeyError`` for models without any."""
    return ARCHITECTURES[model_id]


# -- VRAM ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PipelineSetup:
    """Precision and placement choices that change the memory figures.

    The defaults are what this studio's loader does. The other fields exist to map published
    figures made with the Wan authors' own code onto the formula (the tests do): their Wan2.1
    code keeps the transformer in fp32 (``dit_bytes=4``) unless ``--convert_model_dtype``,
    ``--t5_cpu`` keeps the text encoder off the GPU, the VAE stays on the GPU throughout, and their
    Wan2.2 code embeds the timestep per token for every model.
    """

    dit_bytes: int = 2
    vae_bytes: int = 4
    text_bytes: int = 2
    text_encoder_on_gpu: bool = True
    vae_always_resident: bool = False
    per_token_timestep: bool | None = None  # None: as the architecture says


STUDIO_SETUP = PipelineSetup()


def denoise_activation_bytes(arch: Architecture, tokens: int, per_token_timestep: bool | None = None) -> float:
    """Peak activation bytes of one transformer forward over ``tokens`` latent tokens."""
    per_token = arch.per_token_timestep if per_token_timestep is None else per_token_timestep
    per_tok = 2 * (2 * arch.ffn_dim + 5 * arch.dim) + (36 * arch.dim if per_token else 0)
    return float(tokens * per_tok)


def text_activation_bytes(te: TextEncoder) -> float:
    return float(TEXT_TOKENS * (2 * te.d_ff + 4 * te.d_model) * 2 + 4 * te.num_heads * TEXT_TOKENS**2)


def vae_decode_bytes(arch: Architecture, width: int, height: int, frames: int, vae_bytes: int = 4,
                     tiled: bool = False) -> float:
    """Peak activation bytes of decoding ``frames`` frames of ``width`` x ``height``."""
    c = VAE_DECODE_VALUES_PER_PIXEL[arch.vae]
    area = width * height
    if tiled:
        tile = min(VAE_TILE, width) * min(VAE_TILE, height)
        return float(vae_bytes * max(14 * frames * area, c * tile + 3 * frames * area))
    return float(vae_bytes * (c * area + 3 * frames * area))


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak GPU memory of one model x size x profile, with the phase that sets it."""

    profile: str
    peak_bytes: float
    phases: dict[str, float]

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phases.get)


def memory_estimate(arch: Architecture, width: int, height: int, frames: int, profile: str,
                    setup: PipelineSetup = STUDIO_SETUP) -> MemoryEstimate:
    """VRAM peak for generating ``frames`` frames at ``width`` x ``height`` (see the docstring)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
    if arch.on_cpu:
        return MemoryEstimate(profile, 0.0, {"text": 0.0, "denoise": 0.0, "decode": 0.0})
    tokens = ((frames - 1) // 4 + 1) * (height // (arch.vae_stride * 2)) * (width // (arch.vae_stride * 2))
    te = arch.text_encoder
    text_w = te.params * setup.text_bytes if setup.text_encoder_on_gpu else 0.0
    text_act = text_activation_bytes(te) if setup.text_encoder_on_gpu else 0.0
    dit_w = arch.transformer_params * setup.dit_bytes
    vae_w = arch.vae_params * setup.vae_bytes
    act = denoise_activation_bytes(arch, tokens, setup.per_token_timestep)
    decode = vae_decode_bytes(arch, width, height, frames, setup.vae_bytes, tiled=profile == "group_offload")
    if profile == "gpu":
        resident = text_w + dit_w * arch.experts + vae_w
        phases = {"text": resident + text_act, "denoise": resident + act, "decode": resident + decode}
    elif profile == "model_cpu_offload":
        vae_idle = vae_w if setup.vae_always_resident else 0.0
        phases = {"text": text_w + text_act + vae_idle, "denoise": dit_w + act + vae_idle, "decode": vae_w + decode}
    else:  # group_offload: the VAE stays on the GPU, the rest streams in group by group
        text_groups = ((te.embedding_params + 4 * te.block_params) * setup.text_bytes
                       if setup.text_encoder_on_gpu else 0.0)
        leaves = 2 * arch.largest_linear_params * setup.dit_bytes
        phases = {"text": vae_w + text_groups + text_act, "denoise": vae_w + leaves + act, "decode": vae_w + decode}
    return MemoryEstimate(profile, max(phases.values()), phases)


# -- FLOPs and time -----------------------------------------------------------------------------

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

    Read through a separate read-only connection (the store's file is in WAL mode)."""
    path = getattr(store, "path", None)
    if path is not None:
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)) as db:
                rows = db.execute(
                    "SELECT result FROM tasks WHERE status = 'completed' AND result IS NOT NULL "
                    "ORDER BY finished_at DESC LIMIT 50").fetchall()
            for (raw,) in rows:
                meta = (json.loads(raw) or {}).get("metadata") or {}
                if meta.get("model") != spec.id:
                    continue
                w, h, f = meta["generated_width"], meta["generated_height"], meta["generated_frames"]
                stride = spec.size_multiple
                tokens = ((int(f) - 1) // 4 + 1) * (int(h) // stride) * (int(w) // stride)
                return tokens, float(meta.get("guidance_scale", 5.0)), f"its last run ({w}x{h}x{f})"
        except (sqlite3.Error, KeyError, TypeError, ValueError):
            pass
    stride = spec.size_multiple
    native = ((spec.max_frames - 1) // 4 + 1) * (spec.native_height // stride) * (spec.native_width // stride)
    size = f"{spec.native_width}x{spec.native_height}x{spec.max_frames}"
    return native, spec.default_guidance, f"its native size ({size})"


def _measured_flop_s(store, spec: ModelSpec) -> tuple[float, str] | None:
    rate = store.timing(spec.id, STEP_RATE) if store is not None else None
    if rate is None or rate <= 0 or spec.id not in ARCHITECTURES:
        return None
    tokens, guidance, what = _reference_plan(store, spec)
    step_seconds = rate * tokens / 1000
    return flops_per_step(ARCHITECTURES[spec.id], tokens, guidance) / step_seconds, what


def device_throughput(store, model_id: str) -> Throughput:
    """This device's FLOP/s for ``model_id``: measured for it, measured for another real model,
    or the H200 prior (see the module docstring)."""
    own = _measured_flop_s(store, CATALOG[model_id])
    if own is not None:
        return Throughput(own[0], "measured",
                          f"measured here for {model_id} (engine step times, converted at {own[1]})",
                          timing_samples(store, model_id, STEP_RATE))
    others = []
    for other in ARCHITECTURES:
        if other in (TINY, model_id) or other not in CATALOG:
            continue
        measured = _measured_flop_s(store, CATALOG[other])
        if measured is not None:
            others.append((other, measured[0]))
    if others:
        mean = sum(flop_s for _, flop_s in others) / len(others)
        names = ", ".join(m for m, _ in others)
        return Throughput(mean, "measured", f"measured here on {names} (same GPU, FLOP/s carried over)",
                          sum(timing_samples(store, m, STEP_RATE) for m, _ in others))
    return Throughput(H200_PRIOR_FLOP_S, "prior",
                      "prior (H200): Wan2.1-1.3B plain diffusers, 1.244 s per CFG step at 480x832x81")


@dataclass(frozen=True)
class TimeEstimate:
    seconds: float
    step_seconds: float
    steps: int
    load_seconds: float
    encode_seconds: float
    transfer_seconds: float
    flops_per_step: float
    throughput: Throughput | None


def estimate_time(deps, spec: ModelSpec, plan: "PlannedRun", profile: str = "gpu",
                  throughput: Throughput | None = None) -> TimeEstimate:
    """Seconds to generate ``plan`` with ``spec`` on this device (see the module docstring)."""
    store = getattr(deps, "store", None)
    estimator = getattr(deps, "estimator", None) or Rates(store)
    models = getattr(deps, "models", None)
    loaded = models is not None and getattr(models, "loaded_model", None) == spec.id
    load = 0.0 if loaded else estimator.rate(spec, LOAD_SECONDS)[0]
    encode = estimator.rate(spec, ENCODE_RATE)[0] * plan.out_frames * plan.out_width * plan.out_height / 1e6
    arch = ARCHITECTURES[spec.id]
    tokens = latent_tokens(spec, plan)
    step_flops = flops_per_step(arch, tokens, plan.guidance_scale)
    if arch.on_cpu:  # overhead-bound: the engine's own per-token rate
        rate, _ = estimator.rate(spec, STEP_RATE)
        step = rate * tokens / 1000
        return TimeEstimate(load + step * plan.num_inference_steps + encode, step, plan.num_inference_steps,
                            load, encode, 0.0, step_flops, None)
    tp = throughput or device_throughput(store, spec.id)
    step = step_flops / tp.flop_per_s
    transfer = 0.0
    weights = arch.transformer_params * STUDIO_SETUP.dit_bytes * arch.experts
    if profile == "group_offload":  # weights stream in every pass, overlapped with compute
        passes = cfg_passes(plan.guidance_scale)
        per_pass = max(step / passes, arch.transformer_params * STUDIO_SETUP.dit_bytes / PCIE_BYTES_PER_S)
        step = per_pass * passes
    elif profile == "model_cpu_offload":  # each component crosses once per video
        transfer = (weights + arch.text_encoder.params * STUDIO_SETUP.text_bytes
                    + arch.vae_params * STUDIO_SETUP.vae_bytes) / PCIE_BYTES_PER_S
    total = load + step * plan.num_inference_steps + transfer + encode
    return TimeEstimate(total, step, plan.num_inference_steps, load, encode, transfer, step_flops, tp)


# -- batches: what a group of same-shape runs needs -----------------------------------------------

def group_vram_gb(plans: list, profile: str = "gpu") -> float:
    """VRAM peak (GiB) of denoising ``plans`` (same model and shape) in one batched call.

    Weights are shared; each forward pass (cond and uncond run one after the other) carries
    the activations of every task in the batch; decoding runs task by task afterwards. So the
    denoising phase grows by one task's activations per extra task and the other phases don't.
    """
    first = plans[0]
    arch = ARCHITECTURES[first.model]
    single = memory_estimate(arch, first.gen_width, first.gen_height, first.gen_frames, profile)
    tokens = ((first.gen_frames - 1) // 4 + 1) * (first.gen_height // (arch.vae_stride * 2)) \
        * (first.gen_width // (arch.vae_stride * 2))
    phases = dict(single.phases)
    phases["denoise"] += (len(plans) - 1) * denoise_activation_bytes(arch, tokens)
    return max(phases.values()) / GIB


def resident_weight_bytes(arch: Architecture, profile: str, setup: PipelineSetup = STUDIO_SETUP) -> float:
    """Weight bytes that stay on the GPU between runs once a model is loaded in ``profile``.

    ``gpu``: every component; ``model_cpu_offload``: none (each component goes back to the CPU
    after use, unless the setup keeps the VAE resident); ``group_offload``: the VAE (the rest
    streams in group by group). These bytes are already missing from the free memory the
    device reports after loading, so a fit check must not count them twice.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
    if arch.on_cpu:
        return 0.0
    vae_w = arch.vae_params * setup.vae_bytes
    if profile == "gpu":
        text_w = arch.text_encoder.params * setup.text_bytes if setup.text_encoder_on_gpu else 0.0
        return text_w + arch.transformer_params * setup.dit_bytes * arch.experts + vae_w
    if profile == "model_cpu_offload":
        return vae_w if setup.vae_always_resident else 0.0
    return vae_w


def group_fits(plans: list, free_bytes: float, weights_loaded: bool, budget_gb: float | None = None,
               profile: str = "gpu") -> bool:
    """Whether ``plans`` (same model and shape) may be denoised in one batched call.

    - device: the group's peak (``group_vram_gb``) minus the weights already resident when
      ``weights_loaded`` (``free_bytes`` was read after loading, so they are not free any more
      and must not be asked for again), with the orchestrator's ``FIT_HEADROOM``, must fit
      ``free_bytes``. When the model is not loaded yet, the whole peak must fit.
    - budget: the group's whole peak (weights included: what the group uses on the device)
      must not exceed ``budget_gb`` (a batch's ``vram_budget_gb``; None: no budget).

    Models that run on the CPU (``tiny``) need no GPU memory and always fit the device.
    """
    arch = ARCHITECTURES[plans[0].model]
    need = group_vram_gb(plans, profile) * GIB
    if budget_gb is not None and need > budget_gb * GIB:
        return False
    if arch.on_cpu:
        return True
    extra = need - (resident_weight_bytes(arch, profile) if weights_loaded else 0.0)
    return extra * FIT_HEADROOM <= free_bytes
