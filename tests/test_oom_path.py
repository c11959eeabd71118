"""Out of GPU memory, on every model path: the task fails with ``VramExceeded`` (not an internal
error), the model is evicted from the cache, and the worker serves the next task.

The offline tiny models run on the CPU, so the out-of-memory error is simulated: the pipeline
class the path runs raises ``torch.OutOfMemoryError`` when called, as CUDA's allocator does.
Each test then lifts the patch and runs the same request again, which must reload the evicted
model and complete.
"""

from __future__ import annotations

import base64
import shutil
import subprocess

import numpy as np
import pytest
import torch
from diffusers import (
    WanAnimatePipeline,
    WanImageToVideoPipeline,
    WanPipeline,
    WanVACEPipeline,
    WanVideoToVideoPipeline,
)

from studio.engine.request import NEGATIVE_PROMPT
from studio.engine.run import DEFAULT_ADVICE, model_run
from studio.errors import VramExceeded
from studio.genius.orchestrator.schema import SelectModelRequest
from studio.genius.orchestrator.selection import DeviceInfo, select_model
from studio.media.inputs import encode_png_base64
from studio.models.catalog import TINY, get_spec
from studio.models.cost import vram
from studio.models.cost.timing import CostInputs, Rates
from studio.models.loader import LoadedModel, ModelCache, choose_memory_profile
from tests.conftest import API_KEY, SMALL, wait_for_terminal
from tests.edit_helpers import moving_square_clip, source_task, wait_result
from tests.test_animate_model import person_clip, reference

# The offline tiny models are what a server without CUDA picks by default (cpu_host: conftest).
pytestmark = pytest.mark.usefixtures("cpu_host")

V2V = "/v1/genius/v2v/transform"
SCENE_SETTINGS = {"fps": 12, "resolution": "480p", "num_inference_steps": 10, "seed": 5}
SCENES = [{"prompt": "a red fox running through snow", "duration": 1},
          {"prompt": "sunset over ocean waves", "duration": 1}]


def _key_id(live_server) -> str:
    return live_server.studio.keys.lookup(API_KEY).id


class OutOfMemory:
    """Makes calling the given pipeline classes raise CUDA's out-of-memory error, until lifted.
    Its own MonkeyPatch: lifting it must not undo the test's other patches (``cpu_host``)."""

    def __init__(self):
        self.calls: list[str] = []
        self._patch = pytest.MonkeyPatch()

    def __call__(self, *pipelines: type) -> list[str]:
        def call(pipe, *args, **kwargs):
            self.calls.append(type(pipe).__name__)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        for pipeline in pipelines:
            self._patch.setattr(pipeline, "__call__", call)
        return self.calls

    def lift(self) -> None:
        self._patch.undo()


@pytest.fixture()
def out_of_memory():
    patch = OutOfMemory()
    yield patch
    patch.lift()


def _submit(http, route: str, body: dict) -> dict:
    response = http.post(route, json=body)
    assert response.status_code == 202, response.text
    return response.json()


def _assert_out_of_memory(http, live_server, task_id: str, model_id: str) -> None:
    status = wait_for_terminal(http, task_id)
    assert status["status"] == "failed" and status["error_type"] == "VramExceeded", status
    assert "ran out of memory" in status["error"] and model_id in status["error"], status["error"]
    assert live_server.studio.models.loaded_model is None  # evicted


def _serves_again(http, out_of_memory: OutOfMemory, route: str, body: dict) -> dict:
    """Lift the simulated shortage; the same request then completes on this worker."""
    out_of_memory.lift()
    return wait_result(http, _submit(http, route, body)["task_id"])


def test_model_run_evicts_and_raises_vram_exceeded(tmp_path):
    class Cache:
        evicted = 0
        loaded_model = "m"

        def get(self, model_id, on_progress):
            return object()

        def out_of_memory(self, model_id):  # ModelCache's: evict; no leaner profile left
            self.evicted += 1
            self.loaded_model = None
            return None

    cache = Cache()
    with pytest.raises(VramExceeded) as raised:
        with model_run(cache, "m", advice="try less") as run:
            run.size = (160, 96)
            raise torch.OutOfMemoryError("CUDA out of memory")
    assert cache.evicted == 1 and cache.loaded_model is None
    assert raised.value.detail == "the GPU ran out of memory running m at 160x96; try less"
    assert raised.value.leaner_profile is None
    with pytest.raises(ValueError):  # other errors pass through, the model stays
        with model_run(cache, "m"):
            raise ValueError("not memory")
    assert cache.evicted == 1


