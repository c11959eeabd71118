"""Model Orchestrator: the VRAM and time formulas against published and measured anchors, the
complexity classifier, the selection rules, calibration from recorded step times, REST end to
end and the Gradio handlers.

Anchor mapping (what each published figure measured, and the formula inputs that match it):

| anchor | source | setting -> formula inputs |
|---|---|---|
| 22.5 GiB, 1.3B 480x832x81 | gpu_anchor_h200.md, 3rd run | diffusers WanPipeline all on GPU, UMT5 bf16, VAE fp32 -> profile ``gpu``, studio setup |
| 4.2 / 30.2 / 34.8 GiB | gpu_anchor_h200.md, transformer only | bf16 weights + one forward's activations |
| ~11 GB, 1.3B | diffusers Wan docs (``enable_model_cpu_offload``, 480x832x81) | ``model_cpu_offload`` |
| 8.19 GB, 1.3B 480P | Wan2.1 README, ``--offload_model True --t5_cpu`` | Wan2.1 code keeps the DiT in fp32, T5 on CPU, VAE always on GPU |
| 69.1 GB, 14B 720P | Wan2.1 README, ``--offload_model True`` | as above with T5 on the GPU while encoding |
| 41.3 / 59.8 GB, A14B 480P / 720P | Wan2.2 README, offload + ``--convert_model_dtype`` | bf16, one expert at a time, per-token timestep (Wan2.2 code), VAE on GPU |
| 22.9 GB (runs on 24 GB), TI2V-5B 720P 121 f | Wan2.2 README, offload + convert + ``--t5_cpu`` | as above, T5 on CPU |
| >= 80 GB, A14B single GPU without offload | Wan2.2 README | ``gpu`` profile, 720P, both experts |

The Wan authors' own code keeps more per-token fp32 tensors than diffusers (fp32 residual stream,
per-token modulation in fp32), so the formula, written for diffusers, comes out below their
A14B figures (-13 % / -20 %); still within the 25 % the issue asks for. Not used: the diffusers
doc's "~13GB" for 14B group offloading (formula 8 GiB; the recipe's allocator and stream
behaviour is not modelled).

REST: the router is mounted on the session's ``live_server.app`` by the ``orchestrator_api``
fixture (its routes are put in front of the app's ``/v1`` catch-all and removed afterwards),
unless the app already includes it; requests go through the ``http`` fixture (auth on).
"""

from __future__ import annotations

import math

import httpx
import pytest

from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest
from studio.genius.orchestrator import complexity
from studio.genius.orchestrator import selection as orch
from studio.genius.orchestrator.complexity import COMPLEX_FROM, SIMPLE_BELOW, classify_prompt
from studio.genius.orchestrator.schema import SelectModelRequest
from studio.genius.orchestrator.selection import DeviceInfo, choose_model, select_model
from studio.jobs import store as st
from studio.jobs.store import TaskStore
from studio.models.catalog import CATALOG, GENERATION_CATALOG, TINY
from studio.models.cost import architectures, vram
from studio.models.cost.architectures import ARCHITECTURES
from studio.models.cost.timing import (
    H200_PRIOR_FLOP_S,
    STEP_RATE,
    CostInputs,
    estimate_time,
    flops_per_forward,
    flops_per_step,
    latent_tokens,
)
from studio.models.cost.vram import GIB, PipelineSetup, memory_estimate

M13, M14, M5, A14 = "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-ti2v-5b", "wan2.2-t2v-a14b"
CPU = DeviceInfo(False, None, "CPU")
H100 = DeviceInfo(True, 79.0, "NVIDIA H100 80GB HBM3")
ROUTE = "/v1/genius/orchestrator/select-model"
TOL = 0.25


def rel_err(value: float, reference: float) -> float:
    return abs(value - reference) / reference


