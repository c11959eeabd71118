"""The cost model follows the speed settings (issue 15, part 3): a compiled or fp8 model's prior
step is the H200's measured ratio faster, a compiled model's first run of a shape pays its compile
once (the H200 figure until this machine measured its own), the learnt step rate stays a steady
one, and the text-encoder offload profile costs one crossing of the encoder's weights. The memory
estimates follow the precisions: fp8 blocks and a bf16 VAE."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from studio.config import Settings
from studio.engine.estimate import Estimator, split_warmup
from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest
from studio.jobs.store import TaskStore
from studio.models.catalog import CATALOG, TINY
from studio.models.cost import vram
from studio.models.cost.architectures import ARCHITECTURES
from studio.models.cost.timing import (
    EAGER,
    PCIE_BYTES_PER_S,
    STEP_RATE,
    WARMUP_SECONDS,
    Acceleration,
    CostInputs,
    Rates,
    estimate_time,
    rate_key,
    run_shape,
)
from studio.models.cost.vram import GIB, STUDIO_SETUP, memory_estimate, speed_setup
from studio.models.loader import ModelCache, choose_memory_profile
from studio.models.speed import SpeedSettings

M13, M14, A14 = "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-t2v-a14b"
COMPILED, FP8 = Acceleration(compile=True), Acceleration(compile=True, fp8=True)


@pytest.fixture()
def store(tmp_path):
    store = TaskStore(tmp_path / "studio.sqlite3")
    yield store
    store.close()


@dataclass
class FakeModels:
    """A server's loader as the cost model reads it: one resident model, its settings, its shapes."""

    loaded_model: str | None = M13
    speed: Acceleration = COMPILED
    profile: str = "gpu"
    warm_shapes: set = field(default_factory=set)

    def acceleration(self, model_id: str, profile: str) -> Acceleration:
        return self.speed

    def is_warm(self, model_id: str, plan) -> bool:
        return model_id == self.loaded_model and run_shape(plan) in self.warm_shapes

    def profile_for(self, model_id: str) -> str:
        return self.profile

    def fastest_allowed(self, model_id: str) -> str:
        return "gpu"

    def memory_setup(self):
        return STUDIO_SETUP


def _plan(model: str = M13, resolution: str = "480p", seconds: float = 5):
    return make_plan(GenerationRequest(prompt="a lighthouse in a storm", resolution=resolution,
                                       duration_seconds=seconds), CATALOG[model], seed=0)


def _inputs(store, models: FakeModels) -> CostInputs:
    return CostInputs.here(Rates(store), models)


def test_a_compiled_or_fp8_models_prior_step_is_the_h200_ratio_faster(store):
    plan = _plan()
    eager = estimate_time(_inputs(store, FakeModels(speed=EAGER)), CATALOG[M13], plan)
    compiled = estimate_time(_inputs(store, FakeModels(speed=COMPILED)), CATALOG[M13], plan)
    fp8 = estimate_time(_inputs(store, FakeModels(speed=FP8)), CATALOG[M13], plan)
    assert eager.step_seconds / compiled.step_seconds == pytest.approx(1.249 / 1.046)
    assert eager.step_seconds / fp8.step_seconds == pytest.approx(1.249 / 0.976)
    assert "x1.19 with regional compile" in compiled.throughput.source
    assert "regional compile + fp8" in fp8.throughput.source and "with" not in eager.throughput.source


def test_measured_rates_are_read_for_the_settings_they_ran_with(store):
    plan = _plan()
    store.record_timing(M13, STEP_RATE, 0.03)  # eager runs
    eager = estimate_time(_inputs(store, FakeModels(speed=EAGER)), CATALOG[M13], plan)
    compiled = estimate_time(_inputs(store, FakeModels(speed=COMPILED)), CATALOG[M13], plan)
    assert eager.throughput.basis == "measured" and compiled.throughput.basis == "prior"  # eager says nothing of it
    store.record_timing(rate_key(M13, COMPILED), STEP_RATE, 0.025)
    compiled = estimate_time(_inputs(store, FakeModels(speed=COMPILED)), CATALOG[M13], plan)
    assert compiled.throughput.basis == "measured" and "with regional compile" in compiled.throughput.source
    assert compiled.step_seconds == pytest.approx(eager.step_seconds * 0.025 / 0.03)  # as timed, no factor
    carried = estimate_time(_inputs(store, FakeModels(M14, COMPILED)), CATALOG[M14], _plan(M14))
    assert "carried over" in carried.throughput.source and carried.throughput.samples == 1  # compiled rows only
    # Runs that streamed their weights keep their own rate, and it never carries over.
    store.record_timing(rate_key(M13, EAGER, "group_offload"), STEP_RATE, 0.3)
    streamed = estimate_time(_inputs(store, FakeModels(speed=EAGER)), CATALOG[M13], plan, "group_offload")
    assert streamed.step_seconds == pytest.approx(eager.step_seconds * 10)
    assert estimate_time(_inputs(store, FakeModels(M14, EAGER)), CATALOG[M14], _plan(M14)).throughput.samples == 1


