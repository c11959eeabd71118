"""The offline tiny Wan pipeline: deterministic build, atomic save, offline load, real calls."""

from __future__ import annotations

import os
import threading

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from diffusers import WanPipeline

from studio.models.tiny import TINY_MODEL_DIRNAME, build_tiny_pipeline, ensure_tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return ensure_tiny_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def pipe(tiny_dir):
    pipe = WanPipeline.from_pretrained(tiny_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_build_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = build_tiny_pipeline()
    assert torch.equal(torch.get_rng_state(), before)
    second = build_tiny_pipeline()
    for name in ("transformer", "vae", "text_encoder"):
        assert _state_dicts_equal(getattr(first, name), getattr(second, name)), name


def test_saved_model_loads_offline_with_same_weights(tiny_dir, pipe):
    assert tiny_dir.name == TINY_MODEL_DIRNAME
    assert (tiny_dir / "model_index.json").is_file()
    fresh = build_tiny_pipeline()
    for name in ("transformer", "vae", "text_encoder"):
        assert _state_dicts_equal(getattr(fresh, name), getattr(pipe, name)), name
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert pipe.scheduler.config.shift == pytest.approx(3.0)
    # No temp/stale folders left next to the model.
    assert [p.name for p in tiny_dir.parent.iterdir()] == [TINY_MODEL_DIRNAME]


def test_ensure_is_idempotent(tiny_dir):
    stamp = (tiny_dir / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_model(tiny_dir.parent) == tiny_dir
    assert (tiny_dir / "model_index.json").stat().st_mtime_ns == stamp


def test_ensure_replaces_an_incomplete_folder_and_old_temp_dirs(tmp_path):
    broken = tmp_path / TINY_MODEL_DIRNAME
    (broken / "vae").mkdir(parents=True)
    (broken / "vae" / "config.json").write_text("{}")
    crashed = tmp_path / f".{TINY_MODEL_DIRNAME}-tmp-crashed"  # left by a killed builder
    crashed.mkdir()
    os.utime(crashed, (1, 1))
    folder = ensure_tiny_model(tmp_path)
    assert folder == broken
    assert (folder / "transformer" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [TINY_MODEL_DIRNAME]


def test_ensure_from_two_threads(tmp_path):
    results, errors = [], []

    def worker():
        try:
            results.append(ensure_tiny_model(tmp_path))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [tmp_path / TINY_MODEL_DIRNAME] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [TINY_MODEL_DIRNAME]
    WanPipeline.from_pretrained(results[0])  # complete and loadable


def test_tokenizer_matches_text_encoder(pipe):
    tok = pipe.tokenizer
    assert len(tok) == pipe.text_encoder.config.vocab_size
    ids = tok("A Red cat, dancing!").input_ids
    assert ids[-1] == tok.eos_token_id  # T5-style trailing </s>
    assert ids == tok("a red cat , dancing !").input_ids  # lowercased, punctuation split
    assert tok("zyzzyva").input_ids == [tok.unk_token_id, tok.eos_token_id]
    batch = tok(["a cat"], padding="max_length", max_length=512, truncation=True, return_tensors="pt")
    assert batch.input_ids.shape == (1, 512)
    assert batch.attention_mask.sum().item() == 3
    assert (batch.input_ids[0, 3:] == tok.pad_token_id).all()


def test_pipeline_call_latent_and_np(pipe):
    kwargs = dict(prompt="a blue bird flying over the sea", negative_prompt="blurry", height=48, width=64,
                  num_frames=9, num_inference_steps=2, guidance_scale=5.0)
    lat = pipe(**kwargs, output_type="latent", generator=torch.Generator().manual_seed(3)).frames
    assert lat.shape == (1, 16, 3, 6, 8)
    assert torch.isfinite(lat).all()
    again = pipe(**kwargs, output_type="latent", generator=torch.Generator().manual_seed(3)).frames
    assert torch.equal(lat, again)
    video = pipe(**kwargs, output_type="np", generator=torch.Generator().manual_seed(3)).frames
    assert video.shape == (1, 9, 48, 64, 3)
    assert np.isfinite(video).all() and video.min() >= 0.0 and video.max() <= 1.0


def test_rope_covers_512px_and_65_frames(pipe):
    # WanRotaryPosEmbed slices per-axis tables of rope_max_seq_len rows; 512 px / 65 frames
    # need 32 / 32 / 17 rows. Checking the rope module alone avoids a 17k-token attention.
    transformer = pipe.transformer
    assert transformer.config.rope_max_seq_len >= 32
    hidden = torch.zeros(1, 16, (65 - 1) // 4 + 1, 512 // 8, 512 // 8)
    cos, sin = transformer.rope(hidden)
    assert cos.shape == sin.shape == (1, 17 * 32 * 32, 1, transformer.config.attention_head_dim)
