"""Model Orchestrator: which Wan model to run for a prompt on a GPU budget, and why.

``POST /v1/genius/orchestrator/select-model`` (``studio.api.genius_orchestrator``), the
"Model Orchestrator" tab and ``model="auto"`` on the generate path all call :func:`select_model`
/ :func:`choose_model` here. Every number in the answer comes from one of the formulas below;
nothing is a constant made up for the reply.

**What a model would generate.** The request (prompt, ``duration_seconds``,
``target_resolution``; 16:9 and the generate defaults for the rest: 24 fps, 50 steps, guidance
7.5, i.e. classifier-free guidance) is planned for each model exactly as the engine plans it
(``studio.engine.plan.make_plan``): at most the model's native pixel area, frame rate and clip
length. Latent tokens ``L = latent frames x (H / s) x (W / s)`` with ``s`` = VAE stride x patch
(16 for Wan2.1, 32 for Wan2.2-TI2V-5B) and latent frames ``(F - 1) / 4 + 1``.

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
- ``tiny`` runs on the CPU and is overhead-bound, not FLOP-bound: its time is the engine's own
  estimate (``studio.engine.estimate``: measured seconds per step per 1000 tokens).
- load and decode/encode time: the engine's measured rates (``load_s``, ``encode_s_per_mpx``),
  or its documented priors.

``speed_factor`` of an alternative = estimated time of the recommended model / estimated time of
the alternative (above 1: the alternative is faster).

**Complexity** (simple / moderate / complex), from prompt features found with documented word
lists (:data:`SUBJECT_WORDS`, :data:`GROUP_WORDS`, :data:`ACTION_WORDS`, :data:`CAMERA_PHRASES`,
:data:`SCENE_CHANGE_PHRASES`):

    score = 0.8 max(0, subjects - 1) + 0.6 max(0, actions - 1) + 1.0 camera moves
            + 1.5 scene changes + 0.04 max(0, words - 15) + 0.25 max(0, seconds - 5)

One subject doing one thing in a short prompt scores 0. Classes: simple below 1.5, complex from
4.0, moderate between. ``confidence = 1 / (1 + exp(-margin / 0.6))`` with ``margin`` the
distance of the score to the nearest class boundary: 0.5 on a boundary, towards 1 far from
it. It is a documented heuristic, not a probability fitted to labelled data.

**Selection.** A model's quality tier is the Wan authors' own ordering (1.3B < TI2V-5B < 14B
< A14B, by size and generation; not a measurement). The prompt needs tier >= 1 / 2 / 3 for
simple / moderate / complex, and tier >= 2 for 720p and above (the 1.3B model is trained at
480p and would be upscaled).

- ``model="auto"`` (:func:`choose_model`) considers only the profiles the loader applies
  (:data:`LOADER_PROFILES`).
- ``tiny`` only when no real model can run: no CUDA GPU here (and no ``max_vram_gb`` given), or
  nothing fits ``max_vram_gb``; the reasons say so.
- ``prefer_quality``: the highest tier that fits and finishes within :data:`TIME_BUDGET_S`
  (a policy, 30 minutes); if none does, the fastest adequate one (the fastest that fits when
  none is adequate).
- otherwise: the fastest model that fits and meets the prompt's tier; if none meets it, the
  highest tier that fits.

``max_vram_gb`` defaults to this device: free CUDA memory plus what this process's PyTorch
allocator holds (a resident model is evicted when another is loaded); ``None`` without CUDA.
Given explicitly on a server without a GPU, it describes the GPU you plan for: times are then
the H200 prior, and the reasons say that this server itself only runs ``tiny``.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from studio.engine.estimate import ENCODE_RATE, LOAD_SECONDS, STEP_RATE, Estimator, latent_tokens, timing_samples
from studio.engine.plan import GenerationPlan, make_plan
from studio.engine.request import GenerationRequest, JsonModel, Resolution, strip_prompt
from studio.models.catalog import CATALOG, TINY, ModelSpec

GIB = 2**30
TEXT_TOKENS = 512                      # UMT5 sequence length the Wan pipelines always use
FIT_HEADROOM = 1.05                    # see the module docstring
TIME_BUDGET_S = 1800.0                 # "reasonable time" for prefer_quality: a policy
PCIE_BYTES_PER_S = 31.5e9              # PCIe 4.0 x16, nominal
VAE_TILE = 256                         # diffusers AutoencoderKLWan tile_sample_min_height/width
PROFILES = ("gpu", "model_cpu_offload", "group_offload")
#: The profiles ``studio.models.loader`` applies (``choose_memory_profile`` tries them in this
#: order); ``model="auto"`` and the recommendations only use these, so nothing is recommended
#: that the loader cannot run.
LOADER_PROFILES = PROFILES
Profile = Literal["gpu", "model_cpu_offload", "group_offload"]
Complexity = Literal["simple", "moderate", "complex"]


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


def estimate_time(deps, spec: ModelSpec, plan: GenerationPlan, profile: str = "gpu",
                  throughput: Throughput | None = None) -> TimeEstimate:
    """Seconds to generate ``plan`` with ``spec`` on this device (see the module docstring)."""
    store = getattr(deps, "store", None)
    estimator = getattr(deps, "estimator", None) or Estimator(store)
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


# -- prompt complexity --------------------------------------------------------------------------

SUBJECT_WORDS = frozenset("""
man woman men women person people child children boy girl baby kid kids family friend friends couple crowd dancer
dancers singer singers musician musicians band knight knights king queen prince princess soldier soldiers
warrior warriors wizard witch robot robots astronaut astronauts alien aliens character characters hero
villain monster monsters dragon dragons cat cats dog dogs bird birds fish horse horses cow cows lion lions
tiger tigers bear bears wolf wolves fox foxes rabbit rabbits deer elephant elephants monkey monkeys whale
whales dolphin dolphins shark butterfly butterflies insect car cars train trains boat boats ship ships
plane planes helicopter bicycle motorcycle spaceship player players athlete athletes chef farmer pilot
student students teacher detective girlfriend boyfriend mother father grandmother grandfather villager
villagers audience army team
""".split())
#: words that announce several subjects at once ("a crowd", "two dogs", "multiple characters")
GROUP_WORDS = frozenset("""
two three four five six seven eight nine ten several multiple many crowd group groups army armies
team teams herd flock swarm couple pair dozens hundreds family families everyone
""".split())
ACTION_WORDS = frozenset("""
walk run jump fly swim dance sing play fight chase ride drive climb fall rise spin float drift glow
shine flow turn move look watch smile laugh cry talk speak shout throw catch kick punch hug kiss
eat drink cook paint write read sit stand crawl roll slide skate surf ski dive race explode burn
crash collapse open close grow melt morph transform build break pour wave bow march sprint leap
soar glide hover attack defend cheer celebrate
""".split())
CAMERA_PHRASES = (
    "pan", "pans", "panning", "tilt", "tilts", "tilting", "zoom", "zooms", "zooming", "dolly", "tracking shot",
    "tracking", "crane shot", "orbit", "orbits", "orbiting", "aerial", "drone shot", "handheld", "close-up",
    "closeup", "wide shot", "push in", "pull back", "pulls back", "rack focus", "time-lapse", "timelapse",
    "slow motion", "pov", "first-person", "over-the-shoulder", "camera moves", "camera follows",
    "camera circles", "fly-through", "flythrough",
)
SCENE_CHANGE_PHRASES = (
    "then", "cut to", "cuts to", "transition", "transitions", "after that", "afterwards", "meanwhile",
    "later", "next scene", "finally", "suddenly", "scene changes", "fades to", "fade to", "switches to",
    "flashback",
)
SCORE_WEIGHTS = {"subjects": 0.8, "actions": 0.6, "camera_moves": 1.0, "scene_changes": 1.5,
                 "words": 0.04, "seconds": 0.25}
SIMPLE_BELOW = 1.5
COMPLEX_FROM = 4.0
CONFIDENCE_SCALE = 0.6
_TIER = {"simple": 1, "moderate": 2, "complex": 3}


def _stem(word: str) -> str:
    """The base form of an action verb (runs, running, ran -> run); other words unchanged."""
    if word in _IRREGULAR_VERBS:
        return _IRREGULAR_VERBS[word]
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if base in ACTION_WORDS:
                return base
            if suffix == "ing" and base + "e" in ACTION_WORDS:  # dancing -> dance
                return base + "e"
            if suffix == "ing" and len(base) > 3 and base[-1] == base[-2] and base[:-1] in ACTION_WORDS:
                return base[:-1]  # running -> run
            if suffix in ("es", "ed") and base + "e" in ACTION_WORDS:
                return base + "e"
    return word


_IRREGULAR_PLURALS = frozenset("people children wolves men women mice geese butterflies families armies".split())
_IRREGULAR_VERBS = {"flies": "fly", "flew": "fly", "ran": "run", "swam": "swim", "rode": "ride", "fell": "fall",
                    "rose": "rise", "spun": "spin", "fought": "fight", "threw": "throw", "caught": "catch"}


def _is_plural(word: str) -> bool:
    """A plural subject word counts as two subjects (at least two of them are on screen)."""
    if word in _IRREGULAR_PLURALS:
        return True
    return word.endswith("s") and (word[:-1] in SUBJECT_WORDS or word[:-2] in SUBJECT_WORDS)


def _count_phrases(text: str, phrases) -> int:
    return sum(len(re.findall(rf"(?<![a-z-]){re.escape(p)}(?![a-z-])", text)) for p in phrases)


@dataclass(frozen=True)
class ComplexityResult:
    label: str
    score: float
    confidence: float
    features: dict[str, int | float] = field(default_factory=dict)


def classify_prompt(prompt: str, duration_seconds: float = 4.0) -> ComplexityResult:
    """Complexity class, score and confidence of a prompt (formula in the module docstring)."""
    text = prompt.lower()
    words = re.findall(r"[a-z][a-z'-]*", text)
    camera = _count_phrases(text, CAMERA_PHRASES)
    camera_words = {p for p in CAMERA_PHRASES if " " not in p}
    subjects = {w for w in words if w in SUBJECT_WORDS}
    plural = sum(1 for w in subjects if _is_plural(w))
    groups = sum(1 for w in words if w in GROUP_WORDS)
    n_subjects = len(subjects) + plural + groups
    actions = {_stem(w) for w in words if w not in camera_words} & ACTION_WORDS
    scenes = _count_phrases(text, SCENE_CHANGE_PHRASES)
    features = {"subjects": n_subjects, "actions": len(actions), "camera_moves": camera,
                "scene_changes": scenes, "words": len(words), "seconds": float(duration_seconds)}
    w = SCORE_WEIGHTS
    score = (w["subjects"] * max(0, n_subjects - 1) + w["actions"] * max(0, len(actions) - 1)
             + w["camera_moves"] * camera + w["scene_changes"] * scenes
             + w["words"] * max(0, len(words) - 15) + w["seconds"] * max(0.0, duration_seconds - 5))
    if score < SIMPLE_BELOW:
        label, margin = "simple", SIMPLE_BELOW - score
    elif score >= COMPLEX_FROM:
        label, margin = "complex", score - COMPLEX_FROM
    else:
        label, margin = "moderate", min(score - SIMPLE_BELOW, COMPLEX_FROM - score)
    confidence = 1 / (1 + math.exp(-margin / CONFIDENCE_SCALE))
    return ComplexityResult(label, round(score, 4), confidence, features)


# -- request / response -------------------------------------------------------------------------

_GEN = GenerationRequest.model_fields


class SelectModelRequest(JsonModel):
    """The seed's ``POST /genius/orchestrator/select-model`` body."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "prompt": "Complex cinematic scene with multiple characters...", "duration_seconds": 10,
        "target_resolution": "4k", "max_vram_gb": 24, "prefer_quality": True}})

    prompt: str = Field(..., min_length=1, max_length=2000, description="Text description (1-2000 chars)")
    duration_seconds: float = Field(_GEN["duration_seconds"].default, ge=1, le=60,
                                    description="Duration (1-60 seconds)")
    target_resolution: Resolution = Field(_GEN["resolution"].default, description="480p/720p/1080p/1440p/4k/8k")
    max_vram_gb: float | None = Field(None, ge=1, le=4096,
                                      description="GPU memory budget in GiB; default: this server's free GPU "
                                                  "memory, or none (CPU only) without a GPU")
    prefer_quality: StrictBool = Field(False, description="Pick the highest-quality model that fits and finishes "
                                                    "within 30 min, instead of the fastest adequate one")

    _strip_prompt = field_validator("prompt")(strip_prompt)


