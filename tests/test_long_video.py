"""Long videos are really generated (issue 13, part 1): a request longer than one model pass runs
as a chain of windows, each after the first continuing from the previous one's last frames
through the model's VACE sibling, with colour drift corrected and overlaps blended; a cancel
keeps the finished windows as a partial result."""

from __future__ import annotations

import io
import time

import av
import numpy as np
import pytest

from studio.engine.long_video import run_chain
from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest
from studio.engine.stitch import WindowStitcher, colour_correction
from studio.engine.t2v import Cancelled, QuietHooks
from studio.engine.windows import CONTEXT_FRAMES
from studio.models.catalog import CATALOG, GENERATION_CATALOG, TINY, TINY_I2V, TINY_I2V_FIRST, TINY_VACE
from studio.models.loader import ModelCache
from tests.conftest import SMALL, client_owner, wait_for_terminal

LONG = {**SMALL, "duration_seconds": 8.0, "fps": 24}  # tiny: 4 s per pass at 8 fps


def _plan(model: str = TINY, **request):
    return make_plan(GenerationRequest(prompt="a cat", genre="none", **request), GENERATION_CATALOG[model], seed=11)


def _decoded(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _distinct_share(frames: list[np.ndarray]) -> float:
    """The share of frames that differ from the one before (the first counts as distinct)."""
    repeats = sum(np.abs(a.astype(int) - b.astype(int)).mean() < 0.5 for a, b in zip(frames, frames[1:]))
    return 1 - repeats / len(frames)


# -- the plan -------------------------------------------------------------------------------

def test_a_clip_longer_than_one_pass_is_planned_as_windows_covering_every_frame():
    plan = _plan(duration_seconds=8, fps=24)
    spec = CATALOG[TINY]
    assert plan.passes == 3 and plan.clip_frames == 65  # 8 s x 8 fps, on the 4k+1 grid
    assert [w.model for w in plan.windows] == [TINY, TINY_VACE, TINY_VACE]
    assert plan.continuation_model == TINY_VACE
    assert plan.windows[0].start == 0 and plan.windows[-1].end == plan.clip_frames
    for before, window in zip(plan.windows, plan.windows[1:]):
        assert window.start == before.end and window.context == CONTEXT_FRAMES
    assert all(w.frames <= spec.max_frames and (w.frames - 1) % 4 == 0 for w in plan.windows)
    assert all(w.frames >= w.context + w.new_frames for w in plan.windows)
    assert len({w.seed for w in plan.windows}) == 3 and plan.windows[0].seed == 11
    assert any("3 windows" in note and TINY_VACE in note for note in plan.notes)
    assert plan.out_frames == 192 and plan.temporal == "flow"


def test_a_clip_within_one_pass_and_a_model_without_continuation_stay_one_pass():
    short = _plan(duration_seconds=4, fps=12)
    assert short.passes == 1 and short.continuation_model is None
    no_sibling = _plan(TINY_I2V, duration_seconds=20, fps=24)  # first and last frame: nothing to continue from
    assert GENERATION_CATALOG[TINY_I2V].continuation is None
    assert no_sibling.passes == 1 and no_sibling.clip_frames == GENERATION_CATALOG[TINY_I2V].max_frames
    assert any("has no continuation model" in note for note in no_sibling.notes)


@pytest.mark.parametrize("model, continuation", [
    ("tiny-ti2v", "tiny-ti2v"), ("tiny-i2v-first", "tiny-i2v-first"), ("wan2.2-ti2v-5b", "wan2.2-ti2v-5b"),
    ("wan2.2-t2v-a14b", "wan2.2-i2v-a14b"), ("wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-480p"),
])
def test_image_models_continue_from_the_previous_windows_last_frame(model, continuation):
    plan = _plan(model, duration_seconds=20, fps=24)
    assert plan.passes > 1 and plan.continuation_model == continuation
    assert all(w.kind == "image" and w.context == 1 for w in plan.windows[1:])
    assert plan.windows[-1].end == plan.clip_frames and all(w.frames <= GENERATION_CATALOG[model].max_frames
                                                           for w in plan.windows)
    assert any("last frame as its first frame" in note for note in plan.notes)


def test_the_estimate_counts_every_window():
    from studio.models.cost.timing import CostInputs, estimate_time

    one = estimate_time(CostInputs.of(None, TINY), CATALOG[TINY], _plan(duration_seconds=4))
    three = estimate_time(CostInputs.of(None, TINY), CATALOG[TINY], _plan(duration_seconds=8))
    assert three.steps == 3 * one.steps
    assert three.load_seconds > 0 == one.load_seconds  # the continuation model loads mid-task


# -- stitching ------------------------------------------------------------------------------

def test_colour_correction_maps_a_drifted_rendering_back_onto_the_known_frames():
    rng = np.random.default_rng(0)
    known = [rng.integers(40, 200, (24, 32, 3), dtype=np.uint8) for _ in range(3)]
    drifted = [np.clip(f.astype(int) * 1.2 + (30, -10, 5), 0, 255).astype(np.uint8) for f in known]
    correction = colour_correction(drifted, known)
    restored = [correction.apply(f) for f in drifted]
    error_before = np.mean([np.abs(d.astype(int) - k).mean() for d, k in zip(drifted, known)])
    error_after = np.mean([np.abs(r.astype(int) - k).mean() for r, k in zip(restored, known)])
    assert error_after < 1.5 < 10 < error_before


def test_the_stitcher_blends_overlaps_and_holds_only_the_next_context():
    """Window 2 re-renders window 1's last 2 frames 50 levels brighter: its whole output is
    corrected back, the overlap fades between the two renderings, every clip frame comes out
    once, in order."""
    stitcher = WindowStitcher()
    texture = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)  # 0..47: some spread for the fit

    def frame(level: int) -> np.ndarray:
        return texture + np.uint8(level)

    out, correction = stitcher.add([frame(10 * i) for i in range(6)], context=0, new=6, hold=2)  # clip frames 0..5
    assert correction is None and [float(f.mean() - texture.mean()) for f in out] == [0, 10, 20, 30]
    assert len(stitcher.held) == 2
    # clip frames 4, 5 re-rendered 50 levels brighter, then 6..8 (+ a padding frame that is dropped)
    second = [frame(10 * i + 50) for i in range(4, 10)]
    out, correction = stitcher.add(second, context=2, new=3, hold=0)
    assert len(out) == 5 and stitcher.held == []
    assert correction.offset[0] == pytest.approx(-50, abs=1) and correction.gain[0] == pytest.approx(1, abs=0.01)
    # clip frames 4..8 at their own levels: the drift is gone, no jump at the seam
    levels = [float(f.mean() - texture.mean()) for f in out]
    assert levels == pytest.approx([40, 50, 60, 70, 80], abs=1)


