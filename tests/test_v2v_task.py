"""V2V Pipeline through REST (the queued task, its metadata, errors) and through gradio_client."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest
from gradio_client import handle_file

from studio.media.video import Mp4Writer, probe_video
from tests.conftest import API_KEY
from tests.edit_helpers import decoded, moving_square_clip, source_task, wait_result

ROUTE = "/v1/genius/v2v/transform"


def _key_id(live_server) -> str:
    return live_server.studio.keys.lookup(API_KEY).id


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def _chroma(frames: list[np.ndarray]) -> float:
    """Mean |a| + |b| (8-bit Lab, 128 = neutral) over frames."""
    return float(np.mean([np.abs(cv2.cvtColor(f, cv2.COLOR_RGB2LAB)[..., 1:].astype(np.float32) - 128).mean()
                          for f in frames]))


def _square_x(frame: np.ndarray) -> float:
    """Mean column of the moving square's red pixels (rows 40-72 hold only the square and background)."""
    band = frame[40:72].astype(np.int16)
    red = (np.abs(band - np.array([240, 60, 40], np.int16)) < 40).all(axis=2)
    return float(np.nonzero(red)[1].mean())


@pytest.fixture(scope="module")
def image_server():
    """A loopback HTTP server for reference images (the test server allows loopback URLs)."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = files.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield files, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_interpolation_x2_doubles_the_rate(http, live_server):
    clip = moving_square_clip(frames=9)
    source = source_task(live_server.studio, _key_id(live_server), clip, fps=12)
    response = http.post(ROUTE, json={"source_task_id": source, "mode": "interpolation", "factor": 2})
    assert response.status_code == 202, response.text
    result = wait_result(http, response.json()["task_id"])
    meta = result["metadata"]
    assert meta["feature"] == "v2v" and meta["path"] == "classical" and "optical flow" in meta["method"]
    assert meta["fps"] == 24.0 and meta["frames"] == 2 * 9 - 1 == 17
    assert meta["details"]["input"] == {"width": 192, "height": 128, "fps": 12.0, "frames": 9}
    out = decoded(http, result["task_id"])
    assert len(out) == 17
    # a synthesised frame puts the square half way between its neighbours (which are the source's)
    centres = [_square_x(frame) for frame in out[:3]]
    assert abs(centres[2] - centres[0] - 3) < 0.5 and abs(centres[1] - (centres[0] + centres[2]) / 2) < 0.5, centres
    summary = http.get(f"/v1/genius/v2v/{result['task_id']}").json()
    assert summary["mode"] == "interpolation" and summary["path"] == "classical" and summary["frames"] == 17
    assert summary["output"] == {"width": 192, "height": 128, "fps": 24.0, "frames": 17}
    assert summary["parameters"]["factor"] == 2


def test_upscale_gives_the_requested_size(http, live_server):
    source = source_task(live_server.studio, _key_id(live_server), moving_square_clip(frames=4))
    by_scale = http.post(ROUTE, json={"source_task_id": source, "mode": "upscale", "scale": 2})
    by_size = http.post(ROUTE, json={"source_task_id": source, "mode": "upscale", "width": 288})
    for response, size in ((by_scale, (384, 256)), (by_size, (288, 192))):
        assert response.status_code == 202, response.text
        result = wait_result(http, response.json()["task_id"])
        meta = result["metadata"]
        assert (meta["width"], meta["height"]) == size and meta["frames"] == 4 and meta["fps"] == 12.0
        assert decoded(http, result["task_id"])[0].shape == (size[1], size[0], 3)


def test_colorization_adds_chroma_from_the_reference(http, live_server, image_server):
    colour = moving_square_clip(frames=6)
    grey = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for f in colour]
    source = source_task(live_server.studio, _key_id(live_server), grey)
    files, base = image_server
    files["/reference.png"] = _png(colour[0])
    response = http.post(ROUTE, json={"source_task_id": source, "mode": "colorization",
                                      "style_reference_url": f"{base}/reference.png"})
    assert response.status_code == 202, response.text
    result = wait_result(http, response.json()["task_id"])
    assert result["metadata"]["path"] == "classical" and "reference" in result["metadata"]["method"]
    before = _chroma(decoded(http, source))
    after = _chroma(decoded(http, result["task_id"]))
    assert before < 1.5 and after > 8 and after > 5 * before, (before, after)
    # base64 works the same way
    png = base64.b64encode(_png(colour[0])).decode()
    again = http.post(ROUTE, json={"source_task_id": source, "mode": "colorization", "style_reference_base64": png,
                                   "temporal_consistency": 0})
    assert again.status_code == 202, again.text
    assert wait_result(http, again.json()["task_id"])["metadata"]["details"]["parameters"]["temporal_consistency"] == 0


def test_bad_requests_are_clear_4xx(http, live_server):
    source = source_task(live_server.studio, _key_id(live_server), moving_square_clip(frames=4))
    for mode in ("colorization", "style_transfer", "motion_transfer"):
        missing = http.post(ROUTE, json={"source_task_id": source, "mode": mode})
        assert missing.status_code == 400 and missing.json()["detail"].startswith("style_reference_url:"), mode
    wrong_field = http.post(ROUTE, json={"source_task_id": source, "mode": "upscale", "factor": 2})
    assert wrong_field.status_code == 400 and wrong_field.json()["detail"].startswith("factor:")
    both = http.post(ROUTE, json={"source_task_id": source, "mode": "interpolation", "factor": 2, "target_fps": 30})
    assert both.status_code == 400 and "factor" in both.json()["detail"]
    too_big = http.post(ROUTE, json={"source_task_id": source, "mode": "upscale", "width": 1000})
    assert too_big.status_code == 400 and too_big.json()["detail"].startswith("width:")
    no_source = http.post(ROUTE, json={"mode": "enhancement"})
    assert no_source.status_code == 400 and no_source.json()["detail"].startswith("source_task_id:")
    assert http.post(ROUTE, json={"source_task_id": "nope", "mode": "enhancement"}).status_code == 404
    other_key = {"Authorization": "Bearer test-key-2"}
    assert http.post(ROUTE, json={"source_task_id": source, "mode": "enhancement"},
                     headers=other_key).status_code == 404
    # the summary route: 404 for another key's task and for a task of another kind
    done = http.post(ROUTE, json={"source_task_id": source, "mode": "enhancement", "strength": 0.5})
    task_id = done.json()["task_id"]
    wait_result(http, task_id)
    assert http.get(f"/v1/genius/v2v/{task_id}").status_code == 200
    assert http.get(f"/v1/genius/v2v/{task_id}", headers=other_key).status_code == 404
    assert http.get(f"/v1/genius/v2v/{source}").status_code == 404


def test_motion_transfer_from_a_reference_video(http, live_server):
    owner = _key_id(live_server)
    appearance = source_task(live_server.studio, owner, moving_square_clip(frames=2, seed=3))
    motion = source_task(live_server.studio, owner, moving_square_clip(frames=7))
    response = http.post(ROUTE, json={"source_task_id": appearance, "mode": "motion_transfer",
                                      "motion_reference_task_id": motion})
    assert response.status_code == 202, response.text
    meta = wait_result(http, response.json()["task_id"])["metadata"]
    assert meta["frames"] == 7 and meta["details"]["parameters"]["motion"] == "reference"


def test_gradio_v2v_interpolates_an_upload(client, tmp_path):
    path = tmp_path / "square.mp4"
    clip = moving_square_clip(frames=6)
    with Mp4Writer(path, clip[0].shape[1], clip[0].shape[0], 12) as writer:
        for frame in clip:
            writer.write(frame)
    status, video, details = client.predict(handle_file(str(path)), "", "interpolation", 0.7, None, True, 0.8, 2, 2,
                                            0, None, api_name="/v2v")
    assert status.startswith("Done") and details["metadata"]["source"]["upload"] == "source.mp4"
    info = probe_video(video.get("video", video)["path"])
    assert info.frames == 11 and info.fps == 24.0
