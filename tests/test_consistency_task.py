"""Consistency Tracker through REST and the Gradio API: entities per API key, the queued tracking
task, its boxes against the truth and a score that drops when the entity changes colour."""

from __future__ import annotations

import base64
import threading

import cv2
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from skimage import data

from studio.core import UI_OWNER
from studio.engine.gpu import GPU_LOCK
from studio.genius.consistency import task as consistency_task
from studio.genius.consistency.schema import EntityExists
from studio.media.video import Mp4Writer, probe_video
from tests.conftest import API_KEY, OTHER_KEY
from tests.edit_helpers import decoded, source_task, wait_result
from tests.test_consistency import hue_rotate, smooth_noise

H, W, N_FRAMES = 128, 192, 16
SIDE = 48
MIN_MEAN_IOU = 0.7
MIN_SCORE_DROP = 0.15
BASE = "/v1/genius/consistency"


def moving_clip(obj: np.ndarray, change_colour: bool = False) -> tuple[list[np.ndarray], list[tuple]]:
    """``obj`` moving right and along a wave over soft noise; with ``change_colour`` its hue turns
    by 120 degrees from the middle frame on. Returns the frames and the true [x1, y1, x2, y2] boxes."""
    background = smooth_noise(H, W, seed=2)
    frames, boxes = [], []
    for i in range(N_FRAMES):
        x, y = 8 + 8 * i, round(30 + 2 * i + 8 * np.sin(i / 3))
        frame = background.copy()
        frame[y:y + SIDE, x:x + SIDE] = hue_rotate(obj, 120) if change_colour and i >= N_FRAMES // 2 else obj
        frames.append(frame)
        boxes.append((x, y, x + SIDE, y + SIDE))
    return frames, boxes


def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def png_base64(image: np.ndarray) -> str:
    return base64.b64encode(cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()).decode()


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    """A 48 px crop of the cat's face."""
    return cv2.resize(data.chelsea()[50:250, 100:300], (SIDE, SIDE), interpolation=cv2.INTER_AREA)


@pytest.fixture()
def other(live_server):
    with httpx.Client(base_url=live_server.url, timeout=60, headers={"Authorization": f"Bearer {OTHER_KEY}"}) as c:
        yield c


@pytest.fixture(autouse=True)
def no_entities_left(live_server):
    """Every test starts and ends with no entities for either key or the UI."""
    store = live_server.studio.entities
    owners = [live_server.studio.keys.lookup(k).id for k in (API_KEY, OTHER_KEY)] + [UI_OWNER]

    def clear():
        for owner in owners:
            for entity in store.owned(owner):
                store.delete(owner, entity.entity_id)

    clear()
    yield
    clear()


def _key_id(live_server, key: str = API_KEY) -> str:
    return live_server.studio.keys.lookup(key).id


def _register(http, name: str, image: np.ndarray, entity_type: str = "object") -> dict:
    response = http.post(f"{BASE}/register-entity", json={"name": name, "entity_type": entity_type,
                                                          "reference_image_base64": png_base64(image)})
    assert response.status_code == 201, response.text
    return response.json()