def _resident(models: ModelCache, model_id: str, profile: str) -> LoadedModel:
    model = LoadedModel(get_spec(model_id), pipe=object(), device=torch.device("cpu"), memory_profile=profile,
                        load_seconds=0.0, previewer_path=models.models_dir / "previewer.npz")
    models.adopt(model)
    return model


def test_a_profile_that_ran_out_of_memory_is_not_chosen_again(tmp_path):
    models, m13 = ModelCache(tmp_path), "wan2.1-t2v-1.3b"
    plenty = 1000 * 2**30
    assert models.fastest_allowed(m13) == "gpu"
    _resident(models, m13, "gpu")
    with pytest.raises(VramExceeded) as raised:
        with model_run(models, m13) as run:
            run.size = (832, 480)
            raise torch.OutOfMemoryError("CUDA out of memory")
    assert models.loaded_model is None
    assert raised.value.leaner_profile == "text_encoder_offload"
    assert raised.value.detail == ("the GPU ran out of memory running wan2.1-t2v-1.3b at 832x480; its next load "
                                   "uses the leaner text_encoder_offload memory profile, so the same request may "
                                   f"run now; else {DEFAULT_ADVICE}")
    # The next load, and the estimates and recommendations that ask the loader, skip the failed profile.
    assert models.fastest_allowed(m13) == "text_encoder_offload"
    assert choose_memory_profile(get_spec(m13), plenty, fastest_allowed=models.fastest_allowed(m13)) \
        == "text_encoder_offload"
    assert models.fastest_allowed("wan2.1-t2v-14b") == "gpu"  # other models keep every profile
    # Each out-of-memory steps down once; the leanest has nothing below it.
    for failed, leaner in [("text_encoder_offload", "model_cpu_offload"), ("model_cpu_offload", "group_offload"),
                           ("group_offload", None)]:
        _resident(models, m13, failed)
        assert models.out_of_memory(m13) == leaner
    assert models.fastest_allowed(m13) == "group_offload"
    _resident(models, TINY, "cpu")  # the offline models run on the CPU: no GPU profile to leave
    assert models.out_of_memory(TINY) is None


def test_the_recommendation_on_this_device_skips_a_profile_that_ran_out_of_memory(tmp_path):
    models, m13 = ModelCache(tmp_path), "wan2.1-t2v-1.3b"
    _resident(models, m13, "gpu")
    models.out_of_memory(m13)
    request = SelectModelRequest(prompt="a red fox in snow", target_resolution="480p")
    card = DeviceInfo(True, 80.0, "80 GiB GPU")
    named = {}
    for costs in (CostInputs.of(None), CostInputs.here(Rates(None), models)):
        answer = select_model(costs, request, device=card)
        named[costs.fastest_allowed(m13)] = \
            {a.model: a.vram_gb for a in answer.alternatives} | {answer.recommended_model: answer.vram_required_gb}
    assert named["text_encoder_offload"][m13] < named["gpu"][m13] - 10  # the encoder's 11 GiB no longer counted
    # A budget given in the request plans for another card: every profile stays open there.
    other = select_model(CostInputs.here(Rates(None), models), request.model_copy(update={"max_vram_gb": 80}),
                         device=card)
    assert ({a.model: a.vram_gb for a in other.alternatives} | {other.recommended_model: other.vram_required_gb})[m13] \
        == named["gpu"][m13]


def _tiny_as_on_a_gpu(live_server, monkeypatch, out_of_memory_in: tuple[str, ...]) -> list[str]:
    """The tiny model runs on the CPU; from here its loads take the GPU profiles a real model
    would (the fastest one still allowed), and its pipeline runs out of memory in
    ``out_of_memory_in``. Returns the profiles its calls ran in, as they run."""
    models = live_server.studio.models
    load = models._load

    def load_as_on_a_gpu(spec, on_progress):
        model = load(spec, on_progress)
        model.memory_profile = models._chosen_profile[spec.id] = models.fastest_allowed(spec.id)
        return model

    real_call = WanPipeline.__call__
    profiles_run = []

    def call(pipe, *args, **kwargs):
        profiles_run.append(models.loaded_profile)
        if models.loaded_profile in out_of_memory_in:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_call(pipe, *args, **kwargs)

    models.get(TINY)  # waits for the server's preload of it, if that is still running
    models.evict()
    monkeypatch.setattr(models, "_load", load_as_on_a_gpu)
    monkeypatch.setattr(WanPipeline, "__call__", call)
    monkeypatch.setattr(models, "_fastest_allowed", {})
    return profiles_run


