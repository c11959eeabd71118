"""Consistency Tracker: reference validation, box accuracy on a synthetic video, a score that
drops when the entity changes colour, absent entities, the feature and face paths, drawing."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from skimage import data

from studio.errors import InvalidRequest
from studio.genius.consistency import detection
from studio.genius.consistency import reference
from studio.genius.consistency import tracker
from studio.genius.consistency.reference import EntityModel

H, W = 128, 192
N_FRAMES = 20
MIN_MEAN_IOU = 0.7  # the accuracy the tracker is held to on these videos
MAX_CENTRE_ERROR = 3.0


def smooth_noise(h: int, w: int, seed: int, cell: int = 16, amplitude: float = 0.5) -> np.ndarray:
    """Soft colour noise: a random grid of colours upsampled bicubically, around mid grey."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (h // cell + 2, w // cell + 2, 3)).astype(np.float32)
    noise = cv2.resize(grid, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)[cell:cell + h, cell:cell + w]
    return np.clip(128 + (noise - 128) * amplitude, 0, 255).astype(np.uint8)


def hue_rotate(img: np.ndarray, degrees: int) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + degrees // 2) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def centre_error(a, b) -> float:
    return float(np.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2))


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    """A 48 px crop of the cat's face: too small for ORB, so the template path finds it."""
    return cv2.resize(data.chelsea()[50:250, 100:300], (48, 48), interpolation=cv2.INTER_AREA)


def moving_video(obj: np.ndarray, change_colour: bool = False, present: bool = True, seed: int = 5):
    """The object on soft noise along a wavy path, its size breathing 45..51 px, with sensor noise.
    Returns the frames and the true boxes."""
    background = smooth_noise(H, W, seed=2)
    rng = np.random.default_rng(seed)
    frames, boxes = [], []
    for i in range(N_FRAMES):
        side = 48 + round(3 * np.sin(i / 4))
        x, y = 10 + 6 * i, round(30 + 2 * i + 8 * np.sin(i / 3))
        frame = background.copy()
        if present:
            patch = cv2.resize(obj, (side, side), interpolation=cv2.INTER_AREA)
            frame[y:y + side, x:x + side] = hue_rotate(patch, 120) if change_colour and i >= N_FRAMES // 2 else patch
        frames.append(np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8))
        boxes.append((x, y, side, side))
    return frames, boxes


def test_reference_size_limits_are_enforced(cat):
    with pytest.raises(InvalidRequest, match="reference_image"):
        EntityModel.from_reference(np.zeros((10, 40, 3), np.uint8))
    with pytest.raises(InvalidRequest, match="reference_image"):
        EntityModel.from_reference(np.zeros((20, reference.MAX_REFERENCE_SIDE + 1, 3), np.uint8))
    with pytest.raises(InvalidRequest, match="reference_image"):
        EntityModel.from_reference(cat.astype(np.float32))
    with pytest.raises(InvalidRequest, match="entity_type"):
        EntityModel.from_reference(cat, "spaceship")
    with pytest.raises(InvalidRequest, match="flat"):
        EntityModel.from_reference(np.full((40, 40, 3), 120, np.uint8))
    stripes = np.zeros((16, reference.MAX_REFERENCE_SIDE, 3), np.uint8)
    stripes[:, ::8] = 255
    assert EntityModel.from_reference(stripes).size == (reference.MAX_REFERENCE_SIDE, 16)


def test_tracks_a_moving_object_accurately(cat):
    frames, boxes = moving_video(cat)
    result = tracker.track(iter(frames), {"cat": EntityModel.from_reference(cat)}, detect_every=5)
    timeline = result["entity_timelines"]["cat"]
    assert result["frames_analyzed"] == N_FRAMES and result["entities_tracked"] == 1
    assert [e["frame"] for e in timeline] == list(range(N_FRAMES))
    ious = [iou(e["bbox"], boxes[e["frame"]]) for e in timeline]
    errors = [centre_error(e["bbox"], boxes[e["frame"]]) for e in timeline]
    assert np.mean(ious) >= MIN_MEAN_IOU and min(ious) >= 0.5
    assert np.mean(errors) < MAX_CENTRE_ERROR
    assert all(detection.TRACK_THRESHOLD <= e["confidence"] <= 1 for e in timeline)
    scores = result["entity_scores"]["cat"]
    # Keyframes 0, 5, 10, 15 are detected; the 16 frames between them are tracked.
    assert scores["detections"]["template"] == 4 and scores["frames_tracked"] == 16
    assert 0.0 <= result["consistency_score"] <= 1.0


def test_a_colour_change_halfway_lowers_the_score(cat):
    model = EntityModel.from_reference(cat)
    stable = tracker.track(moving_video(cat)[0], {"cat": model})
    frames, boxes = moving_video(cat, change_colour=True)
    changed = tracker.track(frames, {"cat": model})
    # The changed object is still found (detection matches structure, not colour) ...
    timeline = changed["entity_timelines"]["cat"]
    assert len(timeline) == N_FRAMES
    assert np.mean([iou(e["bbox"], boxes[e["frame"]]) for e in timeline]) >= MIN_MEAN_IOU
    # ... and scored lower, both in looks and in stability.
    a, b = stable["entity_scores"]["cat"], changed["entity_scores"]["cat"]
    assert stable["consistency_score"] - changed["consistency_score"] >= 0.15
    assert a["temporal_stability"] > b["temporal_stability"]
    assert a["appearance_similarity"] > b["appearance_similarity"]


