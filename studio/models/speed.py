"""Speed settings of a loaded pipeline, chosen per device (issue 15, part 2), with diffusers' own APIs.

What is chosen, and why:

- **Regional compile** (``ModelMixin.compile_repeated_blocks``: ``torch.compile`` of each
  transformer block, not the whole model). Measured on an H200 for Wan2.1-1.3B 480p: 1.244 s ->
  1.046 s per step (issue 15). On a CUDA device with Triton, for a transformer resident on the
  GPU (``TRANSFORMER_RESIDENT`` profiles: offload hooks and compiled blocks do not mix). The
  first run of a shape pays the compile (``bench/bench_gpu_engine.py`` reports it: a first task
  against a warm one; the cost model adds it to a cold model's estimate); later runs reuse it.
  A block whose compile fails undoes the compile and runs eagerly, in every pipeline
  (``in_effect`` notes it in the task's metadata). ``ECHOEL_COMPILE=0`` turns it off.
- **Attention backend**: diffusers' dispatcher picks among the kernels installed here, fastest
  first (FlashAttention 3 on Hopper, SageAttention, FlashAttention 2), each accepted only when a
  probe on this device agrees with PyTorch's SDPA within ``ATTENTION_TOLERANCE``; else PyTorch's
  own (``native``: SDPA with its cuDNN / flash kernels, measured fastest of the built-in ones).
  Kernels fetched from the hub (``*_hub``) are never used: nothing is downloaded at run time.
- **VAE**: fp32 as the Wan authors decode (bf16 only with ``ECHOEL_VAE_DTYPE=bfloat16``),
  tiled when the memory profile streams weights (``group_offload``), and for any one decode
  whose whole frames would not fit the GPU memory free at that moment (high resolutions:
  ``studio.engine.decode.tiling_note``; the task's notes say so) rather than running out of
  memory after the denoising is done.
- **fp8** (opt-in, ``ECHOEL_FP8=1``: it trades accuracy for speed): torchao's dynamic fp8
  activations and weights with per-row scales on the linear layers of the transformer blocks,
  on GPUs that compute in fp8 (compute capability 8.9+). Measured on an H200 with compile:
  0.976 s per step against 1.046 s, relative error 4e-2 (issue 15). Its error is measured at load
  on each quantized layer (random inputs, against the bf16 layer) and reported as ``fp8_error``.

The offline models on the CPU keep every default (eager, ``native``, fp32, untiled).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, replace
from typing import Callable

import torch

from studio.models.cost.timing import Acceleration
from studio.models.cost.vram import TRANSFORMER_RESIDENT, PipelineSetup, speed_setup

log = logging.getLogger(__name__)

NATIVE = "native"
#: Installed-kernel backends, fastest first: (diffusers backend name, the lowest CUDA compute
#: capability it runs on, the highest or None).
ATTENTION_CANDIDATES = (
    ("_flash_3", (9, 0), (9, 0)),
    ("sage", (8, 0), None),
    ("flash", (8, 0), None),
)
ATTENTION_TOLERANCE = 0.02  # the most relative L2 error against SDPA a kernel may show on a bf16 probe
FP8_CAPABILITY = (8, 9)  # Ada and newer compute in fp8
FP8_PROBE_ROWS = 64  # random input rows per layer when measuring the fp8 error


@dataclass(frozen=True)
class DeviceFacts:
    """What the choice depends on, read once per load (``read_device``)."""

    kind: str  # "cuda" or "cpu"
    capability: tuple[int, int] | None = None
    triton: bool = False  # torch.compile's GPU backend can run
    kernels: frozenset[str] = frozenset()  # ATTENTION_CANDIDATES whose package is installed here


@dataclass(frozen=True)
class SpeedPolicy:
    """The operator's say (environment): compile allowed, the VAE's dtype, fp8 wanted."""

    compile: bool = True
    vae_dtype: str = "float32"
    fp8: bool = False

    @classmethod
    def from_env(cls) -> "SpeedPolicy":
        vae = os.environ.get("ECHOEL_VAE_DTYPE", "float32").lower()
        return cls(compile=os.environ.get("ECHOEL_COMPILE", "1").lower() not in ("0", "false", "no", "off"),
                   vae_dtype=vae if vae in ("float32", "bfloat16") else "float32",
                   fp8=os.environ.get("ECHOEL_FP8", "0").lower() in ("1", "true", "yes", "on"))


@dataclass(frozen=True)
class SpeedSettings:
    """How a pipeline runs; stored with the loaded model and in each task's metadata."""

    compile: bool = False
    attention: str = NATIVE
    vae_dtype: str = "float32"
    vae_tiling: bool = False
    fp8: bool = False
    fp8_error: float | None = None  # relative L2 error of the fp8 layers against bf16, measured at load
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {**asdict(self), "notes": list(self.notes)}

    @property
    def acceleration(self) -> Acceleration:
        """What of these settings the cost model's step time depends on."""
        return Acceleration(self.compile, self.fp8)


