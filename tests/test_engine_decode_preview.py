"""Streaming VAE decode and latent previews, checked against the real tiny Wan pipeline."""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

from studio.engine.decode import (
    iter_decoded_frames,
    normalize_latents,
    to_uint8_frames,
    unnormalize_latents,
)
from studio.engine.preview import LatentPreviewer, estimate_denoised, pool_to_latent_grid, synthetic_clips
from studio.models.tiny import build_tiny_pipeline

CALL = dict(prompt="a red fox running in the snow", negative_prompt="blurry", height=48, width=64,
            num_frames=13, num_inference_steps=3, guidance_scale=5.0)


@pytest.fixture(scope="module")
def pipe():
    pipe = build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def previewer(pipe):
    start = time.perf_counter()
    prev = LatentPreviewer.fit(pipe.vae)
    prev.fit_seconds = time.perf_counter() - start
    return prev


# ---------------------------------------------------------------------- decode
def test_streaming_decode_matches_pipeline_output(pipe):
    latents = pipe(**CALL, output_type="latent", generator=torch.Generator().manual_seed(0)).frames
    video = pipe(**CALL, output_type="np", generator=torch.Generator().manual_seed(0)).frames[0]
    chunks = list(iter_decoded_frames(pipe.vae, latents))

    t = latents.shape[2]
    assert [c.shape[0] for c in chunks] == [1] + [4] * (t - 1)
    frames = np.concatenate(chunks)
    assert frames.dtype == np.uint8
    assert frames.shape == (4 * (t - 1) + 1, 48, 64, 3) == video.shape
    assert np.abs(frames.astype(np.float64) - video * 255.0).max() <= 1.0