def _requeue_reasons(live_server, task_id: str) -> list[str]:
    return [e["data"]["reason"] for e in live_server.studio.store.events(task_id) if e["type"] == "task.requeued"]


def test_text_to_video_that_ran_out_of_memory_in_a_gpu_profile_runs_again_leaner(http, live_server, monkeypatch):
    profiles_run = _tiny_as_on_a_gpu(live_server, monkeypatch, out_of_memory_in=("gpu",))
    task_id = _submit(http, "/v1/generate", {**SMALL, "model": "tiny", "seed": 3})["task_id"]
    result = wait_result(http, task_id)
    assert result["video_url"] and profiles_run == ["gpu", "text_encoder_offload"]
    task = live_server.studio.store.get(task_id)
    assert task.attempt == 2 and task.status == "completed"
    assert _requeue_reasons(live_server, task_id) == [
        "Queued again: the GPU ran out of memory; it runs again with the leaner text_encoder_offload memory profile"]
    live_server.studio.models.evict()


def test_a_task_that_keeps_running_out_of_memory_fails_after_three_runs(http, live_server, monkeypatch):
    profiles_run = _tiny_as_on_a_gpu(live_server, monkeypatch, out_of_memory_in=vram.PROFILES)
    task_id = _submit(http, "/v1/generate", {**SMALL, "model": "tiny", "seed": 4})["task_id"]
    status = wait_for_terminal(http, task_id)
    assert status["status"] == "failed" and status["error_type"] == "VramExceeded", status
    assert profiles_run == ["gpu", "text_encoder_offload", "model_cpu_offload"]  # MAX_ATTEMPTS runs, no more
    assert "its next load uses the leaner group_offload memory profile" in status["error"], status["error"]
    assert len(_requeue_reasons(live_server, task_id)) == 2
    live_server.studio.models.evict()


def test_text_to_video(http, live_server, out_of_memory):
    calls = out_of_memory(WanPipeline)
    task = _submit(http, "/v1/generate", {**SMALL, "model": "tiny", "seed": 1})
    _assert_out_of_memory(http, live_server, task["task_id"], "tiny")
    assert calls == ["WanPipeline"]
    assert _serves_again(http, out_of_memory, "/v1/generate", {**SMALL, "model": "tiny", "seed": 1})["video_url"]


def test_v2v_wan_video_to_video(http, live_server, out_of_memory):
    source = source_task(live_server.studio, _key_id(live_server), moving_square_clip(frames=9))
    body = {"source_task_id": source, "mode": "style_transfer", "prompt": "an oil painting", "strength": 0.5,
            "num_inference_steps": 10, "seed": 1}
    calls = out_of_memory(WanVideoToVideoPipeline)
    _assert_out_of_memory(http, live_server, _submit(http, V2V, body)["task_id"], "tiny")
    assert calls == ["WanVideoToVideoPipeline"]
    again = _serves_again(http, out_of_memory, V2V, body)
    assert again["metadata"]["method"] == "WanVideoToVideo (tiny)"
    assert again["metadata"]["details"]["parameters"]["negative_prompt"] == NEGATIVE_PROMPT  # the one default


def test_v2v_vace(http, live_server, out_of_memory):
    source = source_task(live_server.studio, _key_id(live_server), moving_square_clip(frames=9))
    body = {"source_task_id": source, "mode": "style_transfer", "prompt": "a watercolour painting",
            "style_reference_base64": encode_png_base64(np.full((32, 32, 3), (200, 40, 160), np.uint8)),
            "num_inference_steps": 10, "seed": 2}
    calls = out_of_memory(WanVACEPipeline)
    _assert_out_of_memory(http, live_server, _submit(http, V2V, body)["task_id"], "tiny-vace")
    assert calls == ["WanVACEPipeline"]
    assert _serves_again(http, out_of_memory, V2V, body)["metadata"]["method"].startswith("Wan VACE (tiny-vace)")


