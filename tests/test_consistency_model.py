"""Consistency Tracker's model path: the offline tiny CLIP embedder, the embedding similarity
term (``max(0, cosine)``) in ``track``, and the tracking task / REST API with ``appearance_model``."""

from __future__ import annotations

import cv2
import huggingface_hub
import numpy as np
import pytest
import torch
from skimage import data

from studio.core import UI_OWNER
from studio.errors import InvalidRequest, ModelUnavailable
from studio.genius.consistency import scoring, tracker
from studio.genius.consistency.entities import register_entity
from studio.genius.consistency.schema import RegisterEntityRequest
from studio.genius.consistency.reference import EntityModel
from studio.models import appearance
from studio.models.appearance import CLIP_B32, TINY_CLIP
from tests.edit_helpers import source_task, wait_result
from tests.test_consistency import MIN_MEAN_IOU, N_FRAMES, iou, moving_video
from tests.test_consistency_task import BASE, _key_id, _register, moving_clip, png_base64
from tests.test_consistency_task import iou as corner_iou


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    """The 48 px crop of the cat's face the classical tests track."""
    return cv2.resize(data.chelsea()[50:250, 100:300], (48, 48), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> appearance.ImageEmbedder:
    return appearance.load_embedder(tmp_path_factory.mktemp("models"), TINY_CLIP)


def test_tiny_embedder_is_offline_deterministic_and_unit_norm(embedder, tmp_path, cat):
    # Built from a fixed seed on a forked RNG: the same weights every time, the caller's RNG untouched.
    state = torch.random.get_rng_state()
    first, second = appearance.build_tiny_clip().model.state_dict(), appearance.build_tiny_clip().model.state_dict()
    assert torch.equal(state, torch.random.get_rng_state())
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    # Saved with its processor and loaded through from_pretrained, once per models folder; a
    # second folder gives the same vectors.
    folder = appearance.ensure_tiny_clip(tmp_path)
    assert {"config.json", "preprocessor_config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    other = appearance.load_embedder(tmp_path, TINY_CLIP)
    assert other is not embedder and appearance.load_embedder(tmp_path, TINY_CLIP) is other
    rng = np.random.default_rng(0)
    images = [cat, cat.copy(), rng.integers(0, 256, (70, 30, 3), dtype=np.uint8), cat[::-1]]
    vectors = embedder.embed(images)
    assert vectors.shape == (4, embedder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0, abs=1e-5)  # identical crops: cosine 1
    assert np.allclose(other.embed(images), vectors, atol=1e-6)
    # Batching does not change the result.
    embedder.batch_size, batch = 3, embedder.batch_size
    try:
        assert np.allclose(embedder.embed(images), vectors, atol=1e-5)
    finally:
        embedder.batch_size = batch
    assert (embedder.trained, embedder.model_id) == (False, TINY_CLIP)
    with pytest.raises(InvalidRequest, match="image 1"):
        embedder.embed([cat, cat.astype(np.float32)])


def test_hub_embedder_offline_and_uncached_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    reason = appearance.unavailable_reason(CLIP_B32)
    assert reason is not None and "HF_HUB_OFFLINE" in reason and "openai/clip-vit-base-patch32" in reason
    with pytest.raises(ModelUnavailable, match="not in the local Hugging Face cache"):
        appearance.load_embedder(tmp_path, CLIP_B32)
    assert appearance.unavailable_reason(TINY_CLIP) is None
    assert "unknown appearance model" in appearance.unavailable_reason("nope")
    with pytest.raises(ModelUnavailable):
        appearance.load_embedder(tmp_path, "nope")


def test_model_path_tracks_like_the_classical_one(embedder, cat):
    frames, boxes = moving_video(cat)
    model = EntityModel.from_reference(cat)
    classical = tracker.track(frames, {"cat": model}, detect_every=5)
    learned = tracker.track(iter(frames), {"cat": model}, detect_every=5, appearance=embedder)
    assert (classical["appearance"], learned["appearance"]) == ("histogram", TINY_CLIP)
    # Detection and tracking are unchanged: the same boxes, as accurate as the classical test asks.
    timeline = learned["entity_timelines"]["cat"]
    assert timeline == classical["entity_timelines"]["cat"]
    assert [e["frame"] for e in timeline] == list(range(N_FRAMES))
    ious = [iou(e["bbox"], boxes[e["frame"]]) for e in timeline]
    assert np.mean(ious) >= MIN_MEAN_IOU and min(ious) >= 0.5
    scores = learned["entity_scores"]["cat"]
    assert scores["detections"] == classical["entity_scores"]["cat"]["detections"]
    assert all(0.0 <= scores[k] <= 1.0 for k in ("consistency_score", "appearance_similarity", "temporal_stability"))
    assert learned["consistency_score"] == pytest.approx(scores["appearance_similarity"] * scores["temporal_stability"])


class FakeEmbedder:
    """References embed to [1, 0]; crops, in the order they are embedded, to [c, sqrt(1 - c^2)]
    for c cycling through COSINES: the expected per-frame similarity is max(0, c)."""

    COSINES = (-0.5, 0.25, 0.8, 1.0)
    model_id = "fake"
    input_side = 16

    def __init__(self):
        self.crops = 0
        self.calls: list[int] = []
        self.shapes: list[tuple[int, ...]] = []

    def embed(self, images):
        self.calls.append(len(images))
        self.shapes += [image.shape for image in images]
        if len(self.calls) == 1:
            return np.tile(np.float32([1, 0]), (len(images), 1))
        out = []
        for _ in images:
            c = self.COSINES[self.crops % len(self.COSINES)]
            out.append([c, np.sqrt(1 - c * c)])
            self.crops += 1
        return np.float32(out)


def test_embedding_similarity_is_the_clipped_cosine_in_frame_order(cat, monkeypatch):
    monkeypatch.setattr(scoring, "EMBED_BATCH", 3)  # several batches, the last one partial
    frames, _ = moving_video(cat)
    fake = FakeEmbedder()
    result = tracker.track(frames, {"cat": EntityModel.from_reference(cat)}, appearance=fake)
    n = result["entity_scores"]["cat"]["frames_present"]
    assert n == N_FRAMES and fake.crops == n
    assert fake.calls == [1] + [3] * (n // 3) + ([n % 3] if n % 3 else [])
    # Every image reaches the encoder with its shorter side at most input_side.
    assert all(min(shape[:2]) <= FakeEmbedder.input_side for shape in fake.shapes)
    expected = np.array([max(0.0, FakeEmbedder.COSINES[i % 4]) for i in range(n)])
    scores = result["entity_scores"]["cat"]
    assert scores["appearance_similarity"] == pytest.approx(expected.mean(), abs=1e-6)
    assert scores["temporal_stability"] == pytest.approx(max(0.0, 1 - 2 * expected.std()), abs=1e-6)


# -- the task and REST API ------------------------------------------------------------------------

@pytest.fixture()
def no_entities(live_server):
    """The API key starts and ends these tests with no entities (as in test_consistency_task)."""
    store = live_server.studio.entities

    def clear():
        for owner in (_key_id(live_server), UI_OWNER):
            for entity in store.owned(owner):
                store.delete(owner, entity.entity_id)

    clear()
    yield
    clear()


def test_tracking_task_on_the_model_path(http, live_server, no_entities, cat):
    _register(http, "cat", cat)
    frames, boxes = moving_clip(cat)
    source = source_task(live_server.studio, _key_id(live_server), frames)
    submitted = http.post(f"{BASE}/track/{source}", json={"appearance_model": TINY_CLIP})
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["task_id"]
    meta = wait_result(http, task_id)["metadata"]
    assert (meta["feature"], meta["path"]) == ("consistency", "model")
    assert TINY_CLIP in meta["method"]
    details = meta["details"]
    assert (details["appearance_model"], details["model_trained"]) == (TINY_CLIP, False)
    assert any("untrained" in note and "meaningless" in note for note in meta["notes"])
    tracked = http.get(f"{BASE}/track/{task_id}").json()
    assert tracked["appearance_model"] == TINY_CLIP and tracked["entities_tracked"] == 1
    timeline = tracked["entity_timelines"]["cat"]
    assert [e["frame"] for e in timeline] == list(range(len(frames)))
    assert np.mean([corner_iou(e["bbox"], boxes[e["frame"]]) for e in timeline]) >= MIN_MEAN_IOU
    assert 0.0 <= tracked["consistency_score"] <= 1.0


def test_unknown_or_unavailable_appearance_models_are_refused(http, live_server, no_entities, cat, monkeypatch):
    _register(http, "cat", cat)
    source = source_task(live_server.studio, _key_id(live_server), moving_clip(cat)[0][:4])
    unknown = http.post(f"{BASE}/track/{source}", json={"appearance_model": "resnet"})
    assert unknown.status_code == 400 and "appearance_model" in unknown.json()["detail"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", "/nonexistent/hf-cache")
    inputs = live_server.settings.data_dir / "inputs"
    before = sorted(inputs.iterdir())
    hub = http.post(f"{BASE}/track/{source}", json={"appearance_model": CLIP_B32})
    assert hub.status_code == 503, hub.text
    body = hub.json()
    assert body["type"] == "ModelUnavailable" and "HF_HUB_OFFLINE" in body["detail"]
    assert body["detail"].startswith("appearance_model:")
    assert sorted(inputs.iterdir()) == before  # refused before anything was stored or queued


def test_ui_track_handler_takes_the_appearance_model(live_server, no_entities, cat):
    from components.consistency_tab import make_track_handler
    from studio.engine.request import parse_model

    studio = live_server.studio
    register_entity(studio.entities, parse_model(RegisterEntityRequest, {
        "name": "cat", "reference_image_base64": png_base64(cat)}), UI_OWNER)
    source = source_task(studio, UI_OWNER, moving_clip(cat)[0][:6])
    updates = list(make_track_handler(studio)(None, source, "", 3, TINY_CLIP))
    status, video, result = updates[-1]
    assert status.startswith("Done") and f"({TINY_CLIP}, model path)" in status and "untrained" in status
    assert (result["path"], result["appearance_model"], result["model_trained"]) == ("model", TINY_CLIP, False)
    assert result["frames_analyzed"] == 6 and result["entities_tracked"] == 1