# -- the engine -----------------------------------------------------------------------------

class _StopAfterSteps(QuietHooks):
    """Cancels once ``steps`` denoising steps ran (window 1 of 10 steps: cancel in window 2)."""

    def __init__(self, steps: int):
        self.steps, self.done = steps, 0

    def on_step(self, step, total, step_seconds, preview):
        self.done = step

    def should_cancel(self) -> bool:
        return self.done > self.steps


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return ModelCache(tmp_path_factory.mktemp("models"))


def test_a_cancel_after_the_first_window_keeps_it_as_a_partial_video(models, tmp_path):
    plan = _plan(duration_seconds=8, fps=24, resolution="480p", num_inference_steps=10)
    output = run_chain(models, models.get(TINY), plan, _StopAfterSteps(12), tmp_path / "v.mp4", tmp_path / "t.jpg")
    assert output.partial and [w["index"] for w in output.windows] == [0]
    frames = _decoded((tmp_path / "v.mp4").read_bytes())
    assert len(frames) == output.frames and 0 < output.frames < plan.out_frames
    # The finished window and its held-back frames: its 22 clip frames, interpolated to 24 fps.
    assert plan.output_index(plan.windows[0].end - 1) <= output.frames <= plan.output_index(plan.windows[0].end)
    assert (tmp_path / "t.jpg").is_file()


def test_a_cancel_in_the_first_window_leaves_nothing(models, tmp_path):
    plan = _plan(duration_seconds=8, fps=24, resolution="480p", num_inference_steps=10)
    with pytest.raises(Cancelled):
        run_chain(models, models.get(TINY), plan, _StopAfterSteps(3), tmp_path / "v.mp4", tmp_path / "t.jpg")
    assert not (tmp_path / "v.mp4").exists()


# -- through REST, the Gradio API and the UI's follower -----------------------------------

