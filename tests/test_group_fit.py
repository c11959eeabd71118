"""Batch grouping's GPU fit check (``studio.models.cost.vram.group_fits``) with simulated device memory.

The device figures are what ``torch.cuda.mem_get_info()`` would report on an "80 GB" card
(80 GiB, see the orchestrator's docstring) after the model's weights were loaded: total minus
the resident weights minus 1 GiB for the CUDA context and allocator slack.
"""

from __future__ import annotations

import pytest

from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest
from studio.models.catalog import CATALOG, TINY
from studio.models.cost.architectures import ARCHITECTURES
from studio.models.cost.vram import (
    FIT_HEADROOM,
    GIB,
    STUDIO_SETUP,
    group_fits,
    group_vram_gb,
    resident_weight_bytes,
    speed_setup,
)

M14, M13 = "wan2.1-t2v-14b", "wan2.1-t2v-1.3b"
CARD_80GB = 80 * GIB
CONTEXT = 1 * GIB


def plans(model: str, n: int, resolution: str = "480p") -> list:
    request = GenerationRequest(prompt="a lighthouse in a storm", duration_seconds=5, resolution=resolution)
    return [make_plan(request, CATALOG[model], seed=i) for i in range(n)]


def free_after_load(model: str, profile: str = "gpu", card: float = CARD_80GB) -> float:
    return card - resident_weight_bytes(ARCHITECTURES[model], profile) - CONTEXT


def test_14b_batches_two_on_an_80gb_card_once_loaded():
    free = free_after_load(M14)
    group = plans(M14, 2)
    # The old check compared the whole peak (weights included) with the memory left after
    # loading those weights: it refused even a single 14B task.
    assert group_vram_gb(group) > free / GIB
    assert group_fits(group, free, weights_loaded=True, budget_gb=None)
    assert group_fits(plans(M14, 1), free, weights_loaded=True, budget_gb=None)


def test_the_activations_still_bound_the_group():
    free = free_after_load(M14)
    arch = ARCHITECTURES[M14]
    n = 1
    while group_fits(plans(M14, n + 1), free, weights_loaded=True, budget_gb=None):
        n += 1
        assert n < 64
    # The largest group's extra need (peak - resident weights, with headroom) fits; one more does not.
    extra = group_vram_gb(plans(M14, n)) * GIB - resident_weight_bytes(arch, "gpu")
    assert extra * FIT_HEADROOM <= free
    extra_more = group_vram_gb(plans(M14, n + 1)) * GIB - resident_weight_bytes(arch, "gpu")
    assert extra_more * FIT_HEADROOM > free
    assert n >= 2


def test_not_loaded_yet_needs_the_whole_peak():
    group = plans(M14, 2)
    need = group_vram_gb(group) * GIB
    assert group_fits(group, need * FIT_HEADROOM + 1, weights_loaded=False, budget_gb=None)
    assert not group_fits(group, need, weights_loaded=False, budget_gb=None)
    # Loaded, the same free memory is plenty: only the activations are still asked for.
    extra = need - resident_weight_bytes(ARCHITECTURES[M14], "gpu")
    assert extra * FIT_HEADROOM + 1 < need
    assert group_fits(group, extra * FIT_HEADROOM + 1, weights_loaded=True, budget_gb=None)


def test_model_offload_keeps_no_weights_resident():
    arch = ARCHITECTURES[M14]
    assert resident_weight_bytes(arch, "model_cpu_offload") == 0.0
    assert resident_weight_bytes(arch, "group_offload") == arch.vae_params * 4
    group = plans(M14, 2)
    need = group_vram_gb(group, "model_cpu_offload") * GIB
    # Offloaded weights come back for every run: loaded or not, the whole peak must fit.
    assert not group_fits(group, need, weights_loaded=True, budget_gb=None, profile="model_cpu_offload")