@pytest.fixture()
def deps(tmp_path):
    """What ``select_model`` needs from the studio: the rates of a task store (fresh, no measurements)."""
    store = TaskStore(tmp_path / "studio.sqlite3")
    yield CostInputs.of(store)
    store.close()


# -- architecture data --------------------------------------------------------------------------

def test_parameter_counts_match_the_real_classes():
    """The table's counts are what diffusers / transformers instantiate from the published configs."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    def count(module):
        return sum(p.numel() for p in module.parameters())

    common = dict(patch_size=(1, 2, 2), attention_head_dim=128, text_dim=4096, freq_dim=256, cross_attn_norm=True,
                  qk_norm="rms_norm_across_heads", eps=1e-6)
    with torch.device("meta"):
        for model_id in (M13, M14, M5):
            a = ARCHITECTURES[model_id]
            t = WanTransformer3DModel(num_attention_heads=a.num_heads, ffn_dim=a.ffn_dim, num_layers=a.num_layers,
                                      in_channels=a.in_channels, out_channels=a.in_channels, **common)
            assert count(t) == a.transformer_params, model_id
            assert count(t.blocks[0]) == a.block_params, model_id
            assert a.num_heads * 128 == a.dim
        assert count(AutoencoderKLWan()) == ARCHITECTURES[M13].vae_params
        wan22_vae = AutoencoderKLWan(base_dim=160, decoder_base_dim=256, z_dim=48, in_channels=12, out_channels=12,
                                     is_residual=True, patch_size=2, scale_factor_spatial=16)
        assert count(wan22_vae) == ARCHITECTURES[M5].vae_params
        umt5 = UMT5EncoderModel(UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                           num_heads=64, relative_attention_num_buckets=32,
                                           feed_forward_proj="gated-gelu"))
        assert count(umt5) == architectures.UMT5_XXL.params
        assert count(umt5.shared) == architectures.UMT5_XXL.embedding_params
    assert architectures.UMT5_XXL.params * 2 / 1e9 == pytest.approx(11.36, abs=0.01)  # ~11 GB in bf16
    assert ARCHITECTURES[A14].experts == 2
    assert ARCHITECTURES[A14].transformer_params == ARCHITECTURES[M14].transformer_params
    assert ARCHITECTURES[M5].vae_stride == 16 and ARCHITECTURES[M5].z_dim == 48
    # every generation model has an architecture: its own, or the one it names (tiny-ti2v: tiny's)
    assert set(ARCHITECTURES) <= set(CATALOG)
    assert all(architectures.architecture_of(spec) is not None for spec in GENERATION_CATALOG.values())


def test_activation_formula_matches_a_live_tensor_trace():
    """The per-token activation formula against the bytes alive during a real diffusers forward
    (meta device: shapes only), with attention as flash/cuDNN does it (no L x L matrix)."""
    import weakref

    import torch
    import torch.nn.functional as F
    from diffusers import WanTransformer3DModel
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live = self.peak = 0

        def _free(self, n):
            self.live -= n

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {id(a) for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)}
            aliasing = any(r.alias_info is not None for r in func._schema.returns)
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and id(t) not in inputs and not aliasing:
                    n = t.untyped_storage().nbytes()
                    self.live += n
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(t, self._free, n)
            return out

    def flash_like(query=None, key=None, value=None, *args, **kwargs):
        return torch.empty(query.shape[:-1] + (value.shape[-1],), dtype=query.dtype, device=query.device)

    a = ARCHITECTURES[M13]
    frames, h, w = 11, 30, 52  # latent 11 x 60 x 104 -> tokens 11 x 30 x 52
    tokens = frames * (h // 1) * (w // 1)
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = flash_like
    try:
        with torch.device("meta"):
            model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=a.num_heads, attention_head_dim=128,
                                          in_channels=16, out_channels=16, text_dim=4096, freq_dim=256,
                                          ffn_dim=a.ffn_dim, num_layers=2, cross_attn_norm=True,
                                          qk_norm="rms_norm_across_heads").to(torch.bfloat16)
            mode = LiveBytes()
            with torch.no_grad(), mode:
                model(hidden_states=torch.empty(1, 16, frames, 2 * h, 2 * w, dtype=torch.bfloat16),
                      timestep=torch.empty(1, dtype=torch.long),
                      encoder_hidden_states=torch.empty(1, 512, 4096, dtype=torch.bfloat16), return_dict=False)
    finally:
        F.scaled_dot_product_attention = original
    assert rel_err(vram.denoise_activation_bytes(a, tokens), mode.peak) < 0.10


# -- VRAM against the anchors -------------------------------------------------------------------

WAN21_OFFLOAD_T5CPU = PipelineSetup(dit_bytes=4, text_encoder_on_gpu=False, vae_always_resident=True)
WAN21_OFFLOAD = PipelineSetup(dit_bytes=4, text_encoder_on_gpu=True, vae_always_resident=True)
WAN22_OFFLOAD_CONVERT = PipelineSetup(dit_bytes=2, vae_always_resident=True, per_token_timestep=True)
WAN22_OFFLOAD_CONVERT_T5CPU = PipelineSetup(dit_bytes=2, vae_always_resident=True, per_token_timestep=True,
                                            text_encoder_on_gpu=False)

VRAM_ANCHORS = [
    # (what, model, w, h, frames, profile, setup, published GiB)
    ("H200 measured: whole 1.3B pipeline on GPU", M13, 832, 480, 81, "gpu", vram.STUDIO_SETUP, 22.5),
    ("diffusers docs: 1.3B with model CPU offload", M13, 832, 480, 81, "model_cpu_offload", vram.STUDIO_SETUP, 11.0),
    ("Wan2.1 README: 1.3B 480P, offload + t5_cpu", M13, 832, 480, 81, "model_cpu_offload", WAN21_OFFLOAD_T5CPU, 8.19),
    ("Wan2.1 README: 14B 720P, offload", M14, 1280, 720, 81, "model_cpu_offload", WAN21_OFFLOAD, 69.1),
    ("Wan2.2 README: A14B 480P, offload + convert", A14, 832, 480, 81, "model_cpu_offload",
     WAN22_OFFLOAD_CONVERT, 41.3),
    ("Wan2.2 README: A14B 720P, offload + convert", A14, 1280, 720, 81, "model_cpu_offload",
     WAN22_OFFLOAD_CONVERT, 59.8),
    ("Wan2.2 README: TI2V-5B 720P, offload + convert + t5_cpu", M5, 1280, 704, 121, "model_cpu_offload",
     WAN22_OFFLOAD_CONVERT_T5CPU, 22.9),
]


@pytest.mark.parametrize("what,model,w,h,frames,profile,setup,published", VRAM_ANCHORS,
                         ids=[a[0] for a in VRAM_ANCHORS])
def test_vram_formula_matches_published_and_measured_peaks(what, model, w, h, frames, profile, setup, published):
    estimate = memory_estimate(ARCHITECTURES[model], w, h, frames, profile, setup)
    assert rel_err(estimate.peak_gib, published) < TOL, f"{what}: formula {estimate.peak_gib:.1f} vs {published}"


@pytest.mark.parametrize("model,w,h,measured", [(M13, 832, 480, 4.2), (M14, 832, 480, 30.2), (M14, 1280, 720, 34.8)])
def test_transformer_weights_plus_activations_match_h200(model, w, h, measured):
    a = ARCHITECTURES[model]
    tokens = 21 * (h // 16) * (w // 16)
    gib = (a.transformer_params * 2 + vram.denoise_activation_bytes(a, tokens)) / GIB
    assert rel_err(gib, measured) < 0.10


def test_published_single_gpu_claims():
    a14 = memory_estimate(ARCHITECTURES[A14], 1280, 720, 81, "gpu")
    assert a14.peak_gib > 80 * (1 - TOL) and rel_err(a14.peak_gib, 80) < TOL  # "at least 80GB" without offload
    five_b = memory_estimate(ARCHITECTURES[M5], 1280, 704, 121, "model_cpu_offload", WAN22_OFFLOAD_CONVERT_T5CPU)
    assert five_b.peak_gib * vram.FIT_HEADROOM <= 24  # "runs on a 24 GB GPU"


def test_profiles_order_and_tiny():
    for model in (M13, M5, M14, A14):
        a, (w, h, f) = ARCHITECTURES[model], ((1280, 704, 121) if model == M5 else (832, 480, 81))
        peaks = [memory_estimate(a, w, h, f, p).peak_bytes for p in vram.PROFILES]
        assert peaks == sorted(peaks, reverse=True) and len(set(peaks)) == len(peaks) and peaks[-1] > 0, model
    assert memory_estimate(ARCHITECTURES[TINY], 160, 96, 33, "gpu").peak_bytes == 0  # runs on the CPU
    with pytest.raises(ValueError):
        memory_estimate(ARCHITECTURES[M13], 832, 480, 81, "everything")


# -- FLOPs and time -----------------------------------------------------------------------------

@pytest.mark.parametrize("model,tokens,tflop", [(M13, 32_760, 283), (M14, 32_760, 1678), (M14, 75_600, 6523),
                                                (M5, 27_280, 517)])
def test_flops_match_the_research_table(model, tokens, tflop):
    assert flops_per_forward(ARCHITECTURES[model], tokens) / 1e12 == pytest.approx(tflop, rel=0.01)


@pytest.mark.parametrize("model,tokens,passes,measured", [
    (M13, 32_760, 2, 1.244),   # the anchor the prior comes from (exact by construction)
    (M13, 32_760, 1, 0.630),   # 1.3B batch 1, eager
    (M14, 32_760, 1, 3.333),   # 14B 480p, eager
    (M14, 75_600, 1, 12.50),   # 14B 720p, eager
    (M5, 27_280, 1, 1.069),    # TI2V-5B 704x1280x121
])
def test_time_formula_matches_h200_step_times(model, tokens, passes, measured):
    seconds = passes * flops_per_forward(ARCHITECTURES[model], tokens) / H200_PRIOR_FLOP_S
    assert rel_err(seconds, measured) < TOL


def test_estimate_is_steps_times_flops_over_throughput(deps):
    spec = CATALOG[M14]
    plan = make_plan(GenerationRequest(prompt="a cat", resolution="720p", num_inference_steps=30), spec, seed=0)
    t = estimate_time(deps, spec, plan, "gpu")
    tokens = latent_tokens(spec, plan)
    assert t.throughput.basis == "prior" and "H200" in t.throughput.source
    assert t.step_seconds == pytest.approx(flops_per_step(ARCHITECTURES[M14], tokens, 7.5) / H200_PRIOR_FLOP_S)
    assert t.seconds == pytest.approx(t.load_seconds + 30 * t.step_seconds + t.encode_seconds)
    no_cfg = make_plan(GenerationRequest(prompt="a cat", resolution="720p", num_inference_steps=30,
                                         guidance_scale=1.0), spec, seed=0)
    assert estimate_time(deps, spec, no_cfg).step_seconds == pytest.approx(t.step_seconds / 2)


def test_calibration_from_recorded_step_rates(deps):
    """The engine's recorded rate becomes this device's FLOP/s; estimates follow it and other
    models inherit it until they are measured themselves."""
    spec13, spec14 = CATALOG[M13], CATALOG[M14]
    plan13 = make_plan(GenerationRequest(prompt="a cat", resolution="480p"), spec13, seed=0)
    plan14 = make_plan(GenerationRequest(prompt="a cat", resolution="720p"), spec14, seed=0)
    before13, before14 = estimate_time(deps, spec13, plan13), estimate_time(deps, spec14, plan14)
    assert before13.throughput.basis == "prior"

    h200_rate = 1.244 / 32.76  # s per CFG step per 1000 tokens, at the model's native plan
    deps.rates.store.record_timing(M13, STEP_RATE, 2 * h200_rate)  # this GPU is half as fast
    after13, after14 = estimate_time(deps, spec13, plan13), estimate_time(deps, spec14, plan14)
    assert after13.throughput.basis == "measured" and M13 in after13.throughput.source
    assert after13.step_seconds == pytest.approx(2 * before13.step_seconds, rel=1e-9)
    assert after14.step_seconds == pytest.approx(2 * before14.step_seconds, rel=1e-9)  # carried over
    assert "carried over" in after14.throughput.source

    deps.rates.store.record_timing(M13, STEP_RATE, 4 * h200_rate)  # the store keeps a moving average
    blended = deps.rates.store.timing(M13, STEP_RATE) / h200_rate
    assert estimate_time(deps, spec13, plan13).step_seconds == pytest.approx(blended * before13.step_seconds)

    deps.rates.store.record_timing(M14, STEP_RATE, 1.5 * h200_rate)  # 14B measured itself now
    own14 = estimate_time(deps, spec14, plan14)
    assert M14 in own14.throughput.source and "carried over" not in own14.throughput.source


def test_measured_rate_is_converted_at_the_last_run_size(deps):
    """With a completed task on record, its generated size and guidance are the conversion point."""
    spec = CATALOG[M13]
    task, _ = deps.rates.store.create_task("t2v", {"prompt": "x", "model": M13})
    deps.rates.store.finish(task.id, st.COMPLETED, result={"metadata": {
        "model": M13, "generated_width": 416, "generated_height": 240, "generated_frames": 41, "guidance_scale": 1.0}})
    rate = 0.02
    deps.rates.store.record_timing(M13, STEP_RATE, rate)
    tokens = 11 * 15 * 26
    expected_flop_s = flops_per_step(ARCHITECTURES[M13], tokens, 1.0) / (rate * tokens / 1000)
    plan = make_plan(GenerationRequest(prompt="a cat", resolution="480p"), spec, seed=0)
    t = estimate_time(deps, spec, plan)
    assert t.throughput.flop_per_s == pytest.approx(expected_flop_s)
    assert "416x240x41" in t.throughput.source


def test_tiny_time_is_the_engines_own_estimate(deps):
    from studio.engine.estimate import Estimator

    spec = CATALOG[TINY]
    plan = make_plan(GenerationRequest(prompt="a cat", resolution="480p", duration_seconds=2), spec, seed=0)
    engine = Estimator(deps.rates.store).estimate(spec, plan, model_loaded=False)
    assert estimate_time(deps, spec, plan).seconds == pytest.approx(engine.seconds)


# -- complexity ---------------------------------------------------------------------------------

SIMPLE = "a red fox running through snow"
MODERATE = "A woman walks her dog along the beach at sunset while the camera slowly pans to follow them"
COMPLEX = ("A knight rides through a dark forest, then the camera cuts to a crowd of villagers cheering; aerial "
           "tracking shot over the burning castle as two dragons fight, finally a slow zoom on the princess")


@pytest.mark.parametrize("prompt,label", [(SIMPLE, "simple"), ("a cup of coffee on a table", "simple"),
                                          (MODERATE, "moderate"), (COMPLEX, "complex")])
def test_complexity_classes(prompt, label):
    result = classify_prompt(prompt, 4.0)
    assert result.label == label, result
    assert 0.0 <= result.confidence <= 1.0


def test_complexity_features_and_length():
    f = classify_prompt(COMPLEX, 4.0).features
    assert f["subjects"] >= 5 and f["camera_moves"] >= 3 and f["scene_changes"] >= 2 and f["actions"] >= 3
    assert classify_prompt(SIMPLE, 60).score > classify_prompt(SIMPLE, 4).score  # long clips are harder
    assert classify_prompt("two dogs", 4).features["subjects"] == 3  # "two" + a plural


def test_confidence_grows_with_the_margin_to_the_boundaries():
    def conf(score):
        margin = (SIMPLE_BELOW - score if score < SIMPLE_BELOW else score - COMPLEX_FROM if score >= COMPLEX_FROM
                  else min(score - SIMPLE_BELOW, COMPLEX_FROM - score))
        return 1 / (1 + math.exp(-margin / complexity.CONFIDENCE_SCALE))

    assert conf(SIMPLE_BELOW) == pytest.approx(0.5)
    assert conf(0.0) > conf(1.0) > conf(1.49)
    mid = (SIMPLE_BELOW + COMPLEX_FROM) / 2
    assert conf(mid) > conf(SIMPLE_BELOW + 0.1)
    assert conf(10) > conf(4.5) > conf(4.0)
    # and the classifier reports exactly that function of its score
    for prompt in (SIMPLE, MODERATE, COMPLEX):
        r = classify_prompt(prompt, 4.0)
        assert r.confidence == pytest.approx(conf(r.score))
    assert classify_prompt(SIMPLE, 4).confidence > classify_prompt("a fox and a dog running", 4).confidence


# -- selection ----------------------------------------------------------------------------------

def test_cpu_server_without_budget_gets_tiny_and_says_why(deps):
    answer = select_model(deps, SelectModelRequest(prompt=SIMPLE), device=CPU)
    assert answer.recommended_model == TINY and answer.vram_required_gb == 0 and answer.alternatives == []
    assert any("no CUDA GPU" in r for r in answer.reasons)
    assert answer.estimated_time_seconds > 0


def test_nothing_fits_gets_tiny_and_says_why(deps):
    answer = select_model(deps, SelectModelRequest(prompt=SIMPLE, max_vram_gb=2), device=H100)
    assert answer.recommended_model == TINY
    assert any("no real model fits" in r for r in answer.reasons)


def test_fastest_adequate_and_prefer_quality(deps):
    simple = select_model(deps, SelectModelRequest(prompt=SIMPLE, target_resolution="480p"), device=H100)
    assert simple.complexity == "simple"  # every model is adequate: the fastest wins
    assert simple.alternatives and all(a.speed_factor <= 1 for a in simple.alternatives)
    # (at 480p the TI2V-5B's 16x VAE leaves 10k tokens to the 1.3B's 27k, so it has fewer FLOPs per step)
    assert simple.recommended_model == M5
    hd = select_model(deps, SelectModelRequest(prompt=MODERATE, target_resolution="720p"), device=H100)
    assert hd.recommended_model == M5  # tier 2 for 720p / moderate; faster than the 14B models
    complex_ = select_model(deps, SelectModelRequest(prompt=COMPLEX, target_resolution="720p"), device=H100)
    assert ARCHITECTURES[complex_.recommended_model].quality_tier >= 3
    quality = select_model(deps, SelectModelRequest(prompt=SIMPLE, target_resolution="480p", prefer_quality=True),
                           device=H100)
    assert quality.recommended_model == A14  # the highest tier that fits and finishes within 30 min
    assert quality.estimated_time_seconds <= orch.TIME_BUDGET_S


def test_budget_is_respected_and_profiles_reported(deps):
    answer = select_model(deps, SelectModelRequest(prompt=MODERATE, target_resolution="720p", max_vram_gb=24),
                          device=H100)
    assert answer.vram_required_gb * vram.FIT_HEADROOM <= 24
    assert all(a.vram_gb * vram.FIT_HEADROOM <= 24 for a in answer.alternatives)
    assert any("model_cpu_offload" in r or "group_offload" in r for r in answer.reasons)


def test_planning_for_a_gpu_from_a_cpu_server(deps):
    answer = select_model(deps, SelectModelRequest(prompt="Complex cinematic scene with multiple characters",
                                                   duration_seconds=10, target_resolution="4k", max_vram_gb=24,
                                                   prefer_quality=True), device=CPU)
    assert answer.recommended_model != TINY
    assert any("this server has no CUDA GPU" in r and "H200 prior" in r for r in answer.reasons)


def test_speed_factor_is_the_ratio_of_estimated_times(deps):
    request = SelectModelRequest(prompt=MODERATE, target_resolution="720p", max_vram_gb=60)
    answer = select_model(deps, request, device=H100)
    assert answer.alternatives

    def seconds(model_id, budget=60):
        spec = CATALOG[model_id]
        plan = orch._plan_for(spec, request.duration_seconds, request.target_resolution, request.prompt)
        mem = {p: memory_estimate(ARCHITECTURES[model_id], plan.gen_width, plan.gen_height, plan.gen_frames, p)
               for p in vram.PROFILES}
        profile = next(p for p in vram.PROFILES if mem[p].peak_gib * vram.FIT_HEADROOM <= budget)
        return estimate_time(deps, spec, plan, profile).seconds

    recommended = seconds(answer.recommended_model)
    assert answer.estimated_time_seconds == pytest.approx(recommended, abs=0.01)
    for alt in answer.alternatives:
        assert alt.speed_factor == pytest.approx(recommended / seconds(alt.model), abs=1e-3)
    faster = [a for a in answer.alternatives if a.model == M13]
    assert faster and faster[0].speed_factor > 1


def test_choose_model_for_auto(deps):
    request = GenerationRequest(prompt=SIMPLE, resolution="480p", num_inference_steps=20)
    assert choose_model(deps, request, device=CPU)[0] == TINY
    model, reasons = choose_model(deps, request, device=H100)
    assert model == M5 and any("20 steps" in r for r in reasons)


def test_auto_uses_only_the_profiles_the_loader_applies(deps):
    # The loader applies group offload (studio.models.loader.apply_memory_profile), so auto and
    # the recommendation agree: on 16 GiB the 720p-capable 5B runs with it.
    assert vram.LOADER_PROFILES == vram.PROFILES
    card = DeviceInfo(True, 16.0, "16 GiB GPU")
    request = GenerationRequest(prompt=MODERATE, resolution="720p")
    model, reasons = choose_model(deps, request, device=card)
    assert model == M5 and any("with group_offload" in r for r in reasons)
    advice = select_model(deps, SelectModelRequest(prompt=MODERATE, target_resolution="720p"), device=card)
    assert advice.recommended_model == M5 and advice.vram_required_gb * vram.FIT_HEADROOM <= 16
    assert not any("does not apply" in r for r in advice.reasons)


# -- REST end to end ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def orchestrator_api(live_server):
    from studio.api.genius_orchestrator import router

    app = live_server.app
    if any(getattr(route, "path", None) == ROUTE for route in app.router.routes):
        yield app  # app.py already includes the router
        return
    before = list(app.router.routes)
    app.include_router(router)
    added = app.router.routes[len(before):]
    app.router.routes[:] = [*added, *before]  # ahead of the /v1 catch-all and the UI mount
    app.openapi_schema = None
    yield app
    app.router.routes[:] = before
    app.openapi_schema = None  # FastAPI caches the schema; drop the copy that lists this router


@pytest.mark.usefixtures("cpu_host")  # asserts what a server without CUDA does
def test_rest_select_model(orchestrator_api, http, live_server):
    body = {"prompt": "Complex cinematic scene with multiple characters", "duration_seconds": 10,
            "target_resolution": "4k", "max_vram_gb": 24, "prefer_quality": True}
    response = http.post(ROUTE, json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"recommended_model", "complexity", "confidence", "estimated_time_seconds",
                         "vram_required_gb", "alternatives", "reasons"}
    assert data["recommended_model"] in CATALOG and data["complexity"] in ("simple", "moderate", "complex")
    assert 0 <= data["confidence"] <= 1 and data["estimated_time_seconds"] > 0
    for alt in data["alternatives"]:
        assert set(alt) == {"model", "vram_gb", "speed_factor"}
    assert response.headers.get("X-RateLimit-Limit")
    # the server's own default (this test machine has no GPU): tiny, with the reason
    default = http.post(ROUTE, json={"prompt": SIMPLE}).json()
    assert default["recommended_model"] == TINY and any("no CUDA GPU" in r for r in default["reasons"])


def test_rest_auth_and_bad_input(orchestrator_api, http, live_server):
    anonymous = httpx.post(live_server.url + ROUTE, json={"prompt": SIMPLE})
    assert anonymous.status_code == 401 and anonymous.json()["type"] == "AuthenticationError"
    for bad, field in [({"prompt": SIMPLE, "duration_seconds": 0}, "duration_seconds"),
                       ({"prompt": SIMPLE, "target_resolution": "2k"}, "target_resolution"),
                       ({"prompt": SIMPLE, "max_vram_gb": -1}, "max_vram_gb"),
                       ({"prompt": "  "}, "prompt"),
                       ({"duration_seconds": 4}, "prompt"),
                       ({"prompt": SIMPLE, "gpu": "h100"}, "gpu")]:
        response = http.post(ROUTE, json=bad)
        assert response.status_code == 400, bad
        error = response.json()
        assert set(error) == {"error", "detail", "type"} and field in error["detail"]
    assert http.post(ROUTE, content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400


def test_openapi_documents_the_route(orchestrator_api):
    from fastapi import FastAPI

    from studio.api.genius_orchestrator import router

    app = FastAPI()
    app.include_router(router)
    operation = app.openapi()["paths"][ROUTE]["post"]
    assert {"200", "400", "401", "429"} <= set(operation["responses"])
    assert "speed_factor" in operation["description"]


# -- Gradio -------------------------------------------------------------------------------------

def test_tab_handler_and_api_name(live_server):
    import gradio as gr

    from components import orchestrator_tab

    studio = live_server.studio
    headline, rows, reasons, details = orchestrator_tab.make_handlers(studio)(MODERATE, 5, "720p", 24, False)
    assert details["recommended_model"] in headline and "- " in reasons
    assert [r[0] for r in rows] == [a["model"] for a in details["alternatives"]]
    with pytest.raises(gr.Error):
        orchestrator_tab.make_handlers(studio)("", 5, "720p", None, False)
    with gr.Blocks() as demo:
        tab = orchestrator_tab.create_ui(studio)
        orchestrator_tab.create_event_handlers(tab, studio)
    assert "select_model" in {fn.api_name for fn in demo.fns.values()}


@pytest.mark.usefixtures("cpu_host")  # asserts what a server without CUDA does
def test_auto_hint_for_the_generate_tab(live_server):
    from components.orchestrator_tab import AUTO_MODEL, auto_recommendation

    studio = live_server.studio
    assert auto_recommendation(studio, "tiny", SIMPLE, 4, "720p", 7.5, 50) == ""
    text = auto_recommendation(studio, AUTO_MODEL, SIMPLE, 4, "720p", 7.5, 50)
    assert "Auto will run `tiny`" in text and "no CUDA GPU" in text
    assert "enter a prompt" in auto_recommendation(studio, AUTO_MODEL, "  ", 4, "720p", 7.5, 50)


def test_auto_hint_wires_into_the_generate_tab(live_server):
    import gradio as gr

    from components import generate_tab, orchestrator_tab

    studio = live_server.studio
    with gr.Blocks():
        tab = generate_tab.create_ui(studio)
        hint = gr.Markdown(visible=False)
        prompt, _neg, duration, _fps, resolution, _aspect, _genre, _seed, guidance, steps, model, *_ = tab.inputs
        orchestrator_tab.attach_auto_hint(studio, model=model, prompt=prompt, duration=duration, resolution=resolution,
                                          guidance=guidance, steps=steps, output=hint)
