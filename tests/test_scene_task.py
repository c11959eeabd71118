"""Scene Orchestrator: shots as tasks of the one queue, stitched with exact timing."""

from __future__ import annotations

import time

from gradio_client import Client

from tests.edit_helpers import decoded, wait_result

SETTINGS = {"fps": 12, "resolution": "480p", "num_inference_steps": 10, "seed": 4}


def test_edit_generates_each_shot_and_stitches_them(http):
    body = {"scenes": [{"prompt": "a red fox running through snow", "duration": 1},
                       {"prompt": "sunset over ocean waves", "duration": 2},
                       {"prompt": "city skyline at night", "duration": 1}],
            "transitions": [{"type": "crossfade"}, {"type": "wipe", "direction": "left"}],
            "transition_duration_seconds": 0.25, "settings": SETTINGS}
    response = http.post("/v1/genius/scene/edit", json=body)
    assert response.status_code == 202, response.text
    reply = response.json()
    # 12 + 24 + 12 frames at 12 fps, two overlaps of round(0.25 * 12) = 3 frames
    assert reply["total_scenes"] == 3 and len(reply["shot_task_ids"]) == 3
    assert reply["total_duration_seconds"] == round((48 - 6) / 12, 3)
    assert [(t["from_scene"], t["to_scene"], t["type"], t["duration"]) for t in reply["transitions"]] == \
        [(0, 1, "crossfade", 0.25), (1, 2, "wipe", 0.25)]
    progress = []
    deadline = time.monotonic() + 180
    while (status := http.get(f"/v1/status/{reply['task_id']}").json())["status"] not in ("completed", "failed"):
        progress.append(status["progress"])
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status["status"] == "completed", status
    assert any(0 < p < 0.9 for p in progress), "progress covers the shots while they run"
    result = wait_result(http, reply["task_id"])
    details = result["metadata"]["details"]
    assert details["total_frames"] == 42 and result["metadata"]["frames"] == 42
    assert len(decoded(http, reply["task_id"])) == 42
    assert [s["task_id"] for s in details["scenes"]] == reply["shot_task_ids"]
    assert [t["start_frame"] for t in details["transitions"]] == [9, 30]


def test_auto_transitions_are_chosen_with_reasons(http):
    body = {"scenes": [{"prompt": "a red fox running through snow", "duration": 1},
                       {"prompt": "a dragon flying over mountains", "duration": 1}],
            "enable_auto_transitions": True, "enable_character_consistency": True,
            "character_description": "a small red fox", "settings": SETTINGS}
    reply = http.post("/v1/genius/scene/edit", json=body).json()
    assert reply["transitions"][0]["type"] == "auto"
    result = wait_result(http, reply["task_id"], timeout=180)
    chosen = result["metadata"]["details"]["transitions"][0]
    assert chosen["type"] in ("cut", "crossfade", "wipe", "zoom", "blur", "morph") and chosen["reasons"]
    shots = [http.get(f"/v1/result/{t}").json()["metadata"] for t in reply["shot_task_ids"]]
    assert shots[0]["seed"] == shots[1]["seed"]  # one seed for the character
    assert all(s["prompt"].endswith("a small red fox") for s in shots)
    assert any("reference frame" in note for note in result["metadata"]["notes"])


def test_cancelling_the_edit_cancels_its_shots(http):
    body = {"scenes": [{"prompt": "rain on a window", "duration": 1}] * 2,
            "settings": {**SETTINGS, "num_inference_steps": 150}}
    reply = http.post("/v1/genius/scene/edit", json=body).json()
    http.post(f"/v1/cancel/{reply['task_id']}")
    deadline = time.monotonic() + 60
    for task_id in [reply["task_id"], *reply["shot_task_ids"]]:
        while http.get(f"/v1/status/{task_id}").json()["status"] not in ("cancelled", "failed", "completed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert http.get(f"/v1/status/{task_id}").json()["status"] == "cancelled"


def test_bad_edits_are_clear_errors(http):
    wrong = http.post("/v1/genius/scene/edit", json={"scenes": [{"prompt": "a", "duration": 1}] * 3,
                                                      "transitions": [{"type": "cut"}], "settings": SETTINGS})
    assert wrong.status_code == 400 and "transitions" in wrong.json()["detail"]
    blank = http.post("/v1/genius/scene/edit", json={"scenes": [{"prompt": " ", "duration": 1}]})
    assert blank.status_code == 400 and "scenes[0].prompt" in blank.json()["detail"]
    listed = http.get("/v1/genius/scene/transitions").json()
    assert [t["type"] for t in listed] == ["cut", "crossfade", "wipe", "zoom", "blur", "morph"]


def test_scene_edit_through_the_gradio_api(live_server):
    client = Client(live_server.url, verbose=False, download_files=False)
    try:
        scenes = {"headers": ["prompt", "duration (s)"], "data": [["a cat sleeping on a sofa", 1],
                                                                  ["a forest in autumn", 1]]}
        status, video, details, shots = client.predict(scenes, "crossfade", 0.5, False, "", 12, "480p", 10,
                                                       api_name="/scene_edit")
    finally:
        client.close()
    assert status.startswith("Done") and details["total_frames"] == 24 - 6
    # Each shot's first frame, captioned with its place and prompt.
    assert [shot["caption"] for shot in shots] == ["1 · a cat sleeping on a sofa", "2 · a forest in autumn"]
    assert all(shot["image"]["path"].endswith(".jpg") for shot in shots), shots