def test_an_absent_entity_has_an_empty_timeline(cat):
    frames, _ = moving_video(cat, present=False)
    cup = cv2.resize(data.coffee()[100:300, 200:400], (64, 64), interpolation=cv2.INTER_AREA)
    result = tracker.track(frames, {"cat": EntityModel.from_reference(cat), "cup": EntityModel.from_reference(cup)})
    assert result["entities_tracked"] == 0
    assert result["entity_timelines"] == {"cat": [], "cup": []}
    assert result["consistency_score"] is None
    assert result["entity_scores"]["cat"]["consistency_score"] is None


def test_overall_score_is_the_frame_weighted_mean(cat):
    frames, _ = moving_video(cat)
    # The rocket is only present in the first 8 frames, in a corner the cat never reaches.
    rocket = cv2.resize(data.rocket()[60:380, 150:470], (40, 40), interpolation=cv2.INTER_AREA)
    for frame in frames[:8]:
        frame[84:124, 148:188] = rocket
    result = tracker.track(frames, {"cat": EntityModel.from_reference(cat), "rocket": EntityModel.from_reference(rocket)})
    scores = result["entity_scores"]
    assert 8 <= scores["rocket"]["frames_present"] <= 10  # lost by the keyframe at 10 at the latest
    weighted = sum(s["consistency_score"] * s["frames_present"] for s in scores.values())
    assert result["consistency_score"] == pytest.approx(weighted / sum(s["frames_present"] for s in scores.values()))
    assert result["entities_tracked"] == 2


def test_feature_path_finds_a_large_textured_reference():
    reference = cv2.resize(data.chelsea(), (150, 100), interpolation=cv2.INTER_AREA)
    model = EntityModel.from_reference(reference, "animal")
    assert len(model.keypoints) >= detection.MIN_FEATURES
    background = smooth_noise(160, 256, seed=4)
    frames, boxes = [], []
    for i in range(10):
        frame = background.copy()
        x, y = 10 + 8 * i, 20 + 3 * i
        frame[y:y + 100, x:x + 150] = reference
        frames.append(frame)
        boxes.append((x, y, 150, 100))
    result = tracker.track(frames, {"cat": model}, detect_every=3)
    timeline = result["entity_timelines"]["cat"]
    assert result["entity_scores"]["cat"]["detections"]["features"] == 4  # frames 0, 3, 6, 9
    assert np.mean([iou(e["bbox"], boxes[e["frame"]]) for e in timeline]) >= 0.8


def test_face_path_places_a_character_from_its_face():
    astronaut = data.astronaut()
    reference = astronaut[0:300, 100:400]
    model = EntityModel.from_reference(reference, "character")
    assert model.face is not None
    frame = np.full((160, 256, 3), 90, np.uint8)
    frame[20:120, 100:200] = cv2.resize(reference, (100, 100), interpolation=cv2.INTER_AREA)
    found = detection.detect(model, detection.FrameView(frame), methods=("face",))
    assert found is not None and found.method == "face"
    assert iou(found.bbox, (100, 20, 100, 100)) >= 0.7
    assert found.confidence >= detection.DETECTION_THRESHOLD
    # An object has no face model, so the face path alone finds nothing.
    assert detection.detect(EntityModel.from_reference(reference, "object"), detection.FrameView(frame), methods=("face",)) is None


def test_detect_every_sets_the_keyframes(cat):
    frames, _ = moving_video(cat)
    model = EntityModel.from_reference(cat)
    every_frame = tracker.track(frames, {"cat": model}, detect_every=1)["entity_scores"]["cat"]
    assert every_frame["detections"]["template"] == N_FRAMES and every_frame["frames_tracked"] == 0
    with pytest.raises(InvalidRequest, match="detect_every"):
        tracker.track(frames, {"cat": model}, detect_every=0)


def test_annotate_draws_boxes_only_where_the_entity_is(cat):
    frames, boxes = moving_video(cat)
    timelines = {"cat": [{"frame": 3, "bbox": list(boxes[3]), "confidence": 0.9}]}
    out = list(tracker.annotate(frames, timelines))
    assert len(out) == N_FRAMES
    assert np.array_equal(out[0], frames[0]) and out[0] is frames[0]
    x, y, w, h = boxes[3]
    colour = np.array(tracker.PALETTE[0], np.uint8)
    assert (out[3][y + h // 2, x] == colour).all() and (out[3][y + h - 1, x + w // 2] == colour).all()
    assert not np.array_equal(frames[3][y + h // 2, x], colour)


def test_decode_reference_image_round_trip(cat):
    _, png = cv2.imencode(".png", cv2.cvtColor(cat, cv2.COLOR_RGB2BGR))
    decoded = reference.decode_reference_image(base64.b64encode(png.tobytes()).decode())
    assert np.array_equal(decoded, cat)
    with pytest.raises(InvalidRequest, match="reference_image_base64"):
        reference.decode_reference_image("not base64!")
    with pytest.raises(InvalidRequest, match="reference_image_base64"):
        reference.decode_reference_image(base64.b64encode(b"plain text").decode())
