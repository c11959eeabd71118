"""Text-to-video through the REST API, end to end with the offline tiny model."""

from __future__ import annotations

import io
import json
import time

import av
import pytest
from websockets.sync.client import connect

from studio.engine.t2v import DENOISE_SHARE
from tests.conftest import AUTH, SMALL, wait_for_terminal


def probe(mp4: bytes) -> dict:
    """Codec, pixel format, size and the number of decodable frames of an mp4."""
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "width": stream.codec_context.width, "height": stream.codec_context.height,
                "frames": frames, "fps": float(stream.average_rate)}


def test_generate_status_result_and_video(http):
    submitted = http.post("/v1/generate", json={**SMALL, "seed": 7})
    assert submitted.status_code == 202, submitted.text
    body = submitted.json()
    assert body["status"] == "pending" and body["message"]
    assert body["queue_position"] >= 1
    assert body["estimated_time_seconds"] > 0

    final = wait_for_terminal(http, body["task_id"])
    assert final["status"] == "completed", final
    assert final["progress"] == 1.0 and final["elapsed_seconds"] > 0
    assert final["preview_url"].startswith(f"/v1/previews/{body['task_id']}")

    result = http.get(f"/v1/result/{body['task_id']}").json()
    assert result["status"] == "completed"
    assert result["resolution"] == "480p"
    assert result["duration_seconds"] == pytest.approx(1.0)
    meta = result["metadata"]
    assert meta["prompt"] == SMALL["prompt"] and meta["model"] == "tiny" and meta["seed"] == 7
    assert meta["model_trained"] is False
    assert any("upscaled to 848x480" in note for note in meta["notes"])

    video = http.get(result["video_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert result["file_size_mb"] == pytest.approx(len(video.content) / 2**20, abs=1e-3)
    info = probe(video.content)
    assert info == {"codec": "h264", "pix_fmt": "yuv420p", "width": 848, "height": 480, "frames": 12,
                    "fps": 12.0}
    # faststart: the index (moov) precedes the media data so browsers can start playing at once
    assert video.content.find(b"moov") < video.content.find(b"mdat")

    thumb = http.get(result["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    preview = http.get(final["preview_url"])
    assert preview.status_code == 200 and preview.content[:2] == b"\xff\xd8"


def test_same_seed_gives_the_same_video(http):
    ids = [http.post("/v1/generate", json={**SMALL, "seed": 11}).json()["task_id"] for _ in range(2)]
    for task_id in ids:
        assert wait_for_terminal(http, task_id)["status"] == "completed"
    videos = [http.get(f"/v1/videos/{task_id}.mp4").content for task_id in ids]
    assert videos[0] == videos[1]


def test_frame_count_follows_duration_and_fps(http):
    request = {**SMALL, "duration_seconds": 2.5, "fps": 24, "resolution": "480p", "aspect_ratio": "9:16"}
    task_id = http.post("/v1/generate", json=request).json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    info = probe(http.get(f"/v1/videos/{task_id}.mp4").content)
    assert (info["width"], info["height"], info["frames"]) == (480, 848, 60)


def test_websocket_sends_the_seed_events(http, live_server):
    task_id = http.post("/v1/generate", json=SMALL).json()["task_id"]
    ws_url = live_server.url.replace("http", "ws") + f"/v1/ws/{task_id}"
    messages = []
    with connect(ws_url, open_timeout=10, additional_headers=AUTH) as ws:
        for raw in ws:
            messages.append(json.loads(raw))
    types = [m["type"] for m in messages]
    assert types[-1] == "complete"
    assert messages[-1]["video_url"] == f"/v1/videos/{task_id}.mp4"
    steps = [m["step"] for m in messages if m["type"] == "progress"]
    assert "Denoising step 10/10" in steps
    frames = [m for m in messages if m["type"] == "frame_available"]
    assert len(frames) >= 2 and all(f["quality"] == "preview" for f in frames)
    progress = [m["progress"] for m in messages if m["type"] == "progress" and "current_step" in m]
    assert progress == sorted(progress)


def test_websocket_for_unknown_task_says_so(live_server):
    with connect(live_server.url.replace("http", "ws") + "/v1/ws/nope", open_timeout=10, additional_headers=AUTH) as ws:
        message = json.loads(ws.recv(timeout=10))
    assert message["type"] == "error" and message["error"] == "Task not found"


def steps_done(status: dict, total: int) -> int:
    """Denoising steps a task has finished, from its progress (a cancelled task's
    ``current_step`` is just "Cancelled"; its progress stays where the run stopped)."""
    return round(status["progress"] / DENOISE_SHARE * total)


def test_cancel_running_task_stops_within_a_step(http):
    task_id = http.post("/v1/generate", json={**SMALL, "num_inference_steps": 150}).json()["task_id"]
    deadline = time.monotonic() + 60
    while http.get(f"/v1/status/{task_id}").json()["current_step"].find("Denoising step") < 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelled = http.post(f"/v1/cancel/{task_id}")
    assert cancelled.status_code == 200
    final = wait_for_terminal(http, task_id, timeout=30)
    assert final["status"] == "cancelled" and final["current_step"] == "Cancelled"
    # The cancel reply is read after the flag is set; the run checks the flag after each step
    # (having recorded it), so it ends at the step the reply saw or the one after it.
    at_cancel, last = steps_done(cancelled.json(), 150), steps_done(final, 150)
    assert at_cancel < 150 and at_cancel <= last <= at_cancel + 1, (at_cancel, last)
    result = http.get(f"/v1/result/{task_id}")
    assert result.status_code == 409 and result.json()["type"] == "TaskNotReady"
    assert http.get(f"/v1/videos/{task_id}.mp4").status_code == 404


def test_cancel_pending_task_is_immediate(http):
    first = http.post("/v1/generate", json={**SMALL, "num_inference_steps": 60}).json()["task_id"]
    second = http.post("/v1/generate", json=SMALL).json()
    assert second["queue_position"] >= 1
    body = http.post(f"/v1/cancel/{second['task_id']}").json()
    assert body["status"] == "cancelled"
    assert http.post(f"/v1/cancel/{second['task_id']}").json()["status"] == "cancelled"  # twice is fine
    http.post(f"/v1/cancel/{first}")
    assert wait_for_terminal(http, first)["status"] in ("cancelled", "completed")


@pytest.mark.parametrize("path", ["/v1/status/does-not-exist", "/v1/result/does-not-exist",
                                  "/v1/videos/does-not-exist.mp4", "/v1/videos/..%2F..%2Fetc%2Fpasswd",
                                  "/v1/no-such-route"])
def test_unknown_things_are_404_in_the_seed_shape(http, path):
    response = http.get(path)
    assert response.status_code == 404
    assert set(response.json()) == {"error", "detail", "type"}


@pytest.mark.usefixtures("cpu_host")  # asserts what a server without CUDA does
def test_catalog_routes_and_docs(http):
    models = {m["id"]: m for m in http.get("/v1/models").json()}
    assert models["tiny"]["available"] and models["tiny"]["default"] and not models["tiny"]["trained"]
    assert models["wan2.1-t2v-1.3b"]["repo_id"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert models["tiny-vace"]["task"] == "vace" and models["tiny-vace"]["available"]
    assert not models["wan2.1-vace-1.3b"]["available"] and "CUDA" in models["wan2.1-vace-1.3b"]["availability"]
    genres = [g["name"] for g in http.get("/v1/genres").json()]
    assert "cinematic" in genres and "fantasy" in genres
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/v1/generate", "/v1/status/{task_id}", "/v1/result/{task_id}", "/v1/cancel/{task_id}"):
        assert path in paths


@pytest.mark.usefixtures("cpu_host")  # asserts what a server without CUDA does
def test_hub_model_without_gpu_fails_clearly(http):
    task_id = http.post("/v1/generate", json={**SMALL, "model": "wan2.1-t2v-1.3b"}).json()["task_id"]
    final = wait_for_terminal(http, task_id)
    assert final["status"] == "failed"
    assert final["error_type"] == "ModelUnavailable" and "CUDA" in final["error"]
