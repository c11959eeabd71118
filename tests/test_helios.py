"""Helios in the catalog (issue 13, part 1): an autoregressive model generates a long clip in ONE
pass, 33-frame chunk after chunk, each conditioned on the history; the studio encodes and
streams every chunk as it finishes, counts every chunk's steps, and keeps the finished chunks
when a cancel comes after the first. The tiny offline Helios models are the real diffusers
classes (HeliosPipeline, HeliosPyramidPipeline) with random weights."""

from __future__ import annotations

import base64
import time

import cv2
import numpy as np
import pytest

from studio.engine.chunked import run_chunked
from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest
from studio.engine.t2v import Cancelled, QuietHooks
from studio.models.catalog import GENERATION_CATALOG, TINY_HELIOS, TINY_HELIOS_DISTILLED
from studio.models.loader import ModelCache
from tests.conftest import SMALL, wait_for_terminal
from tests.test_long_video import _decoded, _distinct_share, run_tiny_gpu_script

LONG = {**SMALL, "duration_seconds": 8.0, "fps": 24, "model": TINY_HELIOS}  # tiny-helios: 8 fps, 33-frame chunks


def _plan(model: str = TINY_HELIOS, **request):
    return make_plan(GenerationRequest(prompt="a cat", genre="none", **request), GENERATION_CATALOG[model], seed=5)


# -- the plan -------------------------------------------------------------------------------

def test_a_long_clip_is_one_pass_of_whole_chunks_with_every_chunks_steps_counted():
    plan = _plan(duration_seconds=8, fps=24, num_inference_steps=10)
    assert plan.passes == 1 and plan.continuation_model is None  # no windows: the model makes it all
    assert (plan.chunk_frames, plan.chunks, plan.gen_frames) == (33, 2, 66)  # 8 s x 8 fps = 64 -> 2 chunks
    assert plan.total_steps == 20 and plan.latent_frames == 9
    assert plan.out_frames == 192 and plan.temporal == "flow"
    assert any("2 chunks of 33 frames" in note and "history" in note for note in plan.notes)
    minute = _plan(duration_seconds=60, fps=24)
    assert minute.passes == 1 and minute.gen_frames >= 60 * 8 and minute.chunks == 15


def test_the_distilled_model_samples_its_own_pyramid_steps_without_guidance():
    plan = _plan(TINY_HELIOS_DISTILLED, duration_seconds=8, fps=24, num_inference_steps=40, guidance_scale=9)
    assert (plan.num_inference_steps, plan.guidance_scale) == (3, 1.0)  # 1 step at each of 3 stages
    assert plan.total_steps == 3 * (2 + 1)  # the first chunk runs twice the steps
    assert any("num_inference_steps (40) and guidance_scale (9) were not used" in note for note in plan.notes)
    assert plan.gen_width % 64 == 0 and plan.gen_height % 64 == 0  # 3 stages halve the latent twice, 2x2 patches


def test_the_step_cache_is_not_applied_to_helios_and_the_notes_say_so():
    plan = _plan(duration_seconds=4, acceleration="fast")
    assert plan.acceleration == "off"
    assert any("acceleration=fast was not applied" in note for note in plan.notes)


def test_the_estimate_counts_every_chunk():
    from studio.models.cost.timing import CostInputs, estimate_time

    one = estimate_time(CostInputs.of(None, TINY_HELIOS), GENERATION_CATALOG[TINY_HELIOS], _plan(duration_seconds=4))
    four = estimate_time(CostInputs.of(None, TINY_HELIOS), GENERATION_CATALOG[TINY_HELIOS],
                         _plan(duration_seconds=16))
    assert four.steps == 4 * one.steps and four.step_seconds == one.step_seconds  # a chunk's tokens per step


# -- the engine -----------------------------------------------------------------------------

