"""Scene Orchestrator's Wan VACE paths with the offline tiny-vace model: morphs by first/last-frame
generation, shots conditioned on a character reference image, and an unavailable hub model."""

from __future__ import annotations

import base64
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2
import numpy as np
import pytest

from studio.genius.scene.model_morph import flf_length, flf_picks
from studio.genius.scene.run import REFERENCE_CONDITIONING_NOTE
from tests.edit_helpers import decoded, wait_result

# These tests exercise the offline tiny models, which are what a server without CUDA picks by
# default; on a GPU host they would pick the hub models instead (cpu_host: conftest).
pytestmark = pytest.mark.usefixtures("cpu_host")

# 12 frames per 1 s shot at 848x480; tiny / tiny-vace generate 9 frames at 160x96
SETTINGS = {"fps": 12, "resolution": "480p", "num_inference_steps": 10, "seed": 5}
SCENES = [{"prompt": "a red fox running through snow", "duration": 1},
          {"prompt": "sunset over ocean waves", "duration": 1}]


def _png(image: np.ndarray) -> str:
    return base64.b64encode(cv2.imencode(".png", image[:, :, ::-1])[1].tobytes()).decode()


@pytest.mark.parametrize("n,max_frames,k,picks", [
    (1, 33, 5, [2]),
    (3, 33, 5, [1, 2, 3]),  # k = n + 2: exactly the middle frames
    (4, 33, 9, [2, 3, 5, 6]),  # at the transition's progress (i + 1) / (n + 1)
    (6, 33, 9, [1, 2, 3, 5, 6, 7]),
    (40, 33, 33, None),  # capped at the model's length; picks stay strictly between the known ends
])
def test_flf_window_and_picks(n, max_frames, k, picks):
    assert flf_length(n, max_frames) == k and k % 4 == 1 and (k >= n + 2 or k == max_frames)
    chosen = flf_picks(n, k)
    assert len(chosen) == n and chosen == sorted(chosen) and 1 <= chosen[0] and chosen[-1] <= k - 2
    if picks is not None:
        assert chosen == picks


def test_morph_boundary_generated_by_vace(http):
    body = {"scenes": SCENES, "transitions": [{"type": "morph"}], "transition_duration_seconds": 0.25,
            "morph_with_model": True, "settings": SETTINGS}
    response = http.post("/v1/genius/scene/edit", json=body)
    assert response.status_code == 202, response.text
    reply = response.json()
    assert reply["total_duration_seconds"] == round((24 - 3) / 12, 3)
    result = wait_result(http, reply["task_id"], timeout=120)
    meta = result["metadata"]
    boundary = meta["details"]["transitions"][0]
    assert (boundary["type"], boundary["frames"], boundary["method"]) == ("morph", 3, "vace-flf (tiny-vace)")
    assert boundary["model"]["window_frames"] == 5 and boundary["model"]["picked"] == [1, 2, 3]
    assert boundary["model"]["generation_size"] == [160, 96] and boundary["model"]["seed"] == 5
    assert meta["path"] == "model" and "vace-flf (tiny-vace)" in meta["method"]
    assert meta["details"]["total_frames"] == 21 and meta["frames"] == 21
    assert any("untrained" in note for note in meta["notes"])
    frames = decoded(http, reply["task_id"])
    assert len(frames) == 21 and frames[0].shape == (480, 848, 3)
    shots = [decoded(http, shot) for shot in reply["shot_task_ids"]]
    # the overlap (output 9..11) is neither shot: A's frames 9..11 and B's 0..2 were replaced
    for i in range(3):
        overlap = frames[9 + i].astype(int)
        assert np.abs(overlap - shots[0][9 + i]).mean() > 3 and np.abs(overlap - shots[1][i]).mean() > 3
    assert np.abs(frames[12].astype(int) - shots[1][3]).mean() < 3  # then B continues


def test_character_reference_shots_run_on_vace(http, live_server):
    reference = np.zeros((64, 48, 3), np.uint8)
    reference[:, :, 0], reference[16:48, 12:36] = 200, (30, 200, 60)
    body = {"scenes": SCENES, "transitions": [{"type": "morph"}], "transition_duration_seconds": 0.25,
            "enable_character_consistency": True, "character_description": "a small red fox",
            "character_reference_image_base64": _png(reference), "settings": SETTINGS}
    response = http.post("/v1/genius/scene/edit", json=body)
    assert response.status_code == 202, response.text
    reply = response.json()
    assert [live_server.studio.store.get(t).kind for t in reply["shot_task_ids"]] == ["scene_shot"] * 2
    result = wait_result(http, reply["task_id"], timeout=120)
    shots = [wait_result(http, t)["metadata"] for t in reply["shot_task_ids"]]
    for index, shot in enumerate(shots):
        assert (shot["feature"], shot["path"], shot["method"]) == (
            "scene_shot", "model", "WanVACE reference conditioning (tiny-vace)")
        assert (shot["frames"], shot["width"], shot["height"], shot["fps"]) == (12, 848, 480, 12)
        details = shot["details"]
        assert details["conditioning"] == "VACE reference image" and details["reference_size"] == [48, 64]
        assert (details["scene"], details["seed"], details["steps"]) == (index, 5, 10)
        assert details["generation_size"] == [160, 96] and details["generation_frames"] == 9
        assert details["prompt"].startswith(SCENES[index]["prompt"]) and "a small red fox" in details["prompt"]
    meta = result["metadata"]
    assert meta["details"]["total_frames"] == 21 and meta["frames"] == 21
    assert meta["details"]["shot_kind"] == "scene_shot"
    assert meta["details"]["character_consistency"]["reference_image"] is True
    assert meta["details"]["transitions"][0]["method"] == "optical-flow"  # morph_with_model not asked
    assert REFERENCE_CONDITIONING_NOTE not in meta["notes"]
    assert any("reference image through Wan VACE (tiny-vace)" in note for note in meta["notes"])


