"""The VRAM model: peak GPU memory of one model x size x memory profile, and of a batch.

**VRAM (GiB = 2^30 bytes; GPU sizes are quoted that way: an "80 GB" H100 has 80 GiB).** The
peak of three phases, text encoding, denoising and VAE decoding, each = the weights resident
in that phase + that phase's activations:

- weights: parameter counts of the real configs (diffusers' ``WanTransformer3DModel`` /
  ``AutoencoderKLWan`` and transformers' ``UMT5EncoderModel`` instantiated on the meta device;
  ``studio.models.cost.architectures.ARCHITECTURES``, checked in the tests) x bytes per
  parameter: transformer bf16 (2), UMT5-XXL text encoder bf16 (2), VAE fp32 (4), as
  ``studio.models.loader`` loads them; with the speed settings' fp8 (``ECHOEL_FP8``) the
  transformer blocks' weights take 1 byte, with ``ECHOEL_VAE_DTYPE=bfloat16`` the VAE 2
  (``speed_setup``; its decode activations too).
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
- ``text_encoder_offload``: the transformer(s) and the VAE resident, the UMT5 encoder on the CPU,
  streamed in with diffusers' group offloading (leaf level, CUDA-stream prefetch) only while it
  encodes: about 11 GiB less in the denoising and decoding phases, which usually set the peak,
  for one PCIe crossing of the encoder's weights per task. Its text phase counts the encoder's
  groups as ``group_offload`` does (below).
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

One rule decides what fits a device (``fits``): ``peak x 1.05 <= available``, where available
is the memory the device reports free, or the orchestrator's ``max_vram_gb`` for a card
elsewhere. 1.05: the formula is 5 % under the measured 22.5 GiB peak of the whole 1.3B pipeline
on the H200, and with it the Wan2.2 README's TI2V-5B run (22.9 GiB) fits the 24 GiB card it was
published on. The loader, the orchestrator, batch grouping and the decode's tiling all use it, so
the profile a recommendation names is the profile the loader applies. (A batch's
``vram_budget_gb`` is a cap on the summed estimate itself, as its API says.) A profile that
proves too tight on a device anyway (an out-of-memory error) is not chosen again for that model
by that process (``studio.models.loader.ModelCache.out_of_memory``) until it restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from studio.models.catalog import get_spec
from studio.models.cost.architectures import TEXT_TOKENS, Architecture, TextEncoder, architecture_of

GIB = 2**30
FIT_HEADROOM = 1.05                    # see the module docstring ("One rule decides what fits")
VAE_TILE = 256                         # diffusers AutoencoderKLWan tile_sample_min_height/width
PROFILES = ("gpu", "text_encoder_offload", "model_cpu_offload", "group_offload")
#: The profiles ``studio.models.loader`` applies (``choose_memory_profile`` tries them in this
#: order); ``model="auto"`` and the recommendations only use these, so nothing is recommended
#: that the loader cannot run.
LOADER_PROFILES = PROFILES
Profile = Literal["gpu", "text_encoder_offload", "model_cpu_offload", "group_offload"]
#: The profiles that keep the transformer whole on the GPU (regional compile applies to them).
TRANSFORMER_RESIDENT = ("gpu", "text_encoder_offload")

#: c_vae: values alive per output pixel while decoding one latent frame (traced, see docstring).
VAE_DECODE_VALUES_PER_PIXEL = {"wan2.1": 4870.0, "wan2.2": 5375.0}


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
    fp8_blocks: bool = False  # the blocks' weights in fp8, 1 byte each (studio.models.speed's fp8)

    def transformer_bytes(self, arch: Architecture) -> float:
        """One transformer's weight bytes: with fp8 blocks, every repeated block's weights take
        one byte (their norms and per-row scales are a fraction of a percent), the rest
        ``dit_bytes``."""
        if not self.fp8_blocks:
            return float(arch.transformer_params * self.dit_bytes)
        in_blocks = arch.block_params * arch.num_layers
        return float(in_blocks + (arch.transformer_params - in_blocks) * self.dit_bytes)


STUDIO_SETUP = PipelineSetup()


def speed_setup(fp8: bool, vae_dtype: str) -> PipelineSetup:
    """The studio's setup for a model loaded with these speed settings (``studio.models.speed``):
    fp8 blocks, and the VAE's weights and decode in bf16 (2 bytes) or fp32 (4)."""
    return PipelineSetup(vae_bytes=2 if vae_dtype == "bfloat16" else 4, fp8_blocks=fp8)


def denoise_activation_bytes(arch: Architecture, tokens: int, per_token_timestep: bool | None = None) -> float:
    """Peak activation bytes of one transformer forward over ``tokens`` latent tokens."""
    per_token = arch.per_token_timestep if per_token_timestep is None else per_token_timestep
    per_tok = 2 * (2 * arch.ffn_dim + 5 * arch.dim) + (36 * arch.dim if per_token else 0)
    return float(tokens * per_tok)