class Alternative(BaseModel):
    model: str
    vram_gb: float = Field(description="Peak GPU memory (GiB) in the fastest memory profile that fits")
    speed_factor: float = Field(description="Estimated time of the recommended model / of this one (>1: faster)")


class SelectModelResponse(BaseModel):
    """The seed's response, plus ``reasons``."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "recommended_model": "wan2.2-ti2v-5b", "complexity": "moderate", "confidence": 0.71,
        "estimated_time_seconds": 238.4, "vram_required_gb": 23.1,
        "alternatives": [{"model": "wan2.1-t2v-1.3b", "vram_gb": 10.7, "speed_factor": 2.9}],
        "reasons": ["..."]}})

    recommended_model: str
    complexity: Complexity
    confidence: float = Field(ge=0, le=1, description="Of the complexity class: 0.5 on a class boundary, "
                                                      "towards 1 far from it")
    estimated_time_seconds: float = Field(description="Load (if not resident) + denoising + decode/encode")
    vram_required_gb: float = Field(description="Peak GPU memory (GiB) of the chosen memory profile; 0 for tiny (CPU)")
    alternatives: list[Alternative]
    reasons: list[str]


# -- selection ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeviceInfo:
    cuda: bool
    free_vram_gb: float | None
    name: str


def detect_device() -> DeviceInfo:
    """This process's view of the GPU: free memory plus what its own allocator holds."""
    import torch

    if not torch.cuda.is_available():
        return DeviceInfo(False, None, "CPU")
    free, _total = torch.cuda.mem_get_info()
    return DeviceInfo(True, (free + torch.cuda.memory_reserved()) / GIB, torch.cuda.get_device_name())


