"""LoRAs (issue 13, part 5): register by upload (checked against the model's layers) or hub
reference, list, delete, and ``loras: [{id, scale}]`` on generate: scale 0 is the base model
exactly, another LoRA changes the video, and the next task is unaffected. Adapters are made
offline on the tiny model with peft (random, non-zero weights)."""

from __future__ import annotations

import copy
import io

import av
import httpx
import numpy as np
import pytest
import torch

from studio.engine.loras import Adapter, adapter_names, adapters_applied
from studio.models.tiny import build_tiny_pipeline, tiny_attention_lora
from tests.conftest import OTHER_KEY, SMALL, client_owner, wait_for_terminal

OTHER = {"Authorization": f"Bearer {OTHER_KEY}"}


def lora_bytes(seed: int) -> bytes:
    """A LoRA of the tiny transformer's attention projections with random, non-zero A and B (a
    safetensors file). Built from tensors, not by wrapping a model with peft: another thread
    loading a model (diffusers' ``from_pretrained``) would put a model built meanwhile on the
    meta device."""
    from safetensors.torch import save

    return save(tiny_attention_lora(seed, 0.5))


def _frames(http: httpx.Client, task_id: str) -> np.ndarray:
    with av.open(io.BytesIO(http.get(f"/v1/videos/{task_id}.mp4").content)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _upload(http: httpx.Client, name: str, data: bytes, model: str = "tiny", headers=None) -> httpx.Response:
    return http.post("/v1/loras", files={"file": (f"{name}.safetensors", data)}, data={"name": name, "model": model},
                     headers=headers)


def _generate(http: httpx.Client, **extra) -> str:
    body = {**SMALL, "seed": 42, "genre": "none", **extra}
    response = http.post("/v1/generate", json=body)
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    return task_id


@pytest.fixture(scope="module")
def adapters(live_server):
    """Two LoRAs of the default key: ``style`` and ``other``."""
    with httpx.Client(base_url=live_server.url, timeout=60, headers={"Authorization": "Bearer test-key-1"}) as http:
        ids = {}
        for name, seed in (("style", 1), ("other", 2)):
            existing = {lora["name"]: lora["id"] for lora in http.get("/v1/loras").json()["loras"]}
            if name in existing:
                ids[name] = existing[name]
                continue
            response = _upload(http, name, lora_bytes(seed))
            assert response.status_code == 201, response.text
            ids[name] = response.json()["id"]
        return ids


def test_an_upload_is_checked_and_listed_for_its_key_only(http, adapters):
    listed = {lora["name"]: lora for lora in http.get("/v1/loras").json()["loras"]}
    style = listed["style"]
    assert style["id"] == adapters["style"] and style["model"] == "tiny" and style["source"] == "upload"
    assert style["rank"] == 4 and style["layers"] == 2 * 2 * 4  # 2 blocks x 2 attentions x 4 projections
    assert http.get("/v1/loras", headers=OTHER).json()["loras"] == []
    assert http.delete(f"/v1/loras/{adapters['style']}", headers=OTHER).status_code == 404
    again = _upload(http, "style", lora_bytes(1))
    assert again.status_code == 409 and again.json()["type"] == "LoraExists"


@pytest.mark.parametrize("data, detail", [
    (b"not a safetensors file", "is not a safetensors file"),
    (None, "does not fit tiny"),  # made for another width: the sizes differ
    ("unknown", "does not have"),  # layers the model lacks
])
def test_a_file_that_is_not_a_fitting_lora_is_refused_with_the_reason(http, data, detail):
    from safetensors.torch import save

    if data is None:
        data = save({"transformer.blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 1536),
                     "transformer.blocks.0.attn1.to_q.lora_B.weight": torch.zeros(1536, 4)})
    elif data == "unknown":
        data = save({"transformer.blocks.7.attn1.to_q.lora_A.weight": torch.zeros(4, 24),
                     "transformer.blocks.7.attn1.to_q.lora_B.weight": torch.zeros(24, 4)})
    response = _upload(http, "bad", data)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "ValueError" and detail in response.json()["detail"]


def test_scale_zero_is_the_base_model_another_lora_changes_it_and_nothing_leaks(http, adapters):
    base = _frames(http, _generate(http))
    zero = _generate(http, loras=[{"id": adapters["style"], "scale": 0.0}])
    assert np.array_equal(_frames(http, zero), base)
    styled_id = _generate(http, loras=[{"id": adapters["style"], "scale": 1.0}])
    styled = _frames(http, styled_id)
    other = _frames(http, _generate(http, loras=[{"id": adapters["other"], "scale": 1.0}]))
    assert np.abs(styled.astype(int) - base).mean() > 1 and np.abs(other.astype(int) - styled).mean() > 1
    after = _frames(http, _generate(http))  # the adapters were removed: the next task is the base again
    assert np.array_equal(after, base)
    meta = http.get(f"/v1/result/{styled_id}").json()["metadata"]
    assert meta["loras"] == [{"id": adapters["style"], "name": "style", "scale": 1.0}]
    assert any("LoRAs applied" in note for note in meta["notes"])


def test_a_request_naming_a_lora_that_is_not_yours_is_not_found_at_submit(http, adapters):
    response = http.post("/v1/generate", json={**SMALL, "loras": [{"id": adapters["style"]}]}, headers=OTHER)
    assert response.status_code == 404 and "you have no LoRA" in response.json()["detail"]
    response = http.post("/v1/generate", json={**SMALL, "loras": [{"id": adapters["style"], "scale": 3}]})
    assert response.status_code == 400 and "loras[0].scale" in response.json()["detail"]


def test_a_deleted_lora_fails_the_tasks_that_name_it_and_is_refused_after(http):
    lora_id = _upload(http, "short-lived", lora_bytes(3)).json()["id"]
    assert http.delete(f"/v1/loras/{lora_id}").status_code == 204
    assert http.delete(f"/v1/loras/{lora_id}").status_code == 404
    response = http.post("/v1/generate", json={**SMALL, "loras": [{"id": lora_id}]})
    assert response.status_code == 404 and response.json()["type"] == "LoraNotFound"


def test_a_hub_lora_is_a_reference_and_an_unreachable_hub_fails_its_task_clearly(http, monkeypatch):
    response = http.post("/v1/loras/hub", json={"hub_id": "someone/wan-style", "filename": "style.safetensors",
                                                "name": "hub-style", "model": "tiny"})
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["source"] == "hub" and info["layers"] == 0 and info["rank"] is None
    task_id = http.post("/v1/generate", json={**SMALL, "loras": [{"id": info["id"]}]}).json()["task_id"]
    status = wait_for_terminal(http, task_id)  # the test server has no network: HF_HUB_OFFLINE
    assert status["status"] == "failed" and status["error_type"] == "ModelUnavailable"
    assert "could not be fetched from the Hugging Face Hub" in status["error"]


def test_the_adapters_go_into_both_experts_and_leave_both(tmp_path):
    """Wan2.2-A14B: a high-noise ``transformer`` and a low-noise ``transformer_2``."""
    from diffusers import WanPipeline

    tiny = build_tiny_pipeline()
    pipe = WanPipeline(**tiny.components | {"transformer_2": copy.deepcopy(tiny.transformer)}, boundary_ratio=0.5)
    path = tmp_path / "style.safetensors"
    path.write_bytes(lora_bytes(1))
    with adapters_applied(pipe, [Adapter("a", "style", path, 0.7)]):
        assert adapter_names(pipe) == {"task_lora_0"}
        for expert in (pipe.transformer, pipe.transformer_2):
            assert any("task_lora_0" in getattr(m, "lora_A", {}) for m in expert.modules())
    assert adapter_names(pipe) == set()


def test_the_gradio_api_adds_lists_and_applies_loras(client, live_server, tmp_path):
    path = tmp_path / "gradio-style.safetensors"
    path.write_bytes(lora_bytes(5))
    from gradio_client import handle_file

    picker, line = client.predict(handle_file(str(path)), "gradio-style", "tiny", api_name="/add_lora")
    assert "Added **gradio-style**" in line
    listed = client.predict(api_name="/loras")["loras"]
    lora_id = next(lora["id"] for lora in listed if lora["name"] == "gradio-style")
    job = client.submit(SMALL["prompt"], "blurry", 1.0, 12, "480p", "16:9", "cinematic", 5, 7.5, 10, "tiny", 5,
                        [lora_id], 0.5, api_name="/generate")
    metadata = list(job)[-1][5]
    assert metadata["status"] == "completed"
    assert metadata["metadata"]["loras"] == [{"id": lora_id, "name": "gradio-style", "scale": 0.5}]
    owner = client_owner(live_server.studio, client)
    assert [lora.id for lora in live_server.studio.loras.owned(owner).loras] == [lora_id]


def test_a_lora_over_the_size_cap_is_refused_before_it_is_read(tmp_path):
    from studio.db.engine import Database
    from studio.db.loras import LoraRecords
    from studio.errors import PayloadTooLarge
    from studio.genius.generate.loras import LoraLibrary
    from studio.media.paths import MediaPaths

    database = Database.for_file(tmp_path / "studio.db")
    database.migrate()
    library = LoraLibrary(LoraRecords(database), tmp_path, MediaPaths(tmp_path / "media"), max_bytes=1000)
    with pytest.raises(PayloadTooLarge, match="over 0 MiB|over"):
        library.register_upload("someone", "big", "tiny", lora_bytes(1))
    assert library.owned("someone").loras == []


def test_the_upload_route_has_its_own_body_cap():
    """A LoRA upload may be larger than any JSON body (``larger`` in ``BodySizeLimit``), and is
    capped all the same."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from studio.api.middleware import BodySizeLimit

    async def echo(request):
        return PlainTextResponse(str(len(await request.body())))

    app = Starlette(routes=[Route("/v1/loras", echo, methods=["POST"]), Route("/v1/generate", echo, methods=["POST"])])
    with TestClient(BodySizeLimit(app, max_bytes=10, larger={"/v1/loras": 100})) as client:
        assert client.post("/v1/loras", content=b"x" * 50).text == "50"
        assert client.post("/v1/loras", content=b"x" * 150).status_code == 413
        assert client.post("/v1/generate", content=b"x" * 50).status_code == 413