def test_v2v_animate(http, live_server, out_of_memory):
    source = source_task(live_server.studio, _key_id(live_server), person_clip(frames=6))
    body = {"source_task_id": source, "mode": "motion_transfer", "use_model": True, "model": "tiny-animate",
            "num_inference_steps": 10, "seed": 3, "style_reference_base64": reference(1)}
    calls = out_of_memory(WanAnimatePipeline)
    _assert_out_of_memory(http, live_server, _submit(http, V2V, body)["task_id"], "tiny-animate")
    assert calls == ["WanAnimatePipeline"]
    assert _serves_again(http, out_of_memory, V2V, body)["metadata"]["path"] == "model"


def test_inpaint_vace(http, live_server, out_of_memory):
    source = source_task(live_server.studio, _key_id(live_server), moving_square_clip(frames=9))
    body = {"task_id": source, "mode": "replace", "bbox": [18, 38, 54, 74], "feather_radius": 4,
            "prompt": "a blue bird flying", "num_inference_steps": 10, "seed": 7}
    route = "/v1/genius/inpaint/process"
    calls = out_of_memory(WanVACEPipeline)
    _assert_out_of_memory(http, live_server, _submit(http, route, body)["task_id"], "tiny-vace")
    assert calls == ["WanVACEPipeline"]
    assert _serves_again(http, out_of_memory, route, body)["metadata"]["method"] == "WanVACE (tiny-vace)"


@pytest.mark.parametrize("morph_model, pipeline", [("tiny-vace", WanVACEPipeline),
                                                   ("tiny-i2v", WanImageToVideoPipeline)])
def test_scene_morph(http, live_server, out_of_memory, morph_model, pipeline):
    body = {"scenes": SCENES, "transitions": [{"type": "morph"}], "transition_duration_seconds": 0.25,
            "morph_with_model": True, "morph_model": morph_model, "settings": SCENE_SETTINGS}
    route = "/v1/genius/scene/edit"
    calls = out_of_memory(pipeline)  # the shots (text to video) run; the morph does not
    reply = _submit(http, route, body)
    _assert_out_of_memory(http, live_server, reply["task_id"], morph_model)
    assert calls == [pipeline.__name__]
    assert all(http.get(f"/v1/status/{shot}").json()["status"] == "completed" for shot in reply["shot_task_ids"])
    assert _serves_again(http, out_of_memory, route, body)["metadata"]["path"] == "model"


def test_scene_reference_shots(http, live_server, out_of_memory):
    image = np.zeros((64, 48, 3), np.uint8)
    image[:, :, 0] = 200
    body = {"scenes": SCENES, "enable_character_consistency": True, "character_description": "a small red fox",
            "character_reference_image_base64": encode_png_base64(image), "settings": SCENE_SETTINGS}
    route = "/v1/genius/scene/edit"
    out_of_memory(WanVACEPipeline)
    reply = _submit(http, route, body)
    _assert_out_of_memory(http, live_server, reply["shot_task_ids"][0], "tiny-vace")
    assert wait_for_terminal(http, reply["task_id"])["status"] == "failed"  # the stitch needs its shots
    assert _serves_again(http, out_of_memory, route, body)["metadata"]["details"]["shot_kind"] == "scene_shot"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_lipsync_animate(http, live_server, out_of_memory, tmp_path):
    subprocess.run(["espeak-ng", "-s", "160", "-w", str(tmp_path / "speech.wav"), "papa"],
                   check=True, capture_output=True, timeout=30)
    audio = base64.b64encode((tmp_path / "speech.wav").read_bytes()).decode()
    source = source_task(live_server.studio, _key_id(live_server), person_clip(frames=8))
    body = {"task_id": source, "audio_base64": audio, "use_model": True, "model": "tiny-animate",
            "num_inference_steps": 10, "seed": 5}
    route = "/v1/genius/lipsync/generate"
    calls = out_of_memory(WanAnimatePipeline)
    _assert_out_of_memory(http, live_server, _submit(http, route, body)["task_id"], "tiny-animate")
    assert calls == ["WanAnimatePipeline"]
    assert _serves_again(http, out_of_memory, route, body)["metadata"]["path"] == "model"