def _plan_for(spec: ModelSpec, duration_seconds: float, resolution: str, prompt: str,
              num_inference_steps: int | None = None, guidance_scale: float | None = None) -> GenerationPlan:
    values: dict[str, Any] = {"prompt": prompt, "duration_seconds": max(1.0, min(60.0, duration_seconds)),
                              "resolution": resolution}
    if num_inference_steps is not None:
        values["num_inference_steps"] = num_inference_steps
    if guidance_scale is not None:
        values["guidance_scale"] = guidance_scale
    return make_plan(GenerationRequest(**values), spec, seed=0)


@dataclass
class Candidate:
    spec: ModelSpec
    arch: Architecture
    plan: GenerationPlan
    memory: dict[str, MemoryEstimate]
    profile: str | None = None            # fastest profile that fits, None: none fits
    time: TimeEstimate | None = None

    @property
    def vram_gib(self) -> float:
        return self.memory[self.profile or PROFILES[-1]].peak_gib


def _fits(mem: MemoryEstimate, budget_gib: float | None) -> bool:
    return budget_gib is not None and mem.peak_gib * FIT_HEADROOM <= budget_gib


def _candidates(deps, request: SelectModelRequest, budget: float | None, steps: int | None,
                guidance: float | None, profiles: tuple[str, ...]) -> list[Candidate]:
    out = []
    for model_id, spec in CATALOG.items():
        arch = ARCHITECTURES.get(model_id)
        if arch is None or arch.on_cpu:
            continue
        plan = _plan_for(spec, request.duration_seconds, request.target_resolution, request.prompt, steps, guidance)
        memory = {p: memory_estimate(arch, plan.gen_width, plan.gen_height, plan.gen_frames, p) for p in PROFILES}
        cand = Candidate(spec, arch, plan, memory)
        cand.profile = next((p for p in profiles if _fits(memory[p], budget)), None)
        cand.time = estimate_time(deps, spec, plan, cand.profile or "gpu")
        out.append(cand)
    return out


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _describe(c: Candidate) -> str:
    p = c.plan
    t = c.time
    return (f"{c.spec.id}: {p.gen_width}x{p.gen_height}x{p.gen_frames} frames ({latent_tokens(c.spec, p):,} tokens), "
            f"{c.vram_gib:.1f} GiB peak with {c.profile} ({c.memory[c.profile].peak_phase} phase), "
            f"~{_fmt_time(t.seconds)} = {t.steps} steps x {t.step_seconds:.2f} s "
            f"({t.flops_per_step / 1e12:.0f} TFLOP/step at {t.throughput.flop_per_s / 1e12:.0f} TFLOP/s)"
            + (f" + {t.load_seconds:.0f} s load" if t.load_seconds else "")
            + f" + {t.encode_seconds:.1f} s decode/encode")