#: The GPU an estimate plans for on a server without one: the H200 the cost model's priors were
#: measured on (compute capability 9.0, Triton), with no extra attention kernels assumed.
PLANNING_DEVICE = DeviceFacts("cuda", (9, 0), triton=True)


def read_device(device: torch.device) -> DeviceFacts:
    """This process's facts about ``device``."""
    if device.type != "cuda":
        return DeviceFacts("cpu")
    from diffusers.utils import is_flash_attn_3_available, is_flash_attn_available, is_sageattention_available
    from torch.utils._triton import has_triton

    installed = {"_flash_3": is_flash_attn_3_available(), "sage": is_sageattention_available(),
                 "flash": is_flash_attn_available()}
    return DeviceFacts("cuda", torch.cuda.get_device_capability(device), triton=has_triton(),
                       kernels=frozenset(name for name, present in installed.items() if present))


def choose_speed(device: DeviceFacts, profile: str, policy: SpeedPolicy,
                 attention_agrees: Callable[[str], bool]) -> SpeedSettings:
    """The settings for a model loaded in memory ``profile`` on ``device``. ``attention_agrees(name)``
    probes a candidate backend against SDPA (``attention_probe``; tests pass their own)."""
    if device.kind != "cuda":
        return SpeedSettings()
    notes = []
    compile_ = policy.compile and device.triton and profile in TRANSFORMER_RESIDENT
    if policy.compile and not compile_:
        notes.append("no regional compile: " + ("Triton is not installed" if not device.triton
                                                else f"the {profile} memory profile offloads weights"))
    attention = NATIVE
    for name, lowest, highest in ATTENTION_CANDIDATES:
        runs_here = name in device.kernels and device.capability is not None and device.capability >= lowest \
            and (highest is None or device.capability <= highest)
        if not runs_here:
            continue
        if attention_agrees(name):
            attention = name
            break
        notes.append(f"attention {name} refused: it disagrees with SDPA beyond {ATTENTION_TOLERANCE:g}")
    fp8 = policy.fp8 and device.capability is not None and device.capability >= FP8_CAPABILITY
    if policy.fp8 and not fp8:
        notes.append(f"no fp8: it needs compute capability {FP8_CAPABILITY[0]}.{FP8_CAPABILITY[1]}+ "
                     f"(this GPU: {device.capability[0]}.{device.capability[1]})" if device.capability
                     else "no fp8: the GPU's compute capability is unknown")
    return SpeedSettings(compile_, attention, policy.vae_dtype, profile == "group_offload", fp8, None, tuple(notes))


def expected_acceleration(device: DeviceFacts, profile: str, policy: SpeedPolicy) -> Acceleration:
    """What ``choose_speed`` would give a model loaded in ``profile`` on ``device``, for the cost
    model, before any load (no attention probe: the backend does not enter the step time)."""
    return choose_speed(device, profile, policy, lambda name: False).acceleration


def expected_setup(device: DeviceFacts, policy: SpeedPolicy) -> PipelineSetup:
    """The memory setup (``studio.models.cost.vram``) of a model ``choose_speed`` would load on
    ``device``: fp8 blocks where fp8 is wanted and computed, the VAE in the policy's dtype."""
    chosen = choose_speed(device, "gpu", policy, lambda name: False)
    return speed_setup(chosen.fp8, chosen.vae_dtype)


def attention_probe(device: torch.device) -> Callable[[str], bool]:
    """``attention_agrees`` for ``device``: the backend's output on random bf16 inputs of a Wan
    head size against ``native`` SDPA, within ``ATTENTION_TOLERANCE`` (relative L2)."""
    def agrees(name: str) -> bool:
        from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

        generator = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn(1, 512, 4, 128, generator=generator, device=device, dtype=torch.bfloat16)
                   for _ in range(3))
        try:
            reference = dispatch_attention_fn(q, k, v, backend=AttentionBackendName(NATIVE)).float()
            candidate = dispatch_attention_fn(q, k, v, backend=AttentionBackendName(name)).float()
        except Exception as error:  # not built for this device, a missing symbol, ...
            log.warning("attention backend %s does not run here: %s", name, error)
            return False
        return relative_error(candidate, reference) <= ATTENTION_TOLERANCE

    return agrees


def relative_error(candidate: torch.Tensor, reference: torch.Tensor) -> float:
    return float((candidate - reference).norm() / reference.norm().clamp_min(1e-12))