def test_an_8_second_request_is_192_distinct_frames_generated_in_windows(http):
    task_id = http.post("/v1/generate", json=LONG).json()["task_id"]
    seen_steps = set()
    while (status := http.get(f"/v1/status/{task_id}").json())["status"] not in ("completed", "failed", "cancelled"):
        seen_steps.add(status.get("current_step"))
        time.sleep(0.05)
    assert status["status"] == "completed", status
    assert any(step and step.endswith("/30") for step in seen_steps), seen_steps  # progress counts every window
    result = http.get(f"/v1/result/{task_id}").json()
    meta = result["metadata"]
    assert meta["frames"] == 192 and result["duration_seconds"] == 8 and not result["partial"]
    assert meta["generated_frames"] == 65 and meta["continuation_model"] == TINY_VACE
    windows = meta["windows"]
    assert [w["model"] for w in windows] == [TINY, TINY_VACE, TINY_VACE]
    assert [w["clip_frames"] for w in windows] == [[0, 22], [22, 43], [43, 65]]
    assert windows[0]["conditioning"] == "text" and "VACE known frames" in windows[1]["conditioning"]
    assert windows[1]["colour_correction"] is not None and len({w["seed"] for w in windows}) == 3
    frames = _decoded(http.get(f"/v1/videos/{task_id}.mp4").content)
    assert len(frames) == 192
    assert _distinct_share(frames) >= 0.9


def test_a_cancelled_long_video_keeps_its_finished_windows_through_rest(http):
    task_id = http.post("/v1/generate", json={**LONG, "num_inference_steps": 40}).json()["task_id"]
    deadline = time.monotonic() + 120
    while True:  # cancel in the second window
        status = http.get(f"/v1/status/{task_id}").json()
        step = status.get("current_step") or ""
        if step.startswith("Denoising step") and int(step.split()[2].split("/")[0]) > 42:
            break
        assert status["status"] not in ("completed", "failed", "cancelled") and time.monotonic() < deadline, status
        time.sleep(0.05)
    assert http.post(f"/v1/cancel/{task_id}").status_code == 200
    assert wait_for_terminal(http, task_id)["status"] == "cancelled"
    result = http.get(f"/v1/result/{task_id}")
    assert result.status_code == 200, result.text
    body = result.json()
    assert body["status"] == "cancelled" and body["partial"] is True
    assert 1 <= len(body["metadata"]["windows"]) < 3
    assert any("partial result holds the finished windows" in note for note in body["metadata"]["notes"])
    frames = _decoded(http.get(f"/v1/videos/{task_id}.mp4").content)
    assert len(frames) == body["metadata"]["frames"] < 192


def test_the_gradio_api_generates_a_long_video_in_windows(client, live_server):
    job = client.submit(LONG["prompt"], "blurry", 8.0, 24, "480p", "16:9", "cinematic", 3, 7.5, 10, "tiny",
                        api_name="/generate")
    task_id, _strip, status, video, _thumbnail, metadata = list(job)[-1]
    assert metadata["status"] == "completed" and video["path"].endswith(".mp4")
    assert len(metadata["metadata"]["windows"]) == 3 and metadata["metadata"]["frames"] == 192
    owner = client_owner(live_server.studio, client)
    assert live_server.studio.result(task_id, owner).metadata.windows[2]["model"] == TINY_VACE


def run_tiny_gpu_script(name: str, args: tuple[str, ...] = ("--duration", "5")) -> str:
    """The output of a prepared GPU script (``bench/<name>``) run with ``--tiny`` (and ``args``) on
    the CPU: the same code on the tiny configurations, which checks the script while it waits for a GPU."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / name
    run = subprocess.run([sys.executable, str(script), "--tiny", *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def test_the_prepared_gpu_script_runs_on_the_tiny_configurations():
    """``bench/gpu_long_video.py`` waits for a GPU session; ``--tiny`` runs its code on the CPU."""
    assert "| 2 | 41 | 80 |" in run_tiny_gpu_script("gpu_long_video.py")  # windows, clip frames at 8 fps, out at 16


def test_a_long_video_from_an_image_continues_window_by_window_through_rest(http):
    import base64

    import cv2
    from skimage import data

    ok, png = cv2.imencode(".png", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    body = {**LONG, "image": base64.b64encode(png.tobytes()).decode()}
    task_id = http.post("/v1/generate", json=body).json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    meta = http.get(f"/v1/result/{task_id}").json()["metadata"]
    assert meta["model"] == TINY_I2V_FIRST and meta["frames"] == 192 and meta["conditioning"] == "first frame"
    assert [w["conditioning"] for w in meta["windows"]] == [
        "text + the request's first frame"] + ["text + the previous window's last frame as its first frame "
                                               "(image conditioning)"] * 2
    assert _distinct_share(_decoded(http.get(f"/v1/videos/{task_id}.mp4").content)) >= 0.9