def select_model(deps, request: SelectModelRequest, *, device: DeviceInfo | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 profiles: tuple[str, ...] = PROFILES) -> SelectModelResponse:
    """The recommendation for ``request`` on this device (``deps``: the ``Studio``, or anything
    with a ``store`` and optionally ``estimator`` / ``models``). Rules in the module docstring;
    ``profiles``: the memory profiles allowed, fastest first."""
    device = device or detect_device()
    steps = num_inference_steps
    guidance = guidance_scale
    complexity = classify_prompt(request.prompt, request.duration_seconds)
    budget = request.max_vram_gb if request.max_vram_gb is not None else device.free_vram_gb
    budget_words = (f"max_vram_gb {budget:g} GiB" if request.max_vram_gb is not None else
                    f"this GPU's {budget:.1f} GiB free ({device.name})" if budget is not None else "no CUDA GPU")
    f = complexity.features
    reasons = [f"complexity {complexity.label} (score {complexity.score:.2f}; simple < {SIMPLE_BELOW} <= moderate < "
               f"{COMPLEX_FROM} <= complex): {f['subjects']} subject(s), {f['actions']} action(s), "
               f"{f['camera_moves']} camera move(s), {f['scene_changes']} scene change(s), {f['words']} words, "
               f"{f['seconds']:g} s"]
    res_tier = 1 if request.target_resolution == "480p" else 2
    need = max(_TIER[complexity.label], res_tier)

    cands = _candidates(deps, request, budget, steps, guidance, profiles)
    fitting = [c for c in cands if c.profile is not None]
    tiny_reason = None
    if not device.cuda and request.max_vram_gb is None:
        tiny_reason = ("this server has no CUDA GPU, so no real Wan model can run here: recommending the offline "
                       "'tiny' model (untrained, noise-like output); pass max_vram_gb to plan for a GPU")
    elif not fitting:
        leanest = profiles[-1]
        smallest = min(cands, key=lambda c: c.memory[leanest].peak_bytes)
        tiny_reason = (f"no real model fits {budget_words}: the smallest need is {smallest.spec.id} with "
                       f"{smallest.memory[leanest].peak_gib * FIT_HEADROOM:.1f} GiB ({leanest}, with "
                       f"{FIT_HEADROOM:g}x headroom); recommending the offline 'tiny' model "
                       "(untrained, noise-like output)")
    if tiny_reason is not None:
        return _tiny_response(deps, request, complexity, reasons + [tiny_reason], steps, guidance)

    if not device.cuda:
        reasons.append(f"planning for a GPU with {budget:g} GiB; this server has no CUDA GPU and itself only runs "
                       "'tiny'; times use the H200 prior")
    reasons.append(f"needs quality tier >= {need} ({complexity.label} prompt"
                   + (f", {request.target_resolution} output" if res_tier > 1 else "") + "); tiers: "
                   + ", ".join(f"{c.spec.id}={c.arch.quality_tier}"
                               for c in sorted(cands, key=lambda c: c.arch.quality_tier)))
    for c in cands:
        if c.profile is None:
            need_gib = c.memory[profiles[-1]].peak_gib
            reasons.append(f"{c.spec.id} does not fit {budget_words}: needs {need_gib:.1f} GiB even with "
                           f"{profiles[-1]}")
    if request.prefer_quality:
        in_time = [c for c in fitting if c.time.seconds <= TIME_BUDGET_S]
        if in_time:
            best = max(in_time, key=lambda c: (c.arch.quality_tier, -c.time.seconds))
            reasons.append(f"prefer_quality: {best.spec.id} is the highest tier that fits and finishes within "
                           f"{_fmt_time(TIME_BUDGET_S)}")
        else:
            adequate = [c for c in fitting if c.arch.quality_tier >= need] or fitting
            best = min(adequate, key=lambda c: c.time.seconds)
            reasons.append(f"prefer_quality, but nothing that fits finishes within {_fmt_time(TIME_BUDGET_S)}: "
                           f"{best.spec.id} is the fastest adequate one")
    else:
        adequate = [c for c in fitting if c.arch.quality_tier >= need]
        if adequate:
            best = min(adequate, key=lambda c: c.time.seconds)
            reasons.append(f"{best.spec.id} is the fastest model that fits and meets tier {need}")
        else:
            best = max(fitting, key=lambda c: (c.arch.quality_tier, -c.time.seconds))
            reasons.append(f"no model of tier >= {need} fits {budget_words}: {best.spec.id} is the best that does")
    reasons.append(_describe(best))
    if best.profile == "group_offload":
        reasons.append("group_offload is the least checked memory profile (published 14B figure ~1.6x this formula): "
                       "leave some spare GPU memory")
    reasons.extend(best.plan.notes)
    reasons.append(f"time basis: {best.time.throughput.source}")
    alternatives = []
    for c in sorted(fitting, key=lambda c: c.time.seconds):
        if c is best:
            continue
        alternatives.append(Alternative(model=c.spec.id, vram_gb=round(c.vram_gib, 2),
                                        speed_factor=round(best.time.seconds / c.time.seconds, 3)))
        reasons.append("alternative " + _describe(c))
    return SelectModelResponse(
        recommended_model=best.spec.id, complexity=complexity.label, confidence=round(complexity.confidence, 4),
        estimated_time_seconds=round(best.time.seconds, 2), vram_required_gb=round(best.vram_gib, 2),
        alternatives=alternatives, reasons=reasons)


