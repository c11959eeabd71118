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

**VRAM and time** come from the one cost model, ``studio.models.cost`` (its docstring gives
every formula, coefficient and prior): the peak memory of each profile (``gpu``,
``text_encoder_offload``, ``model_cpu_offload``, ``group_offload``; fastest first, the first that
fits is used) at the server's precisions, and ``total = load + first-run compile + steps x step
time + offload transfers + decode/encode``.

``speed_factor`` of an alternative = estimated time of the recommended model / estimated time of
the alternative (above 1: the alternative is faster).

**Complexity** (simple / moderate / complex) of the prompt: ``studio.genius.orchestrator.complexity`` (its formula and word lists).

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

from dataclasses import dataclass
from typing import Any

from studio.engine.plan import GenerationPlan, make_plan
from studio.engine.request import GenerationRequest
from studio.genius.orchestrator.complexity import COMPLEX_FROM, SIMPLE_BELOW, ComplexityResult, classify_prompt
from studio.genius.orchestrator.schema import Alternative, SelectModelRequest, SelectModelResponse
from studio.models.catalog import CATALOG, TINY, ModelSpec
from studio.models.cost.architectures import ARCHITECTURES, Architecture
from studio.models.cost.timing import STEP_RATE, CostInputs, TimeEstimate, estimate_time, latent_tokens
from studio.models.cost.vram import (
    FIT_HEADROOM,
    GIB,
    LOADER_PROFILES,
    PROFILES,
    MemoryEstimate,
    fits,
    memory_estimate,
    profiles_from,
)
from studio.models.loader import DeviceMemory

TIME_BUDGET_S = 1800.0                 # "reasonable time" for prefer_quality: a policy
_TIER = {"simple": 1, "moderate": 2, "complex": 3}


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


def device_of_workers(devices: list[DeviceMemory]) -> DeviceInfo | None:
    """The device a task gets among Celery workers (``FeatureServices.worker_devices``): the
    GPU with the most memory. A worker owns its GPU (one worker per GPU) and evicts its resident
    model before loading another, so the whole card is the budget. None without workers (tasks
    run in this process: ``detect_device``); a CPU device when no worker has a GPU."""
    if not devices:
        return None
    gpus = [d for d in devices if d.total_gb is not None]
    if not gpus:
        return DeviceInfo(False, None, "CPU (every worker)")
    best = max(gpus, key=lambda d: d.total_gb)
    return DeviceInfo(True, best.total_gb, f"{best.device}, the largest of {len(gpus)} worker GPU(s)")


def _plan_for(spec: ModelSpec, duration_seconds: float, resolution: str, prompt: str,
              num_inference_steps: int | None = None, guidance_scale: float | None = None,
              mode: str = "standard") -> GenerationPlan:
    values: dict[str, Any] = {"prompt": prompt, "duration_seconds": max(1.0, min(60.0, duration_seconds)),
                              "resolution": resolution, "mode": mode}
    if mode == "fast":  # the model's own steps and guidance
        return make_plan(GenerationRequest(**values), spec, seed=0)
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
    return budget_gib is not None and fits(mem.peak_bytes, budget_gib * GIB)


def _allowed(costs: CostInputs, model_id: str, request: SelectModelRequest, profiles: tuple[str, ...]) -> tuple[str, ...]:
    """``profiles`` that ``model_id`` may take: on this device (no ``max_vram_gb``), none faster
    than one that ran out of memory here (``CostInputs.fastest_allowed``), as the loader does."""
    return profiles if request.max_vram_gb is not None else profiles_from(costs.fastest_allowed(model_id), profiles)


def _candidates(costs: CostInputs, request: SelectModelRequest, budget: float | None, steps: int | None,
                guidance: float | None, profiles: tuple[str, ...]) -> list[Candidate]:
    out = []
    for model_id, spec in CATALOG.items():
        arch = ARCHITECTURES.get(model_id)
        if arch is None or arch.on_cpu or (request.mode == "fast" and spec.fast is None):
            continue
        plan = _plan_for(spec, request.duration_seconds, request.target_resolution, request.prompt, steps, guidance,
                         request.mode)
        memory = {p: memory_estimate(arch, plan.gen_width, plan.gen_height, plan.gen_frames, p, costs.setup)
                  for p in PROFILES}
        cand = Candidate(spec, arch, plan, memory)
        cand.profile = next((p for p in _allowed(costs, model_id, request, profiles) if _fits(memory[p], budget)), None)
        cand.time = estimate_time(costs, spec, plan, cand.profile or "gpu")
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
            + (f" + {t.warmup_seconds:.0f} s first-run compile" if t.warmup_seconds else "")
            + (f" + {t.transfer_seconds:.1f} s weight transfers" if t.transfer_seconds else "")
            + f" + {t.encode_seconds:.1f} s decode/encode")


def select_model(costs: CostInputs, request: SelectModelRequest, *, device: DeviceInfo | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 profiles: tuple[str, ...] = PROFILES) -> SelectModelResponse:
    """The recommendation for ``request`` on this device. ``costs``: this server's measured
    rates and resident model (the edges pass ``FeatureServices.costs``). Rules in the module
    docstring; ``profiles``: the memory profiles allowed, fastest first."""
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

    cands = _candidates(costs, request, budget, steps, guidance, profiles)
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
        return _tiny_response(costs, request, complexity, reasons + [tiny_reason], steps, guidance)

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


def _tiny_response(costs: CostInputs, request: SelectModelRequest, complexity: ComplexityResult, reasons: list[str],
                   steps: int | None, guidance: float | None) -> SelectModelResponse:
    spec = CATALOG[TINY]
    plan = _plan_for(spec, request.duration_seconds, request.target_resolution, request.prompt, steps, guidance,
                     request.mode)
    t = estimate_time(costs, spec, plan, "gpu")
    store = costs.rates.store
    measured = store is not None and store.timing(TINY, STEP_RATE) is not None
    reasons.append(f"tiny: {plan.gen_width}x{plan.gen_height}x{plan.gen_frames} frames on the CPU (no GPU memory), "
                   f"~{_fmt_time(t.seconds)} = {t.steps} steps x {t.step_seconds:.3f} s "
                   f"({'measured' if measured else 'prior'} engine rate) + {t.encode_seconds:.1f} s decode/encode"
                   + (f" + {t.load_seconds:.0f} s load" if t.load_seconds else ""))
    reasons.extend(plan.notes)
    return SelectModelResponse(
        recommended_model=TINY, complexity=complexity.label, confidence=round(complexity.confidence, 4),
        estimated_time_seconds=round(t.seconds, 2), vram_required_gb=0.0, alternatives=[], reasons=reasons)


def choose_model(costs: CostInputs, request: GenerationRequest, device: DeviceInfo | None = None) -> tuple[str, list[str]]:
    """The model for a generate request with ``model="auto"``: the fastest adequate model that
    fits this device in a memory profile the loader applies (``tiny`` without a GPU), and the
    reasons. Uses the request's own steps, guidance, duration and resolution."""
    question = SelectModelRequest(prompt=request.prompt, duration_seconds=request.duration_seconds,
                                  target_resolution=request.resolution, mode=request.mode)
    answer = select_model(costs, question, device=device, num_inference_steps=request.num_inference_steps,
                          guidance_scale=request.guidance_scale, profiles=LOADER_PROFILES)
    return answer.recommended_model, answer.reasons