def text_activation_bytes(te: TextEncoder) -> float:
    """Peak activation bytes of encoding the prompt's ``TEXT_TOKENS`` tokens with ``te``."""
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
    dit_w = setup.transformer_bytes(arch)
    vae_w = arch.vae_params * setup.vae_bytes
    act = denoise_activation_bytes(arch, tokens, setup.per_token_timestep)
    decode = vae_decode_bytes(arch, width, height, frames, setup.vae_bytes, tiled=profile == "group_offload")
    text_groups = (te.embedding_params + 4 * te.block_params) * setup.text_bytes if setup.text_encoder_on_gpu else 0.0
    if profile == "gpu":
        resident = text_w + dit_w * arch.experts + vae_w
        phases = {"text": resident + text_act, "denoise": resident + act, "decode": resident + decode}
    elif profile == "text_encoder_offload":
        resident = dit_w * arch.experts + vae_w
        phases = {"text": resident + text_groups + text_act, "denoise": resident + act, "decode": resident + decode}
    elif profile == "model_cpu_offload":
        vae_idle = vae_w if setup.vae_always_resident else 0.0
        phases = {"text": text_w + text_act + vae_idle, "denoise": dit_w + act + vae_idle, "decode": vae_w + decode}
    else:  # group_offload: the VAE stays on the GPU, the rest streams in group by group
        leaves = 2 * arch.largest_linear_params * setup.dit_bytes
        phases = {"text": vae_w + text_groups + text_act, "denoise": vae_w + leaves + act, "decode": vae_w + decode}
    return MemoryEstimate(profile, max(phases.values()), phases)


def profiles_from(fastest: str, profiles: tuple[str, ...] = PROFILES) -> tuple[str, ...]:
    """``profiles`` (fastest first) from ``fastest`` on: what a model may still take once a faster
    profile ran out of memory (all of them when ``fastest`` is not among them)."""
    return profiles[profiles.index(fastest):] if fastest in profiles else profiles


def fits(peak_bytes: float, available_bytes: float) -> bool:
    """Whether a run whose formula peak is ``peak_bytes`` fits ``available_bytes`` (a budget, or
    the device's free memory), with ``FIT_HEADROOM``: the one fit rule of the studio."""
    return peak_bytes * FIT_HEADROOM <= available_bytes


# -- batches: what a group of same-shape runs needs -----------------------------------------------

def group_vram_gb(plans: list, profile: str = "gpu", setup: PipelineSetup = STUDIO_SETUP) -> float:
    """VRAM peak (GiB) of denoising ``plans`` (same model and shape) in one batched call, with
    ``setup``'s precisions.

    Weights are shared; each forward pass (cond and uncond run one after the other) carries
    the activations of every task in the batch; decoding runs task by task afterwards. So the
    denoising phase grows by one task's activations per extra task and the other phases don't.
    """
    first = plans[0]
    arch = architecture_of(get_spec(first.model))
    single = memory_estimate(arch, first.gen_width, first.gen_height, first.gen_frames, profile, setup)
    tokens = ((first.gen_frames - 1) // 4 + 1) * (first.gen_height // (arch.vae_stride * 2)) \
        * (first.gen_width // (arch.vae_stride * 2))
    phases = dict(single.phases)
    phases["denoise"] += (len(plans) - 1) * denoise_activation_bytes(arch, tokens, setup.per_token_timestep)
    return max(phases.values()) / GIB


def resident_weight_bytes(arch: Architecture, profile: str, setup: PipelineSetup = STUDIO_SETUP) -> float:
    """Weight bytes that stay on the GPU between runs once a model is loaded in ``profile``.

    ``gpu``: every component; ``text_encoder_offload``: all but the text encoder;
    ``model_cpu_offload``: none (each component goes back to the CPU after use, unless the setup
    keeps the VAE resident); ``group_offload``: the VAE (the rest streams in group by group). These bytes are already missing from the free memory the
    device reports after loading, so a fit check must not count them twice.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
    if arch.on_cpu:
        return 0.0
    vae_w = arch.vae_params * setup.vae_bytes
    if profile == "gpu":
        text_w = arch.text_encoder.params * setup.text_bytes if setup.text_encoder_on_gpu else 0.0
        return text_w + setup.transformer_bytes(arch) * arch.experts + vae_w
    if profile == "text_encoder_offload":
        return setup.transformer_bytes(arch) * arch.experts + vae_w
    if profile == "model_cpu_offload":
        return vae_w if setup.vae_always_resident else 0.0
    return vae_w


def group_fits(plans: list, free_bytes: float, weights_loaded: bool, budget_gb: float | None = None,
               profile: str = "gpu", setup: PipelineSetup = STUDIO_SETUP) -> bool:
    """Whether ``plans`` (same model and shape) may be denoised in one batched call, with the
    weights and activations in ``setup``'s precisions (fp8 blocks, the VAE's dtype).

    - device: the group's peak (``group_vram_gb``) minus the weights already resident when
      ``weights_loaded`` (``free_bytes`` was read after loading, so they are not free any more
      and must not be asked for again) must fit ``free_bytes`` (``fits``). When the model is not
      loaded yet, the whole peak must fit.
    - budget: the group's whole peak (weights included: what the group uses on the device)
      must not exceed ``budget_gb`` (a batch's ``vram_budget_gb``, a cap on the summed estimate as
      the batch API documents it; None: no budget).

    Models that run on the CPU (``tiny``) need no GPU memory and always fit the device.
    """
    arch = architecture_of(get_spec(plans[0].model))
    need = group_vram_gb(plans, profile, setup) * GIB
    if budget_gb is not None and need > budget_gb * GIB:
        return False
    if arch.on_cpu:
        return True
    extra = need - (resident_weight_bytes(arch, profile, setup) if weights_loaded else 0.0)
    return fits(extra, free_bytes)