class _Recorder(QuietHooks):
    """Records steps and streamed final frames in the order they happen; cancels after ``stop_after`` steps."""

    def __init__(self, stop_after: int | None = None):
        self.events: list[tuple[str, int]] = []
        self.previews = 0
        self.stop_after = stop_after

    def on_step(self, step, total, step_seconds, preview):
        self.events.append(("step", step))
        self.previews += preview is not None

    def streaming(self) -> bool:
        return True

    def on_stream_frame(self, frame_index, quality, rgb, progress):
        if quality == "final":
            self.events.append(("encoded", frame_index + 1))

    def on_encoded(self, frames_done, total):
        self.events.append(("done", frames_done))

    def should_cancel(self) -> bool:
        steps = [n for kind, n in self.events if kind == "step"]
        return self.stop_after is not None and bool(steps) and steps[-1] > self.stop_after


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return ModelCache(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("model", [TINY_HELIOS, TINY_HELIOS_DISTILLED])
def test_each_chunk_is_encoded_as_soon_as_it_is_denoised(models, tmp_path, model):
    plan = _plan(model, duration_seconds=8, fps=24, resolution="480p", num_inference_steps=10)
    hooks = _Recorder()
    output = run_chunked(models.get(model), plan, hooks, tmp_path / "v.mp4", tmp_path / "t.jpg")
    steps = [n for kind, n in hooks.events if kind == "step"]
    assert steps == list(range(1, plan.total_steps + 1))
    first_encoded = hooks.events.index(next(e for e in hooks.events if e[0] == "encoded"))
    # The first chunk's frames were encoded and streamed before the second chunk's first step;
    # "encoding" progress is reported once, at the end (the progress never goes back).
    assert [e for e in hooks.events if e[0] == "done"] == [("done", plan.out_frames)] == [hooks.events[-1]]
    chunk_one_steps = plan.num_inference_steps * (2 if model == TINY_HELIOS_DISTILLED else 1)  # amplified
    assert 0 < hooks.events[first_encoded][1] < plan.out_frames
    assert [n for kind, n in hooks.events[:first_encoded] if kind == "step"][-1] == chunk_one_steps
    assert [c["clip_frames"] for c in output.chunks] == [[0, 33], [33, 66]] and not output.partial
    frames = _decoded((tmp_path / "v.mp4").read_bytes())
    assert len(frames) == output.frames == plan.out_frames == 192
    assert hooks.previews >= 2 and (tmp_path / "t.jpg").is_file()


def test_a_cancel_after_the_first_chunk_keeps_it_as_a_partial_video(models, tmp_path):
    plan = _plan(duration_seconds=12, fps=24, resolution="480p", num_inference_steps=10)  # 3 chunks
    output = run_chunked(models.get(TINY_HELIOS), plan, _Recorder(stop_after=12), tmp_path / "v.mp4",
                         tmp_path / "t.jpg")
    assert output.partial and [c["index"] for c in output.chunks] == [0]
    frames = _decoded((tmp_path / "v.mp4").read_bytes())
    assert len(frames) == output.frames and 0 < output.frames < plan.out_frames
    assert (tmp_path / "t.jpg").is_file()


def test_a_cancel_in_the_first_chunk_leaves_nothing(models, tmp_path):
    plan = _plan(duration_seconds=8, fps=24, resolution="480p", num_inference_steps=10)
    with pytest.raises(Cancelled):
        run_chunked(models.get(TINY_HELIOS), plan, _Recorder(stop_after=2), tmp_path / "v.mp4", tmp_path / "t.jpg")
    assert not (tmp_path / "v.mp4").exists()


def test_the_vae_decodes_normally_again_after_a_run(models, tmp_path):
    model = models.get(TINY_HELIOS)
    with pytest.raises(Cancelled):
        run_chunked(model, _plan(duration_seconds=4, num_inference_steps=10), _Recorder(stop_after=1),
                    tmp_path / "v.mp4", tmp_path / "t.jpg")
    assert "decode" not in vars(model.pipe.vae)  # the chunk tap is gone, even after a cancel


# -- through REST -------------------------------------------------------------------------

def test_an_8_second_request_on_helios_is_192_distinct_frames_from_two_chunks(http):
    task_id = http.post("/v1/generate", json=LONG).json()["task_id"]
    seen_steps = set()
    while (status := http.get(f"/v1/status/{task_id}").json())["status"] not in ("completed", "failed", "cancelled"):
        seen_steps.add(status.get("current_step"))
        time.sleep(0.05)
    assert status["status"] == "completed", status
    assert any(step and step.endswith("/20") for step in seen_steps), seen_steps  # both chunks' steps
    result = http.get(f"/v1/result/{task_id}").json()
    meta = result["metadata"]
    assert meta["model"] == TINY_HELIOS and meta["frames"] == 192 and meta["generated_frames"] == 66
    assert meta["windows"] is None and [c["frames"] for c in meta["chunks"]] == [33, 33]
    assert _distinct_share(_decoded(http.get(f"/v1/videos/{task_id}.mp4").content)) >= 0.9


def test_helios_starts_from_an_image_and_another_image_changes_it(http):
    from skimage import data

    def run(picture: np.ndarray) -> tuple[dict, np.ndarray]:
        ok, png = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        body = {**SMALL, "model": TINY_HELIOS, "image": base64.b64encode(png.tobytes()).decode()}
        task_id = http.post("/v1/generate", json=body).json()["task_id"]
        assert wait_for_terminal(http, task_id)["status"] == "completed"
        return (http.get(f"/v1/result/{task_id}").json()["metadata"],
                np.stack(_decoded(http.get(f"/v1/videos/{task_id}.mp4").content)))

    meta, astronaut = run(data.astronaut())
    _, coffee = run(data.coffee())
    assert meta["conditioning"] == "first frame"
    assert np.abs(astronaut.astype(int) - coffee).mean() > 0.5


@pytest.mark.parametrize("field, detail", [
    ({"mode": "fast"}, "has no fast mode"),
    ({"loras": [{"id": "0123456789abcdef"}]}, "takes no LoRAs here yet"),
])
def test_what_helios_cannot_do_is_refused_with_the_reason(http, field, detail):
    response = http.post("/v1/generate", json={**SMALL, "model": TINY_HELIOS, **field})
    assert response.status_code == 400, response.text
    assert detail in response.json()["detail"]


def test_the_models_list_says_helios_is_autoregressive(http):
    models = {m["id"]: m for m in http.get("/v1/models").json()}
    assert models["helios-base"]["chunk_frames"] == models[TINY_HELIOS]["chunk_frames"] == 33
    assert models["helios-distilled"]["native_fps"] == 24 and models["tiny"]["chunk_frames"] is None


def test_the_prepared_gpu_script_runs_on_the_tiny_helios_models():
    """``bench/gpu_helios.py`` waits for a GPU session; ``--tiny`` runs its code on the CPU."""
    assert "| 2 | 66 | 120 |" in run_tiny_gpu_script("gpu_helios.py")  # chunks, clip frames at 8 fps, out at 24