def test_a_budget_refuses_what_the_device_would_take():
    free = free_after_load(M14)
    two, four = plans(M14, 2), plans(M14, 4)
    # 480p 14B: decoding (task by task) sets the peak of small groups; from three tasks on the
    # batched denoising phase grows past it.
    assert group_vram_gb(four) > group_vram_gb(two)
    budget = (group_vram_gb(two) + group_vram_gb(four)) / 2
    assert group_fits(four, free, weights_loaded=True, budget_gb=None)
    assert group_fits(two, free, weights_loaded=True, budget_gb=budget)
    assert not group_fits(four, free, weights_loaded=True, budget_gb=budget)


@pytest.mark.parametrize("free", [0.0, 1e18])
def test_tiny_runs_on_the_cpu_and_always_fits_the_device(free):
    group = plans(TINY, 4)
    assert group_fits(group, free, weights_loaded=True, budget_gb=None)
    assert group_fits(group, free, weights_loaded=False, budget_gb=1.0)


# -- what Worker._fits calls: the loader's view of this device --------------------------------


class FakeModels:
    """A ModelCache as the worker sees it: which model is resident, in which profile, with which
    precisions (the defaults: bf16 transformer, fp32 VAE)."""

    def __init__(self, loaded_model=None, loaded_profile=None, setup=STUDIO_SETUP):
        self.loaded_model, self.loaded_profile, self.setup = loaded_model, loaded_profile, setup

    def memory_setup(self):
        return self.setup

    def fastest_allowed(self, model_id):
        return "gpu"


def test_group_fits_here_with_simulated_device_memory():
    from studio.models.loader import group_fits_here

    free = free_after_load(M14)
    info = lambda: (int(free), int(CARD_80GB))  # noqa: E731  (torch.cuda.mem_get_info's shape)
    resident = FakeModels(M14, "gpu")
    assert group_fits_here(plans(M14, 2), resident, None, mem_get_info=info)
    assert not group_fits_here(plans(M14, 4), resident, (group_vram_gb(plans(M14, 2)) + 1), mem_get_info=info)
    # Not resident: the whole peak is asked for, in the profile the loader would pick for that memory.
    from studio.models.loader import choose_memory_profile

    assert choose_memory_profile(CATALOG[M14], free) == "model_cpu_offload"
    need = group_vram_gb(plans(M14, 2), "model_cpu_offload") * GIB
    assert need * FIT_HEADROOM <= free
    assert group_fits_here(plans(M14, 2), FakeModels(M13, "gpu"), None, mem_get_info=info)
    # Less memory: the loader would pick group offload, and the group must fit that profile's peak.
    lean = group_vram_gb(plans(M14, 2), "group_offload") * GIB
    assert choose_memory_profile(CATALOG[M14], lean) == "group_offload"
    enough = lambda: (int(lean * FIT_HEADROOM) + 1, int(CARD_80GB))  # noqa: E731
    short = lambda: (int(lean), int(CARD_80GB))  # noqa: E731
    assert group_fits_here(plans(M14, 2), FakeModels(M13, "gpu"), None, mem_get_info=enough)
    assert not group_fits_here(plans(M14, 2), FakeModels(M13, "gpu"), None, mem_get_info=short)
    # On a CPU-only server only a budget can refuse.
    assert group_fits_here(plans(TINY, 3), FakeModels(TINY, "cpu"), None)


def test_a_group_is_sized_in_the_precisions_the_model_runs_with():
    # With fp8 blocks the 14B's weights take about half: a pair that would not fit in bf16 does.
    from studio.models.loader import choose_memory_profile, group_fits_here

    pair = plans(M14, 2)
    fp8 = speed_setup(fp8=True, vae_dtype="float32")
    assert group_vram_gb(pair, "gpu", fp8) < group_vram_gb(pair, "gpu") - 10
    free = 46 * GIB
    assert group_fits(pair, free, weights_loaded=False, profile="gpu", setup=fp8)
    assert not group_fits(pair, free, weights_loaded=False, profile="gpu")
    # The worker's check: for that memory the loader would load it whole in fp8, and the pair fits that.
    assert choose_memory_profile(CATALOG[M14], free, fp8) == "gpu"
    info = lambda: (int(free), int(CARD_80GB))  # noqa: E731
    assert group_fits_here(pair, FakeModels(M13, "gpu", fp8), None, mem_get_info=info)
