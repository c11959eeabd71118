"""Loading pipelines: the offline tiny models and hub models, through one ``from_pretrained`` path.

A model's catalog entry names its pipeline class (``WanPipeline`` for text-to-video,
``WanVACEPipeline`` for masked video generation, ``WanAnimatePipeline`` for pose- and
face-driven character video, ``WanImageToVideoPipeline`` for first-last-frame-to-video);
loading is the same for all.

Loaded pipelines are cached and reused across tasks. Only one model is resident at a time:
real Wan models take most of a GPU, so switching models evicts the previous one first.
Hub models are downloaded only when a task asks for them, with download progress reported.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

# Imported here, in whichever thread imports the studio first, and not lazily in the worker:
# diffusers' lazy module is not safe to import from two threads at once.
from diffusers import (
    AutoencoderKLWan,
    HeliosPipeline,
    HeliosPyramidPipeline,
    WanAnimatePipeline,
    WanImageToVideoPipeline,
    WanPipeline,
    WanVACEPipeline,
)
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from studio.errors import InvalidRequest, ModelUnavailable
from studio.models.catalog import (
    MODELS,
    TASK_LABELS,
    TINY,
    TINY_ANIMATE,
    TINY_HELIOS,
    TINY_HELIOS_DISTILLED,
    TINY_I2V,
    TINY_I2V_FIRST,
    TINY_TI2V,
    TINY_VACE,
    ModelSpec,
    get_spec,
)
from studio.models.cost.architectures import ARCHITECTURES
from studio.models.cost.timing import Acceleration, PlannedRun, run_shape
from studio.models.cost.vram import (
    LOADER_PROFILES,
    STUDIO_SETUP,
    PipelineSetup,
    fits,
    group_fits,
    memory_estimate,
    profiles_from,
    speed_setup,
)
from studio.models.hub import hub_offline, in_cache
from studio.models.speed import (
    PLANNING_DEVICE,
    DeviceFacts,
    SpeedPolicy,
    SpeedSettings,
    apply_speed,
    attention_probe,
    choose_speed,
    expected_acceleration,
    expected_setup,
    in_effect,
    read_device,
)
from studio.models.tiny import (
    ensure_tiny_animate_model,
    ensure_tiny_helios_distilled_model,
    ensure_tiny_helios_model,
    ensure_tiny_i2v_first_model,
    ensure_tiny_i2v_model,
    ensure_tiny_model,
    ensure_tiny_ti2v_model,
    ensure_tiny_vace_model,
)

ProgressFn = Callable[[float, str], None]
log = logging.getLogger(__name__)

# ModelSpec.pipeline -> class (imported above, not looked up lazily: see the import comment).
_PIPELINES = {"WanPipeline": WanPipeline, "WanVACEPipeline": WanVACEPipeline,
              "WanAnimatePipeline": WanAnimatePipeline, "WanImageToVideoPipeline": WanImageToVideoPipeline,
              "HeliosPipeline": HeliosPipeline, "HeliosPyramidPipeline": HeliosPyramidPipeline}
# The offline models (repo_id None): the function that builds and saves each one.
_TINY_BUILDERS = {TINY: ensure_tiny_model, TINY_VACE: ensure_tiny_vace_model,
                  TINY_ANIMATE: ensure_tiny_animate_model, TINY_I2V: ensure_tiny_i2v_model,
                  TINY_I2V_FIRST: ensure_tiny_i2v_first_model, TINY_TI2V: ensure_tiny_ti2v_model,
                  TINY_HELIOS: ensure_tiny_helios_model, TINY_HELIOS_DISTILLED: ensure_tiny_helios_distilled_model}


def cuda_available() -> bool:
    return torch.cuda.is_available()


@dataclass(frozen=True)
class DeviceMemory:
    """This process's device, as a worker reports it (``studio.jobs.workers``)."""

    device: str  # "cpu" or the GPU's name
    total_gb: float | None  # None on the CPU: no separate memory to report
    used_gb: float | None


def device_memory() -> DeviceMemory:
    """The device tasks run on here and its memory in use (by every process on a GPU)."""
    if not cuda_available():
        return DeviceMemory("cpu", None, None)
    free, total = torch.cuda.mem_get_info()
    return DeviceMemory(torch.cuda.get_device_name(), total / 2**30, (total - free) / 2**30)


