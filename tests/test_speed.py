"""Speed settings chosen per device (issue 15, part 2): the selection logic for every device kind,
the attention probe against SDPA, and regional compile through the engine on the tiny model,
including a compile that fails and is undone (the run goes on eagerly, and says so)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from studio.engine.plan import make_plan
from studio.engine.request import parse_request
from studio.engine.t2v import QuietHooks, run_text_to_video
from studio.models.catalog import CATALOG, TINY
from studio.models.speed import (
    ATTENTION_TOLERANCE,
    DeviceFacts,
    SpeedPolicy,
    SpeedSettings,
    apply_speed,
    attention_probe,
    choose_speed,
    in_effect,
)
from tests import test_memory_profiles
from tests.conftest import SMALL

tiny = test_memory_profiles.tiny  # the fixture: the tiny model, loaded fresh for each test
_frames = test_memory_profiles._frames

H100 = DeviceFacts("cuda", (9, 0), triton=True, kernels=frozenset({"_flash_3", "sage"}))
A100 = DeviceFacts("cuda", (8, 0), triton=True, kernels=frozenset({"_flash_3", "flash"}))


def agrees_with(*names: str):
    return lambda name: name in names


def test_the_cpu_keeps_every_default():
    assert choose_speed(DeviceFacts("cpu"), "cpu", SpeedPolicy(), agrees_with("_flash_3")) == SpeedSettings()


def test_a_resident_model_on_a_hopper_gpu_compiles_and_takes_the_fastest_kernel_that_agrees():
    chosen = choose_speed(H100, "gpu", SpeedPolicy(), agrees_with("_flash_3", "sage"))
    assert (chosen.compile, chosen.attention, chosen.vae_dtype, chosen.vae_tiling) == (True, "_flash_3", "float32",
                                                                                       False)
    # A kernel that disagrees with SDPA is refused, with the reason; the next one is tried.
    refused = choose_speed(H100, "gpu", SpeedPolicy(), agrees_with("sage"))
    assert refused.attention == "sage" and any("_flash_3 refused" in note for note in refused.notes)


def test_kernels_run_only_where_they_are_built_for_the_device():
    # FlashAttention 3 is Hopper-only: an A100 with it installed falls to FlashAttention 2.
    assert choose_speed(A100, "gpu", SpeedPolicy(), agrees_with("_flash_3", "flash")).attention == "flash"
    bare = DeviceFacts("cuda", (8, 9), triton=True)
    assert choose_speed(bare, "gpu", SpeedPolicy(), agrees_with("_flash_3", "sage", "flash")).attention == "native"


def test_offloaded_weights_are_not_compiled_and_stream_through_a_tiled_vae():
    chosen = choose_speed(H100, "group_offload", SpeedPolicy(), agrees_with())
    assert (chosen.compile, chosen.vae_tiling) == (False, True)
    assert any("group_offload memory profile" in note for note in chosen.notes)
    no_triton = choose_speed(DeviceFacts("cuda", (9, 0)), "gpu", SpeedPolicy(), agrees_with())
    assert not no_triton.compile and any("Triton" in note for note in no_triton.notes)


def test_the_operator_turns_compile_off_and_the_vae_to_bf16(monkeypatch):
    monkeypatch.setenv("ECHOEL_COMPILE", "0")
    monkeypatch.setenv("ECHOEL_VAE_DTYPE", "bfloat16")
    chosen = choose_speed(H100, "gpu", SpeedPolicy.from_env(), agrees_with("_flash_3"))
    assert (chosen.compile, chosen.vae_dtype, chosen.notes) == (False, "bfloat16", ())  # asked for: no note


def test_the_attention_probe_accepts_what_matches_sdpa_and_refuses_what_does_not_run():
    agrees = attention_probe(torch.device("cpu"))
    assert agrees("_native_math")  # the same attention by another kernel: within ATTENTION_TOLERANCE
    assert not agrees("flash")  # flash_attn is not installed here: it cannot run, so it is refused
    assert ATTENTION_TOLERANCE <= 0.05


def test_regional_compile_runs_the_same_video(tiny, tmp_path):
    plan = make_plan(parse_request({**SMALL, "seed": 3}), CATALOG[TINY], seed=3)
    run_text_to_video(tiny, plan, QuietHooks(), tmp_path / "eager.mp4", tmp_path / "eager.jpg")
    tiny.speed = SpeedSettings(compile=True)
    apply_speed(tiny.pipe, tiny.speed, compile_options={"backend": "eager", "fullgraph": True})  # Dynamo, no C++
    blocks = [m for m in tiny.pipe.transformer.modules() if type(m).__name__ == "WanTransformerBlock"]
    assert blocks and all(b._compiled_call_impl is not None for b in blocks)
    run_text_to_video(tiny, plan, QuietHooks(), tmp_path / "compiled.mp4", tmp_path / "compiled.jpg")
    assert tiny.speed.compile
    assert np.abs(_frames(tmp_path / "eager.mp4") - _frames(tmp_path / "compiled.mp4")).mean() < 0.5


def _broken_backend(graph, example_inputs):
    """A torch.compile backend that cannot compile (as on a machine without a compiler)."""
    raise RuntimeError("no compiler for this device")


def test_a_compile_that_fails_is_undone_and_the_run_goes_on_eagerly(tiny, tmp_path):
    plan = make_plan(parse_request({**SMALL, "seed": 4}), CATALOG[TINY], seed=4)
    tiny.speed = SpeedSettings(compile=True)
    apply_speed(tiny.pipe, tiny.speed, compile_options={"backend": _broken_backend})
    output = run_text_to_video(tiny, plan, QuietHooks(), tmp_path / "out.mp4", tmp_path / "out.jpg")
    assert output.frames > 0 and (tmp_path / "out.mp4").stat().st_size > 0
    blocks = [m for m in tiny.pipe.transformer.modules() if type(m).__name__ == "WanTransformerBlock"]
    assert all(b._compiled_call_impl is None for b in blocks)  # every block eager from the first failure on
    ran = in_effect(tiny.pipe, tiny.speed)
    assert not ran.compile and "regional compile failed (BackendCompilerFailed); eager" in ran.notes


def test_the_way_back_to_eager_is_in_the_blocks_so_every_pipeline_has_it(tiny):
    """Not only text-to-video: a direct call of the transformer (as the editing features' and
    Helios's pipelines make) survives a compile that fails too."""
    apply_speed(tiny.pipe, SpeedSettings(compile=True), compile_options={"backend": _broken_backend})
    transformer = tiny.pipe.transformer
    inputs = (torch.randn(1, 16, 2, 8, 8), torch.tensor([500]), torch.randn(1, 8, 32))
    with torch.no_grad():
        out = transformer(*inputs, return_dict=False)[0]
    assert out.shape == (1, 16, 2, 8, 8) and transformer.compile_failure == "BackendCompilerFailed"


def test_every_result_says_how_its_model_ran(http):
    from tests.conftest import wait_for_terminal

    task_id = http.post("/v1/generate", json={**SMALL, "seed": 6}).json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    speed = http.get(f"/v1/result/{task_id}").json()["metadata"]["speed"]
    assert speed == {"compile": False, "attention": "native", "vae_dtype": "float32", "vae_tiling": False,
                     "fp8": False, "fp8_error": None, "notes": []}


def test_fp8_is_opt_in_and_needs_a_gpu_that_computes_in_fp8(monkeypatch):
    assert not choose_speed(H100, "gpu", SpeedPolicy(), agrees_with()).fp8  # off unless asked for
    monkeypatch.setenv("ECHOEL_FP8", "1")
    assert choose_speed(H100, "gpu", SpeedPolicy.from_env(), agrees_with()).fp8
    ampere = choose_speed(A100, "gpu", SpeedPolicy.from_env(), agrees_with())
    assert not ampere.fp8 and any("no fp8: it needs compute capability 8.9+ (this GPU: 8.0)" in n for n in ampere.notes)


def test_fp8_layers_run_with_their_error_measured(monkeypatch):
    """torchao's fp8 on a small Wan transformer whose layers have fp8-sized dimensions (multiples
    of 16). torchao refuses CPUs by policy, not by kernel (its fp8 matmuls run here), so the test
    lifts that check: the CPU stands in for an fp8 GPU."""
    import torchao.quantization.quant_api as quant_api
    from diffusers import WanTransformer3DModel

    from studio.models.speed import relative_error
    from studio.models.tiny import tiny_transformer_config

    monkeypatch.setattr(quant_api, "_check_hardware_support", lambda granularity: None)
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**{**tiny_transformer_config(), "attention_head_dim": 16, "ffn_dim": 64})
    transformer = transformer.to(torch.bfloat16).eval()
    inputs = (torch.randn(1, 16, 2, 8, 8, dtype=torch.bfloat16), torch.tensor([500]),
              torch.randn(1, 8, 32, dtype=torch.bfloat16))
    with torch.no_grad():
        full = transformer(*inputs, return_dict=False)[0].float()
    settings = apply_speed(SimpleNamespace(transformer=transformer), SpeedSettings(fp8=True))
    assert settings.fp8 and 0 < settings.fp8_error < 0.1, settings  # measured per layer, and small
    assert type(transformer.blocks[0].ffn.net[2].weight).__name__ == "Float8Tensor"
    assert type(transformer.proj_out.weight) is torch.nn.Parameter  # outside the blocks: untouched
    with torch.no_grad():
        fp8 = transformer(*inputs, return_dict=False)[0].float()
    assert 0 < relative_error(fp8, full) < 0.05  # the whole forward: close, not equal


def test_fp8_is_dropped_with_a_note_where_no_layer_can_take_it(tiny, monkeypatch):
    import torchao.quantization.quant_api as quant_api

    monkeypatch.setattr(quant_api, "_check_hardware_support", lambda granularity: None)
    settings = apply_speed(tiny.pipe, SpeedSettings(fp8=True))  # the tiny model's sizes are 24 and 32
    assert not settings.fp8 and settings.fp8_error is None
    assert "no fp8: no block layer has fp8-sized dimensions" in settings.notes