def test_a_cold_compiled_model_pays_its_compile_once_per_shape(store):
    models, plan = FakeModels(), _plan()
    cold = estimate_time(_inputs(store, models), CATALOG[M13], plan)
    assert cold.warmup_seconds == pytest.approx(12.9 - 1.046)  # the H200's first call less a warm step
    models.warm_shapes.add(run_shape(plan))
    warm = estimate_time(_inputs(store, models), CATALOG[M13], plan)
    assert warm.warmup_seconds == 0 and cold.seconds == pytest.approx(warm.seconds + cold.warmup_seconds)
    other = estimate_time(_inputs(store, models), CATALOG[M13], _plan(seconds=2))
    assert other.warmup_seconds > 0  # a new shape compiles again
    assert estimate_time(_inputs(store, FakeModels(speed=EAGER)), CATALOG[M13], plan).warmup_seconds == 0
    fp8 = estimate_time(_inputs(store, FakeModels(speed=FP8)), CATALOG[M13], plan)
    assert fp8.warmup_seconds == pytest.approx(124.0 - 0.976)
    a14 = estimate_time(_inputs(store, FakeModels(loaded_model=A14)), CATALOG[A14], _plan(A14))
    assert a14.warmup_seconds == pytest.approx(2 * (12.9 - 1.046))  # two experts, two compiles
    store.record_timing(rate_key(M13, COMPILED), WARMUP_SECONDS, 30.0)
    assert estimate_time(_inputs(store, models), CATALOG[M13], _plan(seconds=2)).warmup_seconds == 30.0


def test_text_encoder_offload_costs_one_crossing_of_the_encoders_weights(store):
    models, plan = FakeModels(speed=EAGER), _plan()
    gpu = estimate_time(_inputs(store, models), CATALOG[M13], plan, "gpu")
    offloaded = estimate_time(_inputs(store, models), CATALOG[M13], plan, "text_encoder_offload")
    crossing = ARCHITECTURES[M13].text_encoder.params * STUDIO_SETUP.text_bytes / PCIE_BYTES_PER_S
    assert offloaded.transfer_seconds == pytest.approx(crossing) and 0.3 < crossing < 0.5
    assert offloaded.seconds == pytest.approx(gpu.seconds + crossing)
    assert offloaded.step_seconds == gpu.step_seconds  # the transformer stays resident


def test_the_engine_estimate_uses_the_profile_the_model_has_here(store):
    plan = _plan()
    gpu = Estimator(store, FakeModels(speed=EAGER)).estimate(CATALOG[M13], plan, model_loaded=True)
    offloaded = Estimator(store, FakeModels(speed=EAGER, profile="text_encoder_offload")).estimate(
        CATALOG[M13], plan, model_loaded=True)
    assert offloaded.seconds > gpu.seconds


def test_the_first_calls_compile_is_split_from_the_steady_steps():
    assert split_warmup([13.0, 1.0, 1.1, 0.9], cold=True) == pytest.approx((16.0 - 12.0, 12.0))
    assert split_warmup([13.0, 1.0, 1.1, 0.9], cold=False) == (16.0, None)
    assert split_warmup([13.0, 1.0], cold=True) == (14.0, None)  # too short to tell the compile apart
    assert split_warmup([0.9, 1.0, 1.1, 1.0], cold=True) == pytest.approx((4.0, 0.0))  # nothing to split


def test_a_server_without_a_gpu_plans_with_the_settings_a_gpu_would_get(tmp_path, monkeypatch):
    models = ModelCache(tmp_path / "models")
    assert models.acceleration(M13, "gpu") == COMPILED  # the H200 the priors come from, default policy
    assert models.acceleration(M13, "text_encoder_offload") == COMPILED  # the transformer stays resident
    assert models.acceleration(M13, "group_offload") == EAGER  # offload hooks are not compiled
    monkeypatch.setenv("ECHOEL_FP8", "1")
    assert models.acceleration(M13, "gpu") == FP8
    monkeypatch.setenv("ECHOEL_COMPILE", "0")
    assert models.acceleration(M13, "gpu") == Acceleration(fp8=True)
    assert models.profile_for(M13) == "gpu" and not models.is_warm(M13, _plan())


