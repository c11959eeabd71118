"""Video Inpainting through REST: the queued task, its inputs, geometry and errors."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from tests.conftest import API_KEY
from tests.edit_helpers import decoded, moving_square_clip, source_task, square_box, textured_background, wait_result


def _key_id(live_server) -> str:
    return live_server.studio.keys.lookup(API_KEY).id


def test_remove_erases_the_moving_object(http, live_server):
    clip = moving_square_clip()
    source = source_task(live_server.studio, _key_id(live_server), clip)
    response = http.post("/v1/genius/inpaint/process", json={
        "task_id": source, "mode": "remove", "bbox": [18, 38, 54, 74], "feather_radius": 4})
    assert response.status_code == 202, response.text
    result = wait_result(http, response.json()["task_id"])
    meta = result["metadata"]
    assert meta["feature"] == "inpaint" and meta["path"] == "classical" and meta["frames"] == len(clip)
    assert meta["source"]["task_id"] == source
    boxes = meta["details"]["boxes"]
    assert abs(boxes[-1][0] - (18 + 3 * (len(clip) - 1))) <= 2  # tracked as it moved
    out = decoded(http, result["task_id"])
    truth = textured_background()
    for i, (frame, original) in enumerate(zip(out, clip)):  # where the square was, the background shows
        x1, y1, x2, y2 = square_box(i)
        filled = cv2.PSNR(frame[y1:y2, x1:x2], truth[y1:y2, x1:x2])
        # two H.264 generations of a busy colour texture cost a few dB; the square itself is ~10 dB
        assert filled > 25 and filled > cv2.PSNR(original[y1:y2, x1:x2], truth[y1:y2, x1:x2]) + 10


def test_blend_and_extend_geometry(http, live_server):
    source = source_task(live_server.studio, _key_id(live_server), moving_square_clip(frames=8))
    overlay = np.zeros((20, 20, 3), np.uint8)
    overlay[:] = (0, 0, 255)
    png = base64.b64encode(cv2.imencode(".png", overlay[:, :, ::-1])[1].tobytes()).decode()
    blended = http.post("/v1/genius/inpaint/process", json={
        "task_id": source, "mode": "blend", "bbox": [100, 80, 140, 120], "feather_radius": 0,
        "overlay_image_base64": png})
    assert blended.status_code == 202, blended.text
    frame = decoded(http, wait_result(http, blended.json()["task_id"])["task_id"])[0]
    assert frame[90:110, 110:130, 2].mean() > 200 and frame[90:110, 110:130, 0].mean() < 40
    extended = http.post("/v1/genius/inpaint/process", json={"task_id": source, "mode": "extend",
                                                              "target_aspect_ratio": "1:1"})
    result = wait_result(http, extended.json()["task_id"])
    assert (result["metadata"]["width"], result["metadata"]["height"]) == (192, 192)


@pytest.mark.usefixtures("cpu_host")  # asserts what a server without CUDA does
def test_bad_requests_are_clear_4xx(http, live_server):
    source = source_task(live_server.studio, _key_id(live_server), moving_square_clip(frames=4))
    outside = http.post("/v1/genius/inpaint/process", json={"task_id": source, "mode": "remove",
                                                             "bbox": [180, 100, 260, 160]})
    assert outside.status_code == 400 and "bbox" in outside.json()["detail"]
    replace = http.post("/v1/genius/inpaint/process", json={"task_id": source, "mode": "replace",
                                                             "bbox": [10, 10, 50, 50], "prompt": "a cat",
                                                             "model": "wan2.1-vace-1.3b"})  # no GPU, no hub here
    assert replace.status_code == 503 and replace.json()["type"] == "ModelUnavailable"
    missing = http.post("/v1/genius/inpaint/process", json={"task_id": "nope", "mode": "remove",
                                                             "bbox": [10, 10, 50, 50]})
    assert missing.status_code == 404
    no_overlay = http.post("/v1/genius/inpaint/process", json={"task_id": source, "mode": "blend",
                                                                "bbox": [10, 10, 50, 50]})
    assert no_overlay.status_code == 400 and "overlay" in no_overlay.json()["detail"]
    private = http.post("/v1/genius/inpaint/process", json={"task_id": source, "mode": "remove",
                                                             "bbox": [10, 10, 50, 50]},
                        headers={"Authorization": "Bearer test-key-2"})
    assert private.status_code == 404


def test_the_tab_puts_its_one_image_where_the_mode_reads_it(client, live_server, tmp_path):
    """The Inpaint tab has one image input: blend reads it as the overlay, background as the new
    background (the request's rule, ``InpaintRequest.image_field_for``), and neither mode runs
    without it."""
    from gradio_client import handle_file

    from tests.conftest import client_owner

    source = source_task(live_server.studio, client_owner(live_server.studio, client), moving_square_clip(frames=6))
    image = tmp_path / "image.png"
    cv2.imwrite(str(image), np.full((32, 32, 3), (40, 200, 30), np.uint8))
    for mode, method in (("blend", "feather"), ("background", "grabcut")):
        status, _video, details = client.predict(None, source, mode, 14, 34, 58, 78, 4, handle_file(str(image)),
                                                 "feather", "1:1", "", api_name="/inpaint")
        assert status.startswith("Done"), status
        assert (details["metadata"]["path"], details["metadata"]["method"]) == ("classical", method)
