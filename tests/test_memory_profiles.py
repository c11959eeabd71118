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
from studio.genius.orchestrator.selection import DeviceInfo, _plan_for, select_model
from studio.models.catalog import CATALOG, TINY, get_spec
from studio.models.cost import vram
from studio.models.cost.architectures import ARCHITECTURES
from studio.models.cost.timing import CostInputs
from studio.models.loader import (
    ModelCache,
    apply_memory_profile,
    choose_memory_profile,
    profile_need_bytes,
)
from tests.conftest import SMALL

GIB = 2**30
M13, A14 = "wan2.1-t2v-1.3b", "wan2.2-t2v-a14b"


def test_loader_and_orchestrator_share_the_profiles():
    assert vram.LOADER_PROFILES == vram.PROFILES
    assert "group_offload" in vram.LOADER_PROFILES


@pytest.mark.parametrize("model", [M13, "wan2.1-t2v-14b", "wan2.2-ti2v-5b", A14, "wan2.1-vace-14b"])
def test_the_fastest_profile_that_fits_the_free_memory(model):
    spec = get_spec(model)
    needs = [profile_need_bytes(spec, p) for p in vram.PROFILES]
    assert needs == sorted(needs, reverse=True) and len(set(needs)) == len(needs) and needs[-1] > 0
    for profile, need in zip(vram.PROFILES, needs):  # just enough for it: it, not a faster one
        assert choose_memory_profile(spec, need * vram.FIT_HEADROOM) == profile
    assert choose_memory_profile(spec, needs[0]) == "text_encoder_offload"
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


def test_text_encoder_offload_streams_the_encoder_alone_and_generates_the_same_video(tiny, tmp_path):
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.group_offloading import _get_group_onload_device

    plan = make_plan(parse_request({**SMALL, "seed": 6}), CATALOG[TINY], seed=6)
    plain = run_text_to_video(tiny, plan, QuietHooks(), tmp_path / "plain.mp4", tmp_path / "plain.jpg")

    apply_memory_profile(tiny.pipe, "text_encoder_offload", torch.device("cpu"))
    pipe = tiny.pipe
    assert _get_group_onload_device(pipe.text_encoder) == torch.device("cpu")  # the encoder: hooked
    for name in ("transformer", "vae"):  # the rest: resident whole, no hooks (regional compile applies)
        assert not any("group_offloading" in HookRegistry.check_if_exists_or_initialize(m).hooks
                       for m in getattr(pipe, name).modules()), name
    assert not pipe.vae.use_tiling

    offloaded = run_text_to_video(tiny, plan, QuietHooks(), tmp_path / "text.mp4", tmp_path / "text.jpg")
    assert offloaded.frames == plain.frames
    assert np.abs(_frames(tmp_path / "plain.mp4") - _frames(tmp_path / "text.mp4")).mean() < 0.5


def test_a_24gb_card_keeps_the_13b_transformer_resident_with_the_encoder_offloaded():
    arch, spec = ARCHITECTURES[M13], get_spec(M13)
    gpu = vram.memory_estimate(arch, 832, 480, 81, "gpu")
    offloaded = vram.memory_estimate(arch, 832, 480, 81, "text_encoder_offload")
    encoder = arch.text_encoder.params * vram.STUDIO_SETUP.text_bytes
    for phase in ("denoise", "decode"):  # the encoder's 11 GiB are gone where the peak is set
        assert gpu.phases[phase] - offloaded.phases[phase] == pytest.approx(encoder)
    # An RTX 4090 with little taken runs it whole (the H200 measured a 22.5 GiB peak) ...
    assert choose_memory_profile(spec, 23 * GIB) == "gpu"
    # ... and with a desktop's 3 GiB taken, the encoder goes, the transformer stays (not model_cpu_offload).
    free = 21 * GIB
    assert not vram.fits(profile_need_bytes(spec, "gpu"), free)
    assert choose_memory_profile(spec, free) == "text_encoder_offload"


@pytest.mark.parametrize("free_gib,profile", [(23, "gpu"), (15, "text_encoder_offload"), (5, "group_offload")])
def test_loader_and_orchestrator_name_the_same_profile_for_the_same_memory(free_gib, profile):
    # One fit rule (vram.fits): the profile the recommendation names for this device's free memory
    # is the one the loader applies. (The loader once wanted 15 % over the peak and the
    # orchestrator 5 %: 23 GiB was "gpu" to one and "text_encoder_offload" to the other.)
    spec = get_spec(M13)
    assert choose_memory_profile(spec, free_gib * GIB) == profile
    card = DeviceInfo(True, float(free_gib), "simulated GPU")
    request = SelectModelRequest(prompt="a red fox in snow", target_resolution="480p")
    answer = select_model(CostInputs.of(None), request, device=card)
    plan = _plan_for(spec, request.duration_seconds, "480p", request.prompt)
    in_profile = vram.memory_estimate(ARCHITECTURES[M13], plan.gen_width, plan.gen_height, plan.gen_frames, profile)
    named = {a.model: a.vram_gb for a in answer.alternatives} | {answer.recommended_model: answer.vram_required_gb}
    assert named[M13] == pytest.approx(in_profile.peak_gib, abs=0.01)


def test_a_decode_too_big_for_the_free_memory_runs_tiled_and_says_so(tiny, tmp_path, monkeypatch):
    from studio.engine import t2v
    from studio.engine.decode import tiling_note, untiled_decode_bytes

    vae, latents = tiny.pipe.vae, torch.randn(1, 16, 3, 12, 20)
    need = untiled_decode_bytes(vae, latents)
    assert need == pytest.approx(4870 * (12 * 8) * (20 * 8) * 4)  # fp32 Wan2.1 VAE, 96x160 frames
    assert tiling_note(vae, latents, None) is None  # the CPU: no separate memory to run out of
    assert tiling_note(vae, latents, need * 2) is None
    assert "decoded in tiles" in tiling_note(vae, latents, need)  # within the headroom: too tight

    plan = make_plan(parse_request({**SMALL, "seed": 7}), CATALOG[TINY], seed=7)
    whole = run_text_to_video(tiny, plan, QuietHooks(), tmp_path / "whole.mp4", tmp_path / "whole.jpg")
    monkeypatch.setattr(t2v, "free_gpu_bytes", lambda vae: 1024.0)  # a GPU with 1 KiB left
    tiled = run_text_to_video(tiny, plan, QuietHooks(), tmp_path / "tiled.mp4", tmp_path / "tiled.jpg")
    assert whole.notes == [] and len(tiled.notes) == 1 and "decoded in tiles" in tiled.notes[0]
    assert tiled.frames == whole.frames and not vae.use_tiling  # tiled for that decode only
    assert np.abs(_frames(tmp_path / "whole.mp4") - _frames(tmp_path / "tiled.mp4")).mean() < 0.5
