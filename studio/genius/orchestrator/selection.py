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
``model_cpu_offload``, ``group_offload``; fastest first, the first that fits is used) and
``total = load + steps x step time + offload transfers + decode/encode``.

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

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from studio.engine.plan import GenerationPlan, make_plan
from studio.engine.request import GenerationRequest, JsonModel, Resolution, strip_prompt
from studio.models.catalog import CATALOG, TINY, ModelSpec
from studio.models.cost.architectures import ARCHITECTURES, Architecture
from studio.models.cost.timing import STEP_RATE, TimeEstimate, estimate_time, latent_tokens
from studio.models.cost.vram import FIT_HEADROOM, GIB, LOADER_PROFILES, PROFILES, MemoryEstimate, memory_estimate

TIME_BUDGET_S = 1800.0                 # "reasonable time" for prefer_quality: a policy
Complexity = Literal["simple", "moderate", "complex"]


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