def test_unavailable_model_and_bad_reference_are_clear_errors(http):
    morph = http.post("/v1/genius/scene/edit", json={
        "scenes": SCENES, "transitions": [{"type": "morph"}], "morph_with_model": True,
        "model": "wan2.1-vace-1.3b", "settings": SETTINGS})  # no GPU, no hub here
    assert morph.status_code == 503 and morph.json()["type"] == "ModelUnavailable"
    assert "wan2.1-vace-1.3b" in morph.json()["detail"] and "tiny-vace" in morph.json()["detail"]
    png = _png(np.full((16, 16, 3), 90, np.uint8))
    shot = http.post("/v1/genius/scene/edit", json={
        "scenes": SCENES, "enable_character_consistency": True, "character_reference_image_base64": png,
        "model": "wan2.1-vace-1.3b", "settings": SETTINGS})
    assert shot.status_code == 503 and shot.json()["type"] == "ModelUnavailable"
    unflagged = http.post("/v1/genius/scene/edit", json={
        "scenes": SCENES, "character_reference_image_base64": png, "settings": SETTINGS})
    assert unflagged.status_code == 400 and "enable_character_consistency" in unflagged.json()["detail"]
    broken = http.post("/v1/genius/scene/edit", json={
        "scenes": SCENES, "enable_character_consistency": True, "character_reference_image_base64": "bm90IGFu",
        "settings": SETTINGS})
    assert broken.status_code == 400 and "character_reference_image_base64" in broken.json()["detail"]
    t2v_model = http.post("/v1/genius/scene/edit", json={"scenes": SCENES, "morph_with_model": True,
                                                         "model": "tiny", "settings": SETTINGS})
    assert t2v_model.status_code in (400, 422)  # a text-to-video model is not a VACE model


def test_model_paths_through_the_gradio_api(live_server, tmp_path):
    from gradio_client import Client, handle_file

    image = tmp_path / "character.png"
    cv2.imwrite(str(image), np.full((32, 32, 3), (40, 90, 200), np.uint8))
    client = Client(live_server.url, verbose=False, download_files=False)
    try:
        scenes = {"headers": ["prompt", "duration (s)"], "data": [[s["prompt"], 1] for s in SCENES]}
        status, _video, details, _shots = client.predict(scenes, "morph", 0.25, True, "a fox", 12, "480p", 10,
                                                         True, handle_file(str(image)), api_name="/scene_edit")
    finally:
        client.close()
    assert status.startswith("Done") and details["total_frames"] == 21
    assert details["shot_kind"] == "scene_shot" and details["transitions"][0]["method"] == "vace-flf (tiny-vace)"


def test_morph_boundary_generated_by_a_first_last_frame_model(http):
    body = {"scenes": SCENES, "transitions": [{"type": "morph"}], "transition_duration_seconds": 0.25,
            "morph_with_model": True, "morph_model": "tiny-i2v", "settings": SETTINGS}
    response = http.post("/v1/genius/scene/edit", json=body)
    assert response.status_code == 202, response.text
    result = wait_result(http, response.json()["task_id"], timeout=120)
    meta = result["metadata"]
    boundary = meta["details"]["transitions"][0]
    assert (boundary["type"], boundary["frames"], boundary["method"]) == ("morph", 3, "flf2v (tiny-i2v)")
    assert boundary["model"]["id"] == "tiny-i2v" and boundary["model"]["picked"] == [1, 2, 3]
    assert meta["path"] == "model" and "flf2v (tiny-i2v)" in meta["method"] and meta["frames"] == 21
    # the FLF2V model's frames differ from VACE's for the same boundary
    vace = wait_result(http, http.post("/v1/genius/scene/edit", json={**body, "morph_model": "tiny-vace"}
                                       ).json()["task_id"], timeout=120)
    assert vace["metadata"]["details"]["transitions"][0]["method"] == "vace-flf (tiny-vace)"
    a, b = decoded(http, result["task_id"]), decoded(http, vace["task_id"])
    overlap = slice(12 - 3, 12)  # the 3 morph frames end where the first shot's 12 frames end
    assert np.abs(np.stack(a[overlap]).astype(int) - np.stack(b[overlap]).astype(int)).mean() > 2


def test_morph_model_is_checked(http):
    base = {"scenes": SCENES, "transitions": [{"type": "morph"}], "settings": SETTINGS}
    unused = http.post("/v1/genius/scene/edit", json={**base, "morph_model": "tiny-i2v"})
    assert unused.status_code == 400 and unused.json()["detail"].startswith("morph_model:")
    real = http.post("/v1/genius/scene/edit", json={**base, "morph_with_model": True,
                                                   "morph_model": "wan2.1-flf2v-14b"})
    assert real.status_code == 503 and "first-last-frame" in real.json()["detail"]
    wrong = http.post("/v1/genius/scene/edit", json={**base, "morph_with_model": True, "morph_model": "tiny"})
    assert wrong.status_code in (400, 422)