def default_model(task: str = "t2v") -> str:
    """The offline tiny model of ``task`` without a CUDA device, else its smallest real Wan model
    (``wan2.1-t2v-1.3b`` for ``t2v``, ``wan2.1-vace-1.3b`` for ``vace``, ``wan2.2-animate-14b`` for
    ``animate``, ``wan2.1-flf2v-14b`` for ``i2v``)."""
    specs = [s for s in MODELS.values() if s.task == task]
    if cuda_available():
        return min((s for s in specs if s.repo_id is not None), key=lambda s: s.params_b).id
    return _offline_model(task)


def default_image_model(images: int) -> str:
    """The model a generation with ``images`` frames (1: first, 2: first and last) runs when it
    names none: the offline tiny one without a CUDA device, else the first real one in the catalog
    (``wan2.1-i2v-14b-480p``, ``wan2.1-flf2v-14b``)."""
    fitting = [s for s in MODELS.values() if s.task == "i2v" and s.images == images]
    real = [s for s in fitting if s.repo_id is not None]
    return (real[0] if cuda_available() and real else next(s for s in fitting if s.repo_id is None)).id


def runnable_spec(task: str, model_id: str | None, what: str) -> ModelSpec:
    """The ``task`` model a feature's model path runs (``model_id``, or the server's default for
    ``task``), refused with ``ModelUnavailable`` (503) when it cannot be loaded here and with
    ``InvalidRequest`` when ``model_id`` is a model of another task; ``what`` names the path."""
    spec = get_spec(model_id or default_model(task))
    if spec.task != task:
        fitting = ", ".join(s.id for s in MODELS.values() if s.task == task)
        raise InvalidRequest(f"model: {spec.id} is a {spec.task} model; {what} runs a {task} model ({fitting})")
    reason = unavailable_reason(spec)
    if reason is not None:
        raise ModelUnavailable(f"{what} runs {TASK_LABELS[task]} and {reason}")
    return spec


def _offline_model(task: str) -> str:
    return next(s.id for s in MODELS.values() if s.task == task and s.repo_id is None)


