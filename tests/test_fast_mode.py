"""The few-step fast mode (issue 13, part 6): ``mode: "fast"`` runs a model's distillation LoRAs
at their own step count without guidance; the seed's ``num_inference_steps`` stays for the full
model; metadata, estimates and the Model Orchestrator know it."""

from __future__ import annotations

import copy
from pathlib import Path

from studio.engine.loras import Adapter, adapter_names, adapters_applied
from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest, parse_request
from studio.models.catalog import CATALOG
from studio.models.cost.timing import CostInputs, estimate_time
from studio.models.tiny import build_tiny_pipeline, ensure_tiny_fast_lora
from tests.conftest import SMALL, wait_for_terminal

FAST = {key: value for key, value in SMALL.items() if key != "num_inference_steps"} | {"mode": "fast"}


def test_the_fast_plan_runs_the_models_own_steps_without_guidance():
    plan = make_plan(GenerationRequest(prompt="a cat", mode="fast"), CATALOG["tiny"], seed=1)
    assert (plan.num_inference_steps, plan.guidance_scale, plan.mode) == (4, 1.0, "fast")
    assert any(note.startswith("fast mode: 4 denoising steps without classifier-free guidance") for note in plan.notes)
    standard = make_plan(GenerationRequest(prompt="a cat"), CATALOG["tiny"], seed=1)
    assert (standard.num_inference_steps, standard.mode) == (50, "standard")


def test_steps_and_guidance_of_the_standard_mode_are_not_used_and_the_notes_say_so():
    plan = make_plan(parse_request({"prompt": "a cat", "mode": "fast", "num_inference_steps": 20, "guidance_scale": 5}),
                     CATALOG["tiny"], seed=1)
    assert (plan.num_inference_steps, plan.guidance_scale) == (4, 1.0)
    assert any("num_inference_steps (20) and guidance_scale (5) are the standard mode's and were not used" in note
               for note in plan.notes)


def test_the_estimate_and_the_orchestrator_know_the_fast_mode():
    from studio.genius.orchestrator.schema import SelectModelRequest
    from studio.genius.orchestrator.selection import select_model

    spec = CATALOG["wan2.1-t2v-14b"]
    standard = estimate_time(CostInputs.of(None, spec.id), spec, make_plan(GenerationRequest(prompt="a"), spec, 1))
    fast = estimate_time(CostInputs.of(None, spec.id), spec, make_plan(GenerationRequest(prompt="a", mode="fast"),
                                                                        spec, 1))
    assert fast.steps == 4 and standard.steps == 50
    # 4 single passes against 50 steps of two (guided) passes: far more than 12x less denoising
    assert (fast.seconds - fast.encode_seconds) * 20 < standard.seconds - standard.encode_seconds
    answer = select_model(CostInputs.of(None), SelectModelRequest(prompt="a dragon", max_vram_gb=80, mode="fast"))
    assert CATALOG[answer.recommended_model].fast is not None
    assert all(CATALOG[a.model].fast is not None for a in answer.alternatives)


def test_a_fast_generation_runs_4_single_passes_and_leaves_no_adapter(http, live_server):
    task_id = http.post("/v1/generate", json={**FAST, "acceleration": "off"}).json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    meta = http.get(f"/v1/result/{task_id}").json()["metadata"]
    assert (meta["mode"], meta["num_inference_steps"], meta["guidance_scale"]) == ("fast", 4, 1.0)
    assert meta["decoder"]["steps"] == 4 and meta["decoder"]["passes"] == 4  # one transformer pass a step
    assert any("fast mode" in note and "4-step LoRA" in note for note in meta["notes"])
    assert meta["loras"] is None  # the distillation LoRA is the mode's, not the caller's
    assert adapter_names(live_server.studio.models.get("tiny").pipe) == set()


def test_a_model_without_a_fast_mode_says_which_have_one(http):
    response = http.post("/v1/generate", json={**FAST, "model": "wan2.1-t2v-1.3b"})
    assert response.status_code == 400
    assert "wan2.1-t2v-1.3b has no fast mode" in response.json()["detail"] and "wan2.1-t2v-14b" in response.json()["detail"]
    models = {m["id"]: m for m in http.get("/v1/models").json()}
    assert models["tiny"]["fast_steps"] == 4 and models["wan2.1-t2v-1.3b"]["fast_steps"] is None


def test_each_expert_gets_its_own_distillation_lora(tmp_path):
    """Wan2.2-A14B's fast mode: the high-noise LoRA on ``transformer``, the low-noise one on
    ``transformer_2``."""
    from diffusers import WanPipeline

    tiny = build_tiny_pipeline()
    pipe = WanPipeline(**tiny.components | {"transformer_2": copy.deepcopy(tiny.transformer)}, boundary_ratio=0.5)
    path = ensure_tiny_fast_lora(tmp_path)
    high, low = Adapter("fast:high", "high", path, 1.0, expert=0), Adapter("fast:low", "low", path, 1.0, expert=1)
    with adapters_applied(pipe, [high, low]):
        assert _names(pipe.transformer) == {"task_lora_0"} and _names(pipe.transformer_2) == {"task_lora_1"}
    assert adapter_names(pipe) == set()


def _names(transformer) -> set[str]:
    return {name for module in transformer.modules() for name in getattr(module, "lora_A", {})}


def test_the_catalog_names_the_published_distillation_loras():
    for model in ("wan2.1-t2v-14b", "wan2.2-t2v-a14b"):
        fast = CATALOG[model].fast
        assert fast.steps == 4 and fast.guidance == 1.0 and fast.hub_id.startswith("lightx2v/")
        assert all(Path(name).suffix == ".safetensors" for name, _ in fast.files)
    assert [expert for _, expert in CATALOG["wan2.2-t2v-a14b"].fast.files] == [0, 1]


def test_the_gradio_api_runs_the_fast_mode(client):
    job = client.submit(SMALL["prompt"], "blurry", 1.0, 12, "480p", "16:9", "cinematic", 5, 7.5, 40, "tiny", 1, [], 1.0,
                        "fast", api_name="/generate")
    metadata = list(job)[-1][5]
    assert metadata["status"] == "completed"
    assert (metadata["metadata"]["mode"], metadata["metadata"]["num_inference_steps"]) == ("fast", 4)
