"""The loader applies every memory profile the orchestrator recommends, group offload included.

Profile choice is tested with simulated free-memory figures (no GPU here); diffusers' group
offloading itself is applied to the offline tiny pipeline with the CPU as onload device (the
same hooks as on a GPU, without CUDA streams) and must not change what it generates.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from studio.engine.decode import iter_decoded_frames
from studio.engine.plan import make_plan
from studio.engine.request import parse_request
from studio.engine.t2v import QuietHooks, run_text_to_video
from studio.genius.orchestrator.schema import SelectModelRequest
from studio.genius.orchestrator.selection import DeviceInfo, select_model
from studio.models.catalog import CATALOG, TINY, get_spec
from studio.models.cost import vram
from studio.models.cost.timing import CostInputs
from studio.models.loader import ModelCache, apply_memory_profile, choose_memory_profile, profile_need_bytes
from tests.conftest import SMALL

GIB = 2**30
M13, A14 = "wan2.1-t2v-1.3b", "wan2.2-t2v-a14b"


def test_loader_and_orchestrator_share_the_profiles():
    assert vram.LOADER_PROFILES == vram.PROFILES
    assert "group_offload" in vram.LOADER_PROFILES


@pytest.mark.parametrize("model", [M13, "wan2.1-t2v-14b", "wan2.2-ti2v-5b", A14, "wan2.1-vace-14b"])
def test_the_fastest_profile_that_fits_the_free_memory(model):
    spec = get_spec(model)
    gpu, offload, group = (profile_need_bytes(spec, p) for p in vram.PROFILES)
    assert gpu > offload > group > 0
    assert choose_memory_profile(spec, gpu * 1.2) == "gpu"
    assert choose_memory_profile(spec, gpu * 1.1) == "model_cpu_offload"
    assert choose_memory_profile(spec, offload * 1.1) == "group_offload"
    assert choose_memory_profile(spec, 1 * GIB) == "group_offload"  # the leanest; VramExceeded if it fails


def test_a14b_on_a_24gb_card_gets_group_offload_from_both(tmp_path):

    from studio.jobs.store import TaskStore

    free = 24 * GIB
    assert choose_memory_profile(get_spec(A14), free) == "group_offload"
    store = TaskStore(tmp_path / "studio.sqlite3")
    try:
        answer = select_model(CostInputs.of(store),
                              SelectModelRequest(prompt="a knight rides through a burning village", max_vram_gb=24,
                                                 target_resolution="480p", prefer_quality=True),
                              device=DeviceInfo(True, 24.0, "24 GiB GPU"))
    finally:
        store.close()
    assert answer.recommended_model == A14  # the highest tier: only group offload fits it in 24 GiB
    assert any("with group_offload" in r for r in answer.reasons)
    assert not any("does not apply" in r for r in answer.reasons)


@pytest.fixture()
def tiny(tmp_path):
    return ModelCache(tmp_path / "models").get(TINY)


def _frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(float)


def test_group_offload_is_applied_and_generates_the_same_video(tiny, tmp_path):
    from diffusers.hooks import HookRegistry

    plan = make_plan(parse_request({**SMALL, "seed": 5}), CATALOG[TINY], seed=5)
    plain = run_text_to_video(tiny, plan, QuietHooks(), tmp_path / "plain.mp4", tmp_path / "plain.jpg")

    apply_memory_profile(tiny.pipe, "group_offload", torch.device("cpu"))
    pipe = tiny.pipe
    for name in ("transformer", "text_encoder"):
        hooks = HookRegistry.check_if_exists_or_initialize(getattr(pipe, name)).hooks
        leaves = [m for m in getattr(pipe, name).modules() if "group_offloading" in
                  HookRegistry.check_if_exists_or_initialize(m).hooks]
        assert leaves or "group_offloading" in hooks, name
    assert pipe.vae.use_tiling
    assert pipe._execution_device == torch.device("cpu")

    offloaded = run_text_to_video(tiny, plan, QuietHooks(), tmp_path / "group.mp4", tmp_path / "group.jpg")
    assert offloaded.frames == plain.frames
    assert np.abs(_frames(tmp_path / "plain.mp4") - _frames(tmp_path / "group.mp4")).mean() < 0.5


def test_tiled_decode_hands_out_the_streaming_chunks(tiny):
    vae = tiny.pipe.vae
    latents = torch.randn(1, vae.config.z_dim, 3, 12, 20)
    untiled = list(iter_decoded_frames(vae, latents))
    vae.enable_tiling(tile_sample_min_height=64, tile_sample_min_width=64, tile_sample_stride_height=48,
                      tile_sample_stride_width=48)
    try:
        tiled = list(iter_decoded_frames(vae, latents))
    finally:
        vae.disable_tiling()
    assert [len(c) for c in tiled] == [len(c) for c in untiled] == [1, 4, 4]
    assert all(t.shape == u.shape for t, u in zip(tiled, untiled))