def unavailable_reason(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot be loaded here, from cheap checks (no download): ``None`` when it can
    (an offline model; a hub model on a CUDA machine that is cached or may download)."""
    if spec.repo_id is None:
        return None
    if not cuda_available():
        return f"{spec.id} needs a CUDA GPU and this machine has none; use model '{_offline_model(spec.task)}'"
    if hub_offline() and not _cached(spec):
        return (f"{spec.id} ({spec.repo_id}) is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                f"use model '{_offline_model(spec.task)}' or download it first")
    return None


def _cached(spec: ModelSpec) -> bool:
    return in_cache(spec.repo_id, "model_index.json")


@dataclass
class LoadedModel:
    """A ready pipeline with what the engine needs beside it."""

    spec: ModelSpec
    pipe: object  # diffusers.WanPipeline (or the pipeline class the spec names)
    device: torch.device
    memory_profile: str
    load_seconds: float
    previewer_path: Path  # where the engine caches this VAE's latent->RGB preview projection
    previewer: object | None = None  # the engine's, fitted on first use (studio.engine.preview)
    speed: SpeedSettings = field(default_factory=SpeedSettings)  # compile, attention, VAE (studio.models.speed)
    warm_shapes: set[tuple[int, int, int, int]] = field(default_factory=set)  # run_shape()s run since the load

    @property
    def acceleration(self) -> Acceleration:
        """The speed settings its runs have now (a compile that failed shows as eager)."""
        return in_effect(self.pipe, self.speed).acceleration

    def is_cold(self, plan: PlannedRun, rows: int = 1) -> bool:
        """Whether running ``plan`` (``rows`` at once) compiles first: a compiled transformer that
        has not run this shape since the load."""
        return self.speed.compile and run_shape(plan, rows) not in self.warm_shapes

    def ran(self, plan: PlannedRun, rows: int = 1) -> None:
        """Note that ``plan``'s shape has run (its compile, if any, is paid)."""
        self.warm_shapes.add(run_shape(plan, rows))


def _download(spec: ModelSpec, on_progress: ProgressFn) -> Path:
    """The model's files from the hub cache, downloading (with progress) if needed."""
    from huggingface_hub import snapshot_download
    from tqdm.auto import tqdm

    class _Reporter(tqdm):  # snapshot_download drives one bar over all files' bytes
        def update(self, n: float = 1) -> bool | None:
            shown = super().update(n)
            if self.total:
                on_progress(self.n / self.total, f"Downloading {spec.id}: {self.n / 2**30:.1f}/{self.total / 2**30:.1f} GiB")
            return shown

    try:
        return Path(snapshot_download(spec.repo_id, local_files_only=True))
    except Exception:
        pass  # not cached yet
    if hub_offline():
        raise ModelUnavailable(
            f"{spec.id} ({spec.repo_id}) is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"use model '{_offline_model(spec.task)}' or download it first")
    try:
        return Path(snapshot_download(spec.repo_id, tqdm_class=_Reporter))
    except Exception as exc:
        raise ModelUnavailable(f"could not download {spec.id} from the hub ({spec.repo_id}): {type(exc).__name__}") from exc


class ModelCache:
    """Keeps the most recently used pipeline loaded; thread-safe."""

    def __init__(self, models_dir: Path):
        self.models_dir = Path(models_dir)
        self._lock = threading.Lock()
        self._current: LoadedModel | None = None
        # model id -> the fastest profile still allowed: a faster one ran out of memory in this
        # process. The fit rule is a formula; the device's own answer overrules it from then on.
        self._fastest_allowed: dict[str, str] = {}
        self._chosen_profile: dict[str, str] = {}  # model id -> the profile its last load chose

    @property
    def loaded_model(self) -> str | None:
        return self._current.spec.id if self._current else None

    @property
    def loaded_profile(self) -> str | None:
        """The memory profile of the resident model (one of ``LOADER_PROFILES``, or ``cpu`` for
        the offline models), or None."""
        return self._current.memory_profile if self._current else None

    def acceleration(self, model_id: str, profile: str) -> Acceleration:
        """The speed settings ``model_id`` runs with in ``profile`` here: the resident model's own
        (a failed compile shows as eager), else what a load would choose on this device (on a
        server without a GPU, on ``PLANNING_DEVICE``)."""
        current = self._current
        if current is not None and current.spec.id == model_id:
            return current.acceleration
        device = _cuda_facts() if cuda_available() else PLANNING_DEVICE
        return expected_acceleration(device, profile, SpeedPolicy.from_env())

    def is_warm(self, model_id: str, plan: PlannedRun) -> bool:
        """Whether ``model_id`` is resident and already ran ``plan``'s shape (no compile ahead)."""
        current = self._current
        return current is not None and current.spec.id == model_id and not current.is_cold(plan)

    def profile_for(self, model_id: str) -> str:
        """The memory profile ``model_id`` runs in here: the resident model's, else the one a load
        would choose now (free memory plus what this process's allocator holds: a resident model is
        evicted first); ``gpu`` for the offline models, which need no GPU memory."""
        current = self._current
        if current is not None and current.spec.id == model_id:
            return current.memory_profile if current.memory_profile in LOADER_PROFILES else "gpu"
        spec = get_spec(model_id)
        if spec.repo_id is None or not cuda_available():
            return "gpu"
        return choose_memory_profile(spec, torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved(),
                                     self.memory_setup(), self.fastest_allowed(model_id))

    def fastest_allowed(self, model_id: str) -> str:
        """The fastest memory profile a load of ``model_id`` may choose here: ``gpu``, unless a
        faster one ran out of memory in this process (``out_of_memory``)."""
        return self._fastest_allowed.get(model_id, LOADER_PROFILES[0])

    def memory_setup(self) -> PipelineSetup:
        """The precisions a model's memory takes here (fp8 blocks, the VAE's dtype): the resident
        model's, else what a load would choose on this device (``PLANNING_DEVICE`` without one)."""
        current = self._current
        if current is not None and current.memory_profile in LOADER_PROFILES:
            return speed_setup(current.speed.fp8, current.speed.vae_dtype)
        return expected_setup(_cuda_facts() if cuda_available() else PLANNING_DEVICE, SpeedPolicy.from_env())

    def get(self, model_id: str, on_progress: ProgressFn = lambda f, msg: None) -> LoadedModel:
        """The loaded model, loading it (and evicting another) when needed."""
        with self._lock:
            if self._current is not None and self._current.spec.id == model_id:
                return self._current
            self.evict()
            self._current = self._load(get_spec(model_id), on_progress)
            return self._current

    def adopt(self, model: LoadedModel) -> None:
        """Make ``model``, built elsewhere, the resident model (benchmarks of random-weight
        pipelines at real size, which no hub holds)."""
        with self._lock:
            self.evict()
            self._current = model
            self._chosen_profile[model.spec.id] = model.memory_profile

    def evict(self) -> None:
        """Drop the resident pipeline and return its memory."""
        self._current = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def out_of_memory(self, model_id: str) -> str | None:
        """The device ran out of memory loading or running ``model_id``: evict the resident model,
        and let ``model_id``'s next load choose only profiles leaner than the one that failed.
        Returns that next profile, or None when nothing leaner is left (it failed in
        ``group_offload``) or it never took a GPU profile here."""
        self.evict()
        failed = self._chosen_profile.get(model_id)
        if failed not in LOADER_PROFILES[:-1]:
            return None
        leaner = LOADER_PROFILES[LOADER_PROFILES.index(failed) + 1]
        self._fastest_allowed[model_id] = leaner
        log.warning("%s ran out of GPU memory in %s; its next load uses %s or leaner", model_id, failed, leaner)
        return leaner

    def _load(self, spec: ModelSpec, on_progress: ProgressFn) -> LoadedModel:

        # Their per-component loading bars would flood the server log on every model switch.
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()

        started = time.perf_counter()
        pipeline_cls = _PIPELINES[spec.pipeline]
        if spec.repo_id is None:
            # One intra-op thread: OpenMP's spinning workers slow small CPU ops ~100x as soon as
            # another busy process (ffmpeg, a test client) shares this machine's two cores.
            torch.set_num_threads(1)
            folder, dtype, device = _TINY_BUILDERS[spec.id](self.models_dir), torch.float32, torch.device("cpu")
            pipe = pipeline_cls.from_pretrained(folder, dtype=dtype)
            profile = self._chosen_profile[spec.id] = "cpu"
        else:
            if not cuda_available():
                raise ModelUnavailable(unavailable_reason(spec))
            folder = _download(spec, on_progress)
            on_progress(1.0, f"Loading {spec.id} weights")
            # The Wan authors and diffusers decode with an fp32 VAE; the transformer runs in bf16.
            vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", dtype=torch.float32)
            pipe = pipeline_cls.from_pretrained(folder, vae=vae, dtype=torch.bfloat16)
            device = torch.device("cuda")
            profile = choose_memory_profile(spec, torch.cuda.mem_get_info()[0], self.memory_setup(),
                                            self.fastest_allowed(spec.id))
            self._chosen_profile[spec.id] = profile
            apply_memory_profile(pipe, profile, device)
        speed = choose_speed(read_device(device), profile, SpeedPolicy.from_env(), attention_probe(device))
        speed = apply_speed(pipe, speed)
        pipe.set_progress_bar_config(disable=True)
        return LoadedModel(spec, pipe, device, profile, time.perf_counter() - started,
                           previewer_path=self.models_dir / "previewers" / f"{spec.id}.npz", speed=speed)


@functools.cache
def _cuda_facts() -> DeviceFacts:
    return read_device(torch.device("cuda"))


# -- memory profiles ------------------------------------------------------------------------------

def profile_need_bytes(spec: ModelSpec, profile: str, setup: PipelineSetup = STUDIO_SETUP) -> float:
    """Peak GPU bytes of ``spec`` in ``profile`` at its native size and length, with ``setup``'s
    precisions: the cost model's formula (``studio.models.cost.vram.memory_estimate``). A model
    estimated from another's architecture (VACE on its T2V base) adds its extra parameters as bf16
    weights where the transformer is resident whole; with group offload they stream in like the
    rest."""

    arch = ARCHITECTURES[spec.architecture or spec.id]
    need = memory_estimate(arch, spec.native_width, spec.native_height, spec.pass_frames, profile, setup).peak_bytes
    if profile != "group_offload":
        need += max(0.0, spec.params_b * 1e9 - arch.transformer_params) * 2
    return need


def choose_memory_profile(spec: ModelSpec, free_bytes: float, setup: PipelineSetup = STUDIO_SETUP,
                          fastest_allowed: str = LOADER_PROFILES[0]) -> str:
    """The fastest memory profile, from ``fastest_allowed`` on, whose peak (``profile_need_bytes``)
    fits ``free_bytes`` by the cost model's one rule (``studio.models.cost.vram.fits``): ``gpu``
    (everything resident), ``text_encoder_offload`` (all but the text encoder, which comes in to
    encode), ``model_cpu_offload`` (one component at a time) or ``group_offload`` (weights streamed
    layer by layer, VAE resident and tiled). When none fits, ``group_offload``, the leanest: the
    run may still fit (the formula is a bound), and if not it fails with ``VramExceeded``. The
    same profiles, in the same order, and the same rule as the orchestrator's recommendations
    (``studio.models.cost.vram.LOADER_PROFILES``). ``fastest_allowed``: a faster profile ran out of
    memory here before (``ModelCache.out_of_memory``)."""

    for profile in profiles_from(fastest_allowed, LOADER_PROFILES):
        if fits(profile_need_bytes(spec, profile, setup), free_bytes):
            return profile
    return LOADER_PROFILES[-1]


def apply_memory_profile(pipe, profile: str, device: torch.device) -> None:
    """Place ``pipe`` on ``device`` in ``profile`` with diffusers' own mechanisms.

    ``text_encoder_offload`` group-offloads the text encoder alone (the transformer stays whole on
    ``device``, so regional compile still applies). ``group_offload`` is the orchestrator's recipe:
    diffusers' group offloading
    (``DiffusionPipeline.enable_group_offload``) at leaf level for every component but the VAE,
    with CUDA-stream prefetch of the next layer on a CUDA device; the VAE stays on ``device`` and
    decodes tiled (``enable_tiling``; ``studio.engine.decode`` then uses diffusers' tiled decode).
    Weights rest on the CPU. ``device`` may be the CPU (the tests apply it to the tiny model there:
    no streams, same hooks)."""
    if profile == "gpu":
        pipe.to(device)
    elif profile == "text_encoder_offload":
        # The UMT5 encoder (11 GiB) streams in leaf by leaf while it encodes and rests on the CPU
        # otherwise; every other component goes to ``device`` whole.
        resident = [name for name, part in pipe.components.items()
                    if isinstance(part, torch.nn.Module) and name != "text_encoder"]
        pipe.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"), offload_type="leaf_level",
                                  use_stream=device.type == "cuda", exclude_modules=resident)
    elif profile == "model_cpu_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif profile == "group_offload":
        pipe.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"), offload_type="leaf_level",
                                  use_stream=device.type == "cuda", exclude_modules=["vae"])
        pipe.vae.enable_tiling()
    else:
        raise ValueError(f"unknown memory profile {profile!r}")