def test_tracking_finds_the_object_and_scores_a_colour_change_lower(http, live_server, cat):
    entity = _register(http, "cat", cat)
    assert (entity["name"], entity["entity_type"], entity["width"], entity["height"]) == ("cat", "object", 48, 48)
    owner = _key_id(live_server)
    stable_frames, boxes = moving_clip(cat)
    stable_source = source_task(live_server.studio, owner, stable_frames)
    changed_source = source_task(live_server.studio, owner, moving_clip(cat, change_colour=True)[0])

    with GPU_LOCK:  # the worker cannot start it yet: the seed response is not ready
        submitted = http.post(f"{BASE}/track/{stable_source}")
        assert submitted.status_code == 202, submitted.text
        stable_id = submitted.json()["task_id"]
        early = http.get(f"{BASE}/track/{stable_id}")
        assert early.status_code == 409, early.text
    changed = http.post(f"{BASE}/track/{changed_source}", json={"entity_names": ["cat"], "detect_every": 5})
    assert changed.status_code == 202, changed.text

    result = wait_result(http, stable_id)
    meta = result["metadata"]
    assert (meta["feature"], meta["path"], meta["frames"]) == ("consistency", "classical", N_FRAMES)
    assert meta["source"]["task_id"] == stable_source
    stable = http.get(f"{BASE}/track/{stable_id}").json()
    assert stable["task_id"] == stable_id and stable["source_task_id"] == stable_source
    assert stable["entities_tracked"] == 1 and stable["frames_analyzed"] == N_FRAMES
    assert stable["consistency_score"] == meta["details"]["consistency_score"]
    timeline = stable["entity_timelines"]["cat"]
    assert [e["frame"] for e in timeline] == list(range(N_FRAMES))
    ious = [iou(e["bbox"], boxes[e["frame"]]) for e in timeline]
    assert np.mean(ious) >= MIN_MEAN_IOU and min(ious) >= 0.5
    assert all(0.3 <= e["confidence"] <= 1 for e in timeline)
    scores = stable["entity_scores"]["cat"]
    assert scores["frames_present"] == N_FRAMES and scores["detections"]["template"] == 4  # keyframes 0, 5, 10, 15

    # The annotated video: the source with the entity's box drawn (palette colour 0, red).
    out = decoded(http, stable_id)
    assert len(out) == N_FRAMES
    x1, y1, x2, y2 = timeline[0]["bbox"]
    edge, inside = out[0][y1 + 4:y2 - 4, x1].astype(int), out[0][y1 + 4:y2 - 4, x1 + 6].astype(int)
    source_edge = stable_frames[0][y1 + 4:y2 - 4, x1].astype(int)
    assert (edge[:, 0] - edge[:, 1]).mean() > (source_edge[:, 0] - source_edge[:, 1]).mean() + 50  # measured +75
    assert abs(inside - stable_frames[0][y1 + 4:y2 - 4, x1 + 6]).mean() < 12  # measured 5: untouched but for H.264

    wait_result(http, changed.json()["task_id"])
    shifted = http.get(f"{BASE}/track/{changed.json()['task_id']}").json()
    changed_timeline = shifted["entity_timelines"]["cat"]
    assert len(changed_timeline) == N_FRAMES  # still found: detection goes by structure, not colour
    assert np.mean([iou(e["bbox"], boxes[e["frame"]]) for e in changed_timeline]) >= MIN_MEAN_IOU
    assert stable["consistency_score"] - shifted["consistency_score"] >= MIN_SCORE_DROP
    assert scores["temporal_stability"] > shifted["entity_scores"]["cat"]["temporal_stability"]

    # Another key sees neither the entity nor the result; another kind of task is not a tracking task.
    assert http.get(f"{BASE}/track/{stable_source}").status_code == 404
    other = http.get(f"{BASE}/track/{stable_id}", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert other.status_code == 404


def test_entities_are_per_key_listed_deleted_and_persisted(http, other, live_server, cat):
    first = _register(http, "cat", cat)
    astronaut = data.astronaut()[0:300, 100:400]
    second = _register(http, "hero", astronaut, "character")
    assert (second["width"], second["height"]) == (300, 300)
    listed = http.get(f"{BASE}/entities").json()["entities"]
    assert [e["name"] for e in listed] == ["cat", "hero"] and listed[0] == first
    # Names are unique per key (409), not across keys.
    again = http.post(f"{BASE}/register-entity", json={"name": "cat", "reference_image_base64": png_base64(cat)})
    assert again.status_code == 409 and again.json()["type"] == "EntityExists"
    assert other.post(f"{BASE}/register-entity", json={"name": "cat", "reference_image_base64": png_base64(cat)}
                      ).status_code == 201
    # Stored in the studio's SQLite file: a new connection (as after a restart) sees the same.
    reopened = consistency_task.EntityStore(live_server.settings.db_path)
    assert [e.entity_id for e in reopened.owned(_key_id(live_server))] == [first["entity_id"], second["entity_id"]]
    # Another key cannot see or delete them.
    assert [e["name"] for e in other.get(f"{BASE}/entities").json()["entities"]] == ["cat"]
    assert other.delete(f"{BASE}/entities/{first['entity_id']}").status_code == 404
    deleted = http.delete(f"{BASE}/entities/{first['entity_id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert [e["name"] for e in http.get(f"{BASE}/entities").json()["entities"]] == ["hero"]
    assert http.delete(f"{BASE}/entities/{first['entity_id']}").status_code == 404
    # Tracking names only known entities.
    source = source_task(live_server.studio, _key_id(live_server), moving_clip(cat)[0][:4])
    unknown = http.post(f"{BASE}/track/{source}", json={"entity_names": ["cat"]})
    assert unknown.status_code == 400 and "'cat'" in unknown.json()["detail"]


def test_tracking_without_entities_is_a_clear_400(other, live_server, cat):
    source = source_task(live_server.studio, _key_id(live_server, OTHER_KEY), moving_clip(cat)[0][:4])
    response = other.post(f"{BASE}/track/{source}")
    assert response.status_code == 400 and "no entities registered" in response.json()["detail"]
    assert other.post(f"{BASE}/track/not-a-task", json={"detect_every": 2}).status_code in (400, 404)
    assert other.post(f"{BASE}/track/{source}", json={"detect_every": 0}).status_code == 400


def test_bad_reference_images_are_refused(http, cat):
    def register(image_b64: str, **extra):
        return http.post(f"{BASE}/register-entity", json={"name": "x", "reference_image_base64": image_b64, **extra})

    cases = {
        "not base64": register("@@@not base64@@@"),
        "not an image": register(base64.b64encode(b"hello, not an image").decode()),
        "too small": register(png_base64(cat[:10, :10])),
        "too wide": register(png_base64(np.tile(cat, (1, 45, 1))[:16])),  # 2160 x 16
        "flat": register(png_base64(np.full((40, 40, 3), 120, np.uint8))),
        "bad type": register(png_base64(cat), entity_type="spaceship"),
    }
    for case, response in cases.items():
        assert response.status_code == 400, (case, response.text)
        assert set(response.json()) == {"error", "detail", "type"}
    assert "reference_image" in cases["too small"].json()["detail"]
    assert "flat" in cases["flat"].json()["detail"]
    oversized = register("A" * (17 * 2**20))  # over the 16 MiB request body limit
    assert oversized.status_code == 413
    assert http.get(f"{BASE}/entities").json()["entities"] == []


def test_gradio_api_registers_lists_and_tracks_an_upload(live_server, cat, tmp_path):
    reference = tmp_path / "cat.png"
    cv2.imwrite(str(reference), cv2.cvtColor(cat, cv2.COLOR_RGB2BGR))
    clip, boxes = moving_clip(cat)
    video_path = tmp_path / "clip.mp4"
    with Mp4Writer(video_path, W, H, 12) as writer:
        for frame in clip:
            writer.write(frame)
    client = Client(live_server.url, verbose=False, download_files=False)
    try:
        message, entities = client.predict(handle_file(str(reference)), "cat", "animal", api_name="/register_entity")
        assert "cat" in message and [(e["name"], e["entity_type"]) for e in entities] == [("cat", "animal")]
        assert [e["name"] for e in client.predict(api_name="/list_entities")] == ["cat"]
        status, video, result = client.predict(handle_file(str(video_path)), "", "", 5, api_name="/track")
    finally:
        client.close()
    assert status.startswith("Done") and "Consistency score" in status
    assert probe_video(video.get("video", video)["path"]).frames == N_FRAMES
    assert result["frames_analyzed"] == N_FRAMES and result["entities_tracked"] == 1
    timeline = result["entity_timelines"]["cat"]
    assert np.mean([iou(e["bbox"], boxes[e["frame"]]) for e in timeline]) >= MIN_MEAN_IOU
    assert 0.5 <= result["consistency_score"] <= 1


def test_entity_store_is_safe_across_threads(live_server, cat):
    """Concurrent registrations of one name: exactly one wins, the rest get EntityExists."""
    store = live_server.studio.entities
    outcomes = []

    def add():
        try:
            store.add(UI_OWNER, "same", "object", (48, 48), b"png")
            outcomes.append("ok")
        except EntityExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=add) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["exists"] * 5 + ["ok"]