def _tiny_response(deps, request: SelectModelRequest, complexity: ComplexityResult, reasons: list[str],
                   steps: int | None, guidance: float | None) -> SelectModelResponse:
    spec = CATALOG[TINY]
    plan = _plan_for(spec, request.duration_seconds, request.target_resolution, request.prompt, steps, guidance)
    t = estimate_time(deps, spec, plan, "gpu")
    store = getattr(deps, "store", None)
    measured = store is not None and store.timing(TINY, STEP_RATE) is not None
    reasons.append(f"tiny: {plan.gen_width}x{plan.gen_height}x{plan.gen_frames} frames on the CPU (no GPU memory), "
                   f"~{_fmt_time(t.seconds)} = {t.steps} steps x {t.step_seconds:.3f} s "
                   f"({'measured' if measured else 'prior'} engine rate) + {t.encode_seconds:.1f} s decode/encode"
                   + (f" + {t.load_seconds:.0f} s load" if t.load_seconds else ""))
    reasons.extend(plan.notes)
    return SelectModelResponse(
        recommended_model=TINY, complexity=complexity.label, confidence=round(complexity.confidence, 4),
        estimated_time_seconds=round(t.seconds, 2), vram_required_gb=0.0, alternatives=[], reasons=reasons)


def choose_model(deps, request: GenerationRequest, device: DeviceInfo | None = None) -> tuple[str, list[str]]:
    """The model for a generate request with ``model="auto"``: the fastest adequate model that
    fits this device in a memory profile the loader applies (``tiny`` without a GPU), and the
    reasons. Uses the request's own steps, guidance, duration and resolution."""
    question = SelectModelRequest(prompt=request.prompt, duration_seconds=request.duration_seconds,
                                  target_resolution=request.resolution)
    answer = select_model(deps, question, device=device, num_inference_steps=request.num_inference_steps,
                          guidance_scale=request.guidance_scale, profiles=LOADER_PROFILES)
    return answer.recommended_model, answer.reasons


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