def test_streaming_decode_equals_vae_decode(pipe):
    latents = torch.randn(1, 16, 4, 6, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = to_uint8_frames(pipe.vae.decode(unnormalize_latents(pipe.vae, latents)).sample)
    got = np.concatenate(list(iter_decoded_frames(pipe.vae, latents)))
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


def test_streaming_decode_is_lazy_and_keeps_grad_mode(pipe, monkeypatch):
    calls = []
    original = pipe.vae.decoder.forward
    monkeypatch.setattr(pipe.vae.decoder, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    stream = iter_decoded_frames(pipe.vae, torch.zeros(1, 16, 5, 2, 2))
    first = next(stream)
    assert first.shape == (1, 16, 16, 3) and len(calls) == 1
    assert torch.is_grad_enabled()  # no_grad must not leak out between chunks
    assert sum(c.shape[0] for c in stream) == 16 and len(calls) == 5


def test_streaming_decode_with_patchified_vae():
    # A miniature of Wan 2.2's VAE: residual blocks, 2x2 patchify, 16x spatial, 48 channels.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = AutoencoderKLWan(
            base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=0, is_residual=True,
            in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16,
            latents_mean=[0.1] * 48, latents_std=[2.0] * 48,
        ).eval()
    latents = torch.randn(1, 48, 3, 2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = to_uint8_frames(vae.decode(unnormalize_latents(vae, latents)).sample)
    chunks = list(iter_decoded_frames(vae, latents))
    assert [c.shape for c in chunks] == [(1, 32, 48, 3), (4, 32, 48, 3), (4, 32, 48, 3)]
    # Per-frame post_quant_conv may round differently from the batched one in the last bit.
    assert np.abs(np.concatenate(chunks).astype(int) - ref.astype(int)).max() <= 1


def test_normalize_is_inverse_of_unnormalize(pipe):
    z = torch.randn(1, 16, 2, 3, 3)
    assert torch.allclose(unnormalize_latents(pipe.vae, normalize_latents(pipe.vae, z)), z, atol=1e-5)


# ---------------------------------------------------------------------- estimate_denoised
def test_estimate_at_last_step_is_x_next():
    x_prev, x_next = torch.randn(1, 16, 2, 3, 3), torch.randn(1, 16, 2, 3, 3)
    assert torch.equal(estimate_denoised(x_prev, x_next, 0.25, 0.0), x_next)
    with pytest.raises(ValueError):
        estimate_denoised(x_prev, x_next, 0.5, 0.5)


def test_estimate_matches_scheduler_step_indexing():
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(6)
    sched.set_begin_index(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 2, 3, 3, generator=gen)
    for i, t in enumerate(sched.timesteps):
        v = torch.randn(x.shape, generator=gen)
        x_next = sched.step(v, t, x, return_dict=False)[0]
        assert sched.step_index == i + 1  # so inside a callback, step i spans sigmas[i] -> sigmas[i + 1]
        est = estimate_denoised(x, x_next, sched.sigmas[i], sched.sigmas[i + 1])
        assert torch.allclose(est, x - sched.sigmas[i] * v, atol=1e-4)
        x = x_next


def test_estimate_inside_pipeline_callback(pipe):
    init = torch.randn(1, 16, 4, 6, 8, generator=torch.Generator().manual_seed(7))
    state = {"x_prev": init, "estimates": []}

    def on_step_end(p, i, t, kwargs):
        x_next = kwargs["latents"]
        assert p.scheduler.step_index == i + 1
        sigmas = p.scheduler.sigmas
        state["estimates"].append(estimate_denoised(state["x_prev"], x_next, sigmas[i], sigmas[i + 1]))
        state["x_prev"] = x_next
        return {}

    out = pipe(**CALL, latents=init.clone(), output_type="latent", callback_on_step_end=on_step_end).frames
    assert len(state["estimates"]) == CALL["num_inference_steps"]
    assert torch.equal(state["estimates"][-1], out)
    assert all(torch.isfinite(e).all() for e in state["estimates"])


# ---------------------------------------------------------------------- previewer
def _heldout_pairs(vae, seed=123):
    clips = synthetic_clips(6, seed)
    pixels = torch.from_numpy(clips).permute(0, 4, 1, 2, 3) * 2 - 1
    with torch.no_grad():
        latents = normalize_latents(vae, vae.encode(pixels).latent_dist.mode())
        decoded = vae.decode(unnormalize_latents(vae, latents)).sample
    rgb = ((decoded.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).numpy()
    _, _, t, h, w = latents.shape
    return latents, pool_to_latent_grid(rgb, (t, h, w))  # [B, C, T, h, w], [B, T, h, w, 3]


def test_previewer_fit_is_cheap_and_beats_flat_colours(pipe, previewer):
    assert previewer.weights.shape == (17, 3)
    assert np.isfinite(previewer.fit_rmse) and previewer.fit_rmse < 0.1
    assert previewer.fit_seconds < 10  # ~0.5 s on an idle 2-core CPU; slack for loaded CI boxes

    latents, target = _heldout_pairs(pipe.vae)
    vecs = latents.permute(0, 2, 3, 4, 1).numpy()
    pred = np.clip(vecs @ previewer.weights[:-1] + previewer.weights[-1], 0, 1)
    rmse = np.sqrt(np.mean((pred - target) ** 2))
    grey = np.sqrt(np.mean((0.5 - target) ** 2))
    mean_colour = np.sqrt(np.mean((target.reshape(-1, 3).mean(0) - target) ** 2))  # oracle flat colour
    assert rmse < 0.8 * mean_colour < grey

    # to_rgb agrees with the raw linear map at the latent resolution.
    img = previewer.to_rgb(latents[:1], frame=1, width=latents.shape[-1])
    assert np.abs(img.astype(int) - np.round(pred[0, 1] * 255).astype(int)).max() <= 1


def test_previewer_is_deterministic(pipe, previewer):
    assert np.array_equal(LatentPreviewer.fit(pipe.vae).weights, previewer.weights)


def test_to_rgb_shapes_and_errors(previewer):
    latents = torch.randn(1, 16, 3, 6, 8)
    img = previewer.to_rgb(latents)
    assert img.dtype == np.uint8 and img.shape == (192, 256, 3)
    assert np.array_equal(img, previewer.to_rgb(latents, frame=1))
    assert np.array_equal(previewer.to_rgb(latents, frame=-1), previewer.to_rgb(latents, frame=2))
    assert previewer.to_rgb(latents, width=100).shape == (75, 100, 3)
    with pytest.raises(IndexError):
        previewer.to_rgb(latents, frame=3)
    with pytest.raises(ValueError):
        previewer.to_rgb(torch.randn(1, 4, 3, 6, 8))


def test_save_load_and_cache(tmp_path, pipe, previewer, monkeypatch):
    path = tmp_path / "previews" / "tiny.npz"
    previewer.save(path)
    loaded = LatentPreviewer.load(path)
    assert np.array_equal(loaded.weights, previewer.weights) and loaded.fit_rmse == previewer.fit_rmse
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.npz"]

    def no_refit(*args, **kwargs):
        raise AssertionError("cache should have been used")

    monkeypatch.setattr(LatentPreviewer, "fit", classmethod(no_refit))
    assert np.array_equal(LatentPreviewer.load_or_fit(pipe.vae, path).weights, previewer.weights)

    monkeypatch.undo()
    fresh = tmp_path / "fresh.npz"
    assert np.array_equal(LatentPreviewer.load_or_fit(pipe.vae, fresh).weights, previewer.weights)
    assert fresh.is_file()