def group_fits_here(plans: list, models: "ModelCache", budget_gb: float | None,
                    mem_get_info: Callable[[], tuple[int, int]] | None = None) -> bool:
    """Whether a batch group (same model and shape) may share one pipeline call on this device:
    ``studio.models.cost.vram.group_fits`` with the free memory the device reports now. When the group's
    model is resident, that free memory was read after its weights were loaded, so only the
    activations are asked for (in the profile it was loaded with); otherwise the whole peak, in
    the profile the loader would choose. Without CUDA only the CPU-bound offline models run, and
    only ``budget_gb`` can refuse. ``mem_get_info``: ``torch.cuda.mem_get_info`` (tests pass
    simulated figures)."""
    if mem_get_info is None:
        if not cuda_available():
            return group_fits(plans, 0.0, weights_loaded=True, budget_gb=budget_gb)
        mem_get_info = torch.cuda.mem_get_info
    free = float(mem_get_info()[0])
    loaded = models.loaded_model == plans[0].model
    setup = models.memory_setup()
    profile = models.loaded_profile if loaded else choose_memory_profile(get_spec(plans[0].model), free, setup,
                                                                         models.fastest_allowed(plans[0].model))
    if profile not in LOADER_PROFILES:  # "cpu": an offline model
        profile = "gpu"
    return group_fits(plans, free, weights_loaded=loaded, budget_gb=budget_gb, profile=profile, setup=setup)