def apply_speed(pipe, settings: SpeedSettings, compile_options: dict | None = None) -> SpeedSettings:
    """Put ``settings`` on ``pipe`` (after its memory profile placed it); returns them with what
    was measured on the way (the fp8 error). ``compile_options``: ``torch.compile``'s arguments
    (default ``fullgraph=True``; tests pass their own backend)."""
    if settings.fp8:  # before compile: the compiled blocks must trace the fp8 layers
        error, layers = quantize_fp8(pipe)
        settings = replace(settings, fp8_error=round(error, 5)) if layers else \
            replace(settings, fp8=False, notes=settings.notes + ("no fp8: no block layer has fp8-sized dimensions",))
    if settings.attention != NATIVE:
        for transformer in _transformers(pipe):
            transformer.set_attention_backend(settings.attention)
    if settings.vae_dtype == "bfloat16":
        pipe.vae.to(torch.bfloat16)
    if settings.vae_tiling:
        pipe.vae.enable_tiling()
    if settings.compile:
        for transformer in _transformers(pipe):
            if getattr(transformer, "_repeated_blocks", None):
                _compile_blocks(transformer, compile_options or {"fullgraph": True})
    return settings


def in_effect(pipe, settings: SpeedSettings) -> SpeedSettings:
    """``settings`` as ``pipe`` runs now: a compile that failed (and was undone) shows as eager,
    with the reason in the notes. What a task's metadata reports."""
    failures = [t.compile_failure for t in _transformers(pipe) if getattr(t, "compile_failure", None)]
    if not (settings.compile and failures):
        return settings
    return replace(settings, compile=False, notes=settings.notes + (f"regional compile failed ({failures[0]}); eager",))


def _compile_blocks(transformer: torch.nn.Module, options: dict) -> None:
    """Regional compile, with a way back: a block whose compile fails (at its first call, inside
    any pipeline) undoes the compile of every block of ``transformer`` and runs eagerly, so no
    feature fails for want of a compiler; ``in_effect`` then says so."""
    transformer.compile_repeated_blocks(**options)
    blocks = [m for m in transformer.modules() if getattr(m, "_compiled_call_impl", None) is not None]

    def undo(reason: str) -> None:
        for block in blocks:
            block._compiled_call_impl = None
        transformer.compile_failure = reason

    for block in blocks:
        block._compiled_call_impl = _eager_on_failure(block, block._compiled_call_impl, undo)


def _eager_on_failure(block: torch.nn.Module, compiled: Callable, undo: Callable[[str], None]) -> Callable:
    def call(*args, **kwargs):
        try:
            return compiled(*args, **kwargs)
        except Exception as error:
            if not is_compile_failure(error):
                raise
            log.warning("regional compile failed (%s); the transformer runs eagerly: %s", type(error).__name__, error)
            undo(type(error).__name__)
            return block._call_impl(*args, **kwargs)

    return call


def quantize_fp8(pipe) -> tuple[float, int]:
    """fp8 activations and weights (per-row scales, torchao) for the linear layers of the
    transformers' repeated blocks (torchao leaves out layers whose sizes are not multiples of
    16); returns the quantized layers' mean relative L2 error against their bf16 selves on random
    inputs (``FP8_PROBE_ROWS`` rows each), and how many there are."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    errors = []
    for transformer in _transformers(pipe):
        blocks = {f"{name}." for name, module in transformer.named_modules()
                  if type(module).__name__ in (getattr(transformer, "_repeated_blocks", None) or ())}

        def in_a_block(module: torch.nn.Module, name: str) -> bool:
            return isinstance(module, torch.nn.Linear) and any(name.startswith(prefix) for prefix in blocks)

        layers = {name: module for name, module in transformer.named_modules() if in_a_block(module, name)}
        probes = {name: _probe_input(layer) for name, layer in layers.items()}
        kinds = {name: type(layer.weight) for name, layer in layers.items()}
        with torch.no_grad():
            before = {name: layers[name](x).float() for name, x in probes.items()}
            config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
            quantize_(transformer, config, filter_fn=in_a_block)
            errors += [relative_error(layers[name](x).float(), before[name]) for name, x in probes.items()
                       if type(layers[name].weight) is not kinds[name]]  # quantized: a tensor of torchao's
    return (sum(errors) / len(errors) if errors else 0.0), len(errors)


def is_compile_failure(error: BaseException) -> bool:
    """Whether ``error`` came from torch.compile (Dynamo tracing or the Inductor backend)."""
    return type(error).__module__.startswith(("torch._dynamo", "torch._inductor"))


def _probe_input(layer: torch.nn.Linear) -> torch.Tensor:
    generator = torch.Generator(layer.weight.device).manual_seed(0)
    return torch.randn(FP8_PROBE_ROWS, layer.in_features, device=layer.weight.device, dtype=layer.weight.dtype,
                       generator=generator)


def _transformers(pipe) -> list:
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]