def _wait(studio, task_id: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = studio.status(task_id)
        if status.status in ("completed", "failed", "cancelled"):
            return status.status
        time.sleep(0.2)
    raise AssertionError(f"{task_id} did not end")


def test_the_worker_learns_a_compiled_models_first_run_apart_and_only_once_per_shape(tmp_path):
    from studio.core import Studio

    studio = Studio(Settings(model=TINY, data_dir=tmp_path / "data"))
    try:
        model = studio.models.get(TINY)
        model.speed = SpeedSettings(compile=True)  # bookkeeping as for a compiled model (no compiler here)
        studio.start()
        request = GenerationRequest(prompt="a lighthouse in a storm", duration_seconds=1, fps=12, resolution="480p",
                                    num_inference_steps=10, model=TINY)
        plan = make_plan(request, CATALOG[TINY], seed=0)
        assert not studio.models.is_warm(TINY, plan)
        assert _wait(studio, studio.submit(request).task_id) == "completed"
        compiled = rate_key(TINY, COMPILED)  # learnt under the settings the runs had
        assert studio.store.timing_samples(compiled, WARMUP_SECONDS) == 1  # the first run's compile, apart
        assert studio.models.is_warm(TINY, plan)
        assert _wait(studio, studio.submit(request).task_id) == "completed"
        assert studio.store.timing_samples(compiled, WARMUP_SECONDS) == 1  # warm: nothing more to learn
        assert studio.store.timing_samples(compiled, STEP_RATE) == 2
        assert studio.store.timing_samples(TINY, STEP_RATE) == 0  # the eager rate is not blended with them
    finally:
        studio.stop()
        studio.store.close()
        studio.keys.close()


def test_fp8_blocks_and_a_bf16_vae_shrink_the_memory_estimate():
    arch = ARCHITECTURES[M14]
    bf16 = memory_estimate(arch, 1280, 720, 81, "gpu")
    fp8 = memory_estimate(arch, 1280, 720, 81, "gpu", speed_setup(fp8=True, vae_dtype="float32"))
    blocks = arch.block_params * arch.num_layers  # one byte less for each of their weights
    assert bf16.peak_bytes - fp8.peak_bytes == pytest.approx(blocks)
    vae16 = memory_estimate(arch, 1280, 720, 81, "gpu", speed_setup(fp8=False, vae_dtype="bfloat16"))
    assert vae16.phases["decode"] < bf16.phases["decode"] - 8 * GIB  # weights and decode in half the bytes
    assert vae16.phases["denoise"] == pytest.approx(bf16.phases["denoise"] - arch.vae_params * 2)


def test_the_14b_model_at_720p_keeps_everything_on_an_80gb_card():
    """Issue 15's memory goal, as the cost model predicts it (the figures it rests on are the
    H200's: 34.8 GiB for the 14B transformer's 720p forward)."""
    assert choose_memory_profile(CATALOG[M14], 79 * GIB) == "gpu"
    assert memory_estimate(ARCHITECTURES[M14], 1280, 720, 81, "gpu").peak_gib * vram.FIT_HEADROOM <= 80


def test_the_server_plans_memory_with_its_precisions(tmp_path, monkeypatch):
    models = ModelCache(tmp_path / "models")
    assert models.memory_setup() == STUDIO_SETUP
    monkeypatch.setenv("ECHOEL_FP8", "1")
    monkeypatch.setenv("ECHOEL_VAE_DTYPE", "bfloat16")
    assert models.memory_setup() == speed_setup(fp8=True, vae_dtype="bfloat16")


def test_the_orchestrator_fits_a14b_whole_on_80gb_only_with_fp8(store):
    from studio.genius.orchestrator.schema import SelectModelRequest
    from studio.genius.orchestrator.selection import DeviceInfo, select_model

    request = SelectModelRequest(prompt="a knight rides through a burning village at night", max_vram_gb=80,
                                 target_resolution="720p", prefer_quality=True)
    device = DeviceInfo(True, 80.0, "80 GiB GPU")
    plain = select_model(CostInputs.of(store), request, device=device)
    fp8 = select_model(CostInputs(Rates(store), setup=speed_setup(fp8=True, vae_dtype="float32")), request,
                       device=device)
    assert plain.recommended_model == fp8.recommended_model == A14
    assert any("with text_encoder_offload" in r for r in plain.reasons)
    assert any("with gpu (" in r for r in fp8.reasons) and fp8.vram_required_gb < plain.vram_required_gb


def test_offload_transfers_move_the_weights_in_their_precision(store):
    plan, arch = _plan(M14), ARCHITECTURES[M14]
    plain = estimate_time(CostInputs.of(store), CATALOG[M14], plan, "model_cpu_offload")
    fp8 = estimate_time(CostInputs(Rates(store), setup=speed_setup(fp8=True, vae_dtype="float32")), CATALOG[M14],
                        plan, "model_cpu_offload")
    fewer = arch.block_params * arch.num_layers  # one byte less for each block weight
    assert plain.transfer_seconds - fp8.transfer_seconds == pytest.approx(fewer / PCIE_BYTES_PER_S)
