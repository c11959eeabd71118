"""Driving signals for Wan-Animate: the pose skeleton, the face crops, the tiny pose model.

The skeleton is checked pixel by pixel on a hand-made stick figure (its limbs' centre lines
carry their colour at 60 %, everything far from a limb is black). The face tests use the head
of scikit-image's astronaut photo (rows 0-256, columns 100-360, where the Haar cascade finds
the face reliably; on the full photo it also fires elsewhere) pasted at known offsets into a
black canvas. The tracker's rejection and smoothing rules are checked on scripted detections.
"""

from __future__ import annotations

import cv2
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from skimage import data

from studio.errors import InvalidRequest, ModelUnavailable
from studio.engine import motion_signals
from studio.vision.face_track import detect_face, track_face
from studio.engine.motion_signals import (
    COLOURS,
    LIMBS,
    DrivingSignals,
    body_from_face,
    driving_signals,
    face_crop,
    face_crops,
    follow_face,
    render_pose,
    stick_width,
    to_openpose,
)
from studio.models.pose import TINY_POSE, build_tiny_pose, load_pose_estimator

# A standing figure on a 512 x 512 canvas, COCO-17 order (x, y).
FIGURE = np.array([
    (256, 100),  # nose
    (280, 76), (232, 76),  # left, right eye
    (316, 84), (196, 84),  # left, right ear
    (316, 160), (196, 160),  # left, right shoulder
    (376, 230), (136, 230),  # left, right elbow
    (416, 310), (96, 310),  # left, right wrist
    (296, 300), (216, 300),  # left, right hip
    (306, 390), (206, 390),  # left, right knee
    (316, 480), (196, 480),  # left, right ankle
], dtype=np.float64)
SIZE = 512
COCO_LEFT_ELBOW, COCO_LEFT_SHOULDER = 7, 5
OP_NOSE, OP_NECK, OP_L_SHOULDER, OP_L_ELBOW, OP_L_WRIST = 0, 1, 5, 6, 7

HEAD = (slice(0, 256), slice(100, 360))  # rows, columns of the astronaut photo
CANVAS = (400, 560)  # height, width


def segment_distance(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points (px, py) to the segment a-b."""
    d = b - a
    t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
    return np.hypot(px - (a[0] + t * d[0]), py - (a[1] + t * d[1]))


def drawn(visible: np.ndarray) -> list[int]:
    return [k for k, (a, b) in enumerate(LIMBS) if visible[a] and visible[b]]


def limb_colour(k: int) -> np.ndarray:
    return np.round(0.6 * np.array(COLOURS[k]))


def check_limbs(image: np.ndarray, points: np.ndarray, visible: np.ndarray) -> None:
    """Every drawn limb's centre line, away from joints and other limbs, is its colour at 60 %."""
    stick = stick_width(SIZE, SIZE)
    limbs = drawn(visible)
    for k in limbs:
        a, b = points[LIMBS[k][0]], points[LIMBS[k][1]]
        t = np.linspace(0, 1, 41)
        px, py = a[0] + t * (b - a)[0], a[1] + t * (b - a)[1]
        clear = np.ones_like(t, bool)
        for j in limbs:
            if j != k:
                clear &= segment_distance(px, py, points[LIMBS[j][0]], points[LIMBS[j][1]]) > 2 * stick + 2
        for i in np.flatnonzero(visible):
            clear &= np.hypot(px - points[i][0], py - points[i][1]) > stick + 2
        assert clear.sum() >= 3, f"limb {k} has no clear stretch to sample"
        samples = image[np.round(py[clear]).astype(int), np.round(px[clear]).astype(int)]
        np.testing.assert_allclose(samples, np.broadcast_to(limb_colour(k), samples.shape), atol=1)


# --- render_pose -------------------------------------------------------------------------

def test_skeleton_shape_colours_and_black_background():
    scores = np.ones(17)
    image = render_pose(FIGURE, scores, SIZE, SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    points, visible = to_openpose(FIGURE, scores)
    assert visible.all() and len(drawn(visible)) == 17
    check_limbs(image, points, visible)
    # Joints in full colour at their centres.
    for i, (x, y) in enumerate(points):
        assert tuple(image[round(y), round(x)]) == COLOURS[i]
    # Far from every limb and joint: black.
    stick = stick_width(SIZE, SIZE)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    near = np.zeros((SIZE, SIZE), bool)
    for a, b in LIMBS:
        near |= segment_distance(xs, ys, points[a], points[b]) <= stick + 2
    assert near.mean() < 0.1 and not image[~near].any()
    assert image[near].any(axis=-1).mean() > 0.5


def test_neck_joins_the_shoulders_midpoint_to_the_nose():
    image = render_pose(FIGURE, np.ones(17), SIZE, SIZE)
    points, _ = to_openpose(FIGURE, np.ones(17))
    np.testing.assert_allclose(points[OP_NECK], (256, 160))
    assert tuple(image[160, 256]) == COLOURS[OP_NECK]  # the neck joint
    neck_nose = next(k for k, limb in enumerate(LIMBS) if set(limb) == {OP_NECK, OP_NOSE})
    column = image[115:146, 256]  # between the nose and the neck, clear of both joints
    assert (column == limb_colour(neck_nose)).all()
    # The limb is 2 * stick + 1 px across (4 px semi-minor axis at 512 px).
    across = image[130, 240:272].any(axis=-1).sum()
    assert abs(across - (2 * stick_width(SIZE, SIZE) + 1)) <= 1


def test_a_low_score_keypoint_removes_its_limbs():
    scores = np.ones(17)
    scores[COCO_LEFT_ELBOW] = 0.1
    image = render_pose(FIGURE, scores, SIZE, SIZE)
    points, visible = to_openpose(FIGURE, scores)
    assert not visible[OP_L_ELBOW] and visible[OP_L_WRIST]
    assert len(drawn(visible)) == 15
    # The upper and lower arm are gone; the wrist joint stays; the other limbs are unchanged.
    for a, b in ((OP_L_SHOULDER, OP_L_ELBOW), (OP_L_ELBOW, OP_L_WRIST)):
        mid = (points[a] + points[b]) / 2
        assert not image[round(mid[1]) - 2:round(mid[1]) + 3, round(mid[0]) - 2:round(mid[0]) + 3].any()
    assert tuple(image[310, 416]) == COLOURS[OP_L_WRIST]
    check_limbs(image, points, visible)
    # Without a shoulder there is no neck, and none of the five limbs that meet there.
    scores[COCO_LEFT_SHOULDER] = 0.0
    points, visible = to_openpose(FIGURE, scores)
    assert not visible[OP_NECK] and len(drawn(visible)) == 10
    assert not render_pose(FIGURE, scores, SIZE, SIZE)[150:171, 246:267].any()


def test_stick_width_follows_the_frame_size():
    assert stick_width(512, 512) == 4
    assert stick_width(1280, 720) == 6
    assert stick_width(1920, 1080) == 8
    assert stick_width(160, 120) == 2
    small = render_pose(FIGURE / 4, np.ones(17), 128, 128)
    assert small.shape == (128, 128, 3) and small.any()


# --- face crops --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def head() -> np.ndarray:
    return data.astronaut()[HEAD]


@pytest.fixture(scope="module")
def head_face(head) -> np.ndarray:
    box = detect_face(head)
    assert box is not None
    return np.array(box, dtype=np.float64)


def place(photo: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``photo`` pasted with its top-left corner at (dx, dy) into a black canvas (clipped)."""
    canvas = np.zeros((*CANVAS, 3), np.uint8)
    height, width = photo.shape[:2]
    x0, y0, x1, y1 = max(dx, 0), max(dy, 0), min(dx + width, CANVAS[1]), min(dy + height, CANVAS[0])
    canvas[y0:y1, x0:x1] = photo[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    return canvas


def test_crops_follow_a_moving_face_exactly(head, head_face):
    offsets = [(100, 80), (131, 67), (160, 101), (75, 130)]
    frames = [place(head, dx, dy) for dx, dy in offsets]
    boxes = np.array([head_face + (dx, dy, 0, 0) for dx, dy in offsets])
    crops = face_crops(frames, boxes, size=256)
    assert all(crop.shape == (256, 256, 3) and crop.dtype == np.uint8 for crop in crops)
    for crop in crops[1:]:
        assert np.array_equal(crop, crops[0])
    # One box for every frame is broadcast.
    assert len(face_crops(frames, head_face + (100, 80, 0, 0), size=64)) == len(frames)


def test_crops_of_a_tracked_face_stay_centred(head):
    offsets = np.array([(100 + 8 * k, 80 + 5 * k) for k in range(6)])
    frames = [place(head, dx, dy) for dx, dy in offsets]
    boxes = follow_face(frames)
    centres = boxes[:, :2] + boxes[:, 2:] / 2 - offsets  # in photo coordinates
    assert np.ptp(centres, axis=0).max() <= 6  # ~6 % of the 100 px face
    crops = face_crops(frames, boxes)

    def small(image):  # compare at 64 px, where a few pixels of detector jitter are < 1 px
        return cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float64)

    differences = [np.abs(small(crop) - small(crops[0])).mean() for crop in crops[1:]]
    # A crop whose box is off by a tenth of the face width, for scale.
    off = boxes[0] + (0.1 * boxes[0, 2], 0, 0, 0)
    misaligned = np.abs(small(face_crop(frames[0], off)) - small(crops[0])).mean()
    assert max(differences) < 0.5 * misaligned, (differences, misaligned)


def test_a_face_at_the_border_is_padded_not_stretched(head, head_face):
    inside = face_crop(place(head, 100, 80), head_face + (100, 80, 0, 0))
    edge_box = head_face + (-60, -50, 0, 0)  # the crop square overhangs the left and top edges
    edge = face_crop(place(head, -60, -50), edge_box)
    side = round(1.5 * max(edge_box[2:]))
    centre = edge_box[:2] + edge_box[2:] / 2
    overhang = -np.floor(centre - side / 2 + 0.5)  # source pixels outside the frame (x, y)
    assert (overhang > 5).all()
    band = np.floor(overhang * 512 / side).astype(int)  # the same in crop pixels
    # Black up to the band, less the ~4 px (1.2 source px) the bicubic kernel smears the edge over.
    assert not edge[:, :band[0] - 5].any() and not edge[:band[1] - 5].any()
    assert edge[:, band[0] + 2:].any(axis=-1).mean() > 0.9
    # Beyond the band (and the bicubic kernel's reach) the crop is the same face, same place, same scale.
    assert np.array_equal(edge[band[1] + 8:, band[0] + 8:], inside[band[1] + 8:, band[0] + 8:])


# --- following the face ------------------------------------------------------------------

# Still for six frames, then 100 px right and 30 px down over six more: a person who stands, then walks.
TRAVEL = np.array([(60 + round(100 * t), 60 + round(30 * t)) for t in np.clip(np.arange(12) / 5.5 - 1, 0, 1)])


@pytest.fixture(scope="module")
def travel(head, head_face):
    """The travelling head's frames and each frame's true face centre."""
    frames = [place(head, dx, dy) for dx, dy in TRAVEL]
    return frames, head_face[:2] + head_face[2:] / 2 + TRAVEL


def centre_error(boxes: np.ndarray, centres: np.ndarray, face: float) -> np.ndarray:
    """Each box centre's distance from the true centre, in face sizes."""
    return np.hypot(*(boxes[:, :2] + boxes[:, 2:] / 2 - centres).T) / face


def test_follow_face_keeps_up_with_a_face_that_travels(travel, head_face):
    frames, centres = travel
    assert np.ptp(TRAVEL[:, 0]) == 100 and (TRAVEL[:6] == TRAVEL[0]).all()
    boxes = follow_face(frames)
    assert boxes.shape == (12, 4)
    assert centre_error(boxes, centres, head_face[2]).max() < 0.15
    assert (np.abs(boxes[:, 2:] / head_face[2:] - 1) < 0.15).all()
    # lipsync's tracker samples 8 frames and drops what lies far from their median: the still
    # half holds the median, so the late detections go and the box stays behind.
    assert centre_error(track_face(frames), centres, head_face[2]).max() > 0.3


def test_frames_without_a_detection_are_interpolated_or_held(travel, head_face):
    frames, centres = travel
    frames = list(frames)
    for k in (0, 8):  # black out the face: the first frame (held) and one mid-walk (interpolated)
        x, y, w, h = (head_face + (*TRAVEL[k], 0, 0)).astype(int)
        frames[k] = frames[k].copy()
        frames[k][y - 20:y + h + 20, x - 20:x + w + 20] = 0
        assert detect_face(frames[k]) is None
    boxes = follow_face(frames)
    assert centre_error(boxes, centres, head_face[2]).max() < 0.15


def scripted(monkeypatch, detections: list) -> list[np.ndarray]:
    """Frames whose ``detect_face`` answers are ``detections`` (a box or None each)."""
    monkeypatch.setattr(motion_signals, "detect_face", lambda frame: detections[int(frame[0, 0, 0])])
    return [np.full((4, 4, 3), i, np.uint8) for i in range(len(detections))]


def test_outliers_are_judged_against_their_neighbours_in_time(monkeypatch):
    # A 100 px face moving 20 px a frame (200 px over the clip), detected with +-3 px jitter.
    n = 11
    truth = np.array([(50 + 20 * k, 100, 100, 100) for k in range(n)], dtype=np.float64)
    jitter = 3.0 * (-1) ** np.arange(n)
    detections = [tuple(box + (j, j, 0, 0)) for box, j in zip(truth, jitter)]
    error = np.abs(follow_face(scripted(monkeypatch, detections)) - truth)
    assert error.max() <= 3.0 and error[1:-1].max() <= 1.0 + 1e-9  # smoothed, but for the ends
    detections[3] = (400, 300, 100, 100)  # a false positive far away
    detections[6] = (165, 75, 150, 150)  # same centre, 50 % bigger
    detections[9] = None
    error = np.abs(follow_face(scripted(monkeypatch, detections)) - truth)
    assert error.max() <= 3.0  # the outliers, hundreds of px off, left no trace


def test_two_disagreeing_detections_keep_one(monkeypatch):
    boxes = follow_face(scripted(monkeypatch, [(10, 10, 50, 50), None, (300, 300, 50, 50)]))
    assert (boxes == (10, 10, 50, 50)).all()  # each is far from their median; a tie keeps the first
    # Beyond FACE_WINDOW frames apart they are not neighbours: both stay and the box glides between.
    boxes = follow_face(scripted(monkeypatch, [(10, 10, 50, 50), None, None, None, (90, 10, 50, 50)]))
    np.testing.assert_allclose(boxes[:, 0], [10, 30, 50, 70, 90])


def test_face_region_pins_the_face_and_no_face_is_refused(monkeypatch, travel):
    frames, _ = travel
    boxes = follow_face(frames, face_region=[150, 120, 90, 90])
    assert boxes.shape == (12, 4) and (boxes == [150, 120, 90, 90]).all()
    with pytest.raises(InvalidRequest, match="face_region"):
        follow_face(frames, face_region=[150, 120, 2, 90])
    with pytest.raises(InvalidRequest, match="^no face found"):
        follow_face([np.zeros((*CANVAS, 3), np.uint8)] * 3)
    with pytest.raises(InvalidRequest, match="no frames"):
        follow_face([])
    with pytest.raises(InvalidRequest, match="^no face found"):
        follow_face(scripted(monkeypatch, [None] * 4))


# --- the tiny pose model -----------------------------------------------------------------

@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    return load_pose_estimator(tmp_path_factory.mktemp("models"), trained=False)


def test_tiny_pose_model_is_deterministic_and_saved(tmp_path):
    first, second = build_tiny_pose().model.state_dict(), build_tiny_pose().model.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    estimator = load_pose_estimator(tmp_path, trained=False)
    folder = tmp_path / TINY_POSE
    assert {"config.json", "preprocessor_config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    loaded = estimator.model.state_dict()
    assert all(torch.equal(loaded[name], first[name]) for name in first)
    assert load_pose_estimator(tmp_path, trained=False) is estimator  # cached in-process


def test_tiny_pose_keypoints_lie_in_the_box_the_model_saw(estimator, head):
    frame = place(head, 100, 80)
    for box in ([120, 90, 200, 240], None):
        xy, scores = estimator.keypoints(frame, box)
        assert xy.shape == (17, 2) and scores.shape == (17,)
        assert np.isfinite(xy).all() and ((scores >= 0) & (scores <= 1)).all()
        seen = box if box is not None else [0, 0, CANVAS[1], CANVAS[0]]
        low, high = estimator.seen_area(seen)
        assert (low <= seen[:2]).all() and (high >= np.add(seen[:2], seen[2:])).all()
        assert ((xy >= low - 1e-6) & (xy <= high + 1e-6)).all()
        again, again_scores = estimator.keypoints(frame, box)
        assert np.array_equal(again, xy) and np.array_equal(again_scores, scores)


def test_trained_pose_model_unavailable_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelUnavailable, match="usyd-community/vitpose-base-simple"):
        load_pose_estimator(tmp_path, trained=True)


# --- both --------------------------------------------------------------------------------

def clip(head, n: int = 5) -> list[np.ndarray]:
    return [place(head, 100 + 6 * k, 80 + 4 * k) for k in range(n)]


def test_driving_signals_of_a_clip(estimator, head):
    frames = clip(head)
    seen: list[int] = []
    signals = driving_signals(frames, estimator, on_frame=seen.append)
    assert seen == list(range(len(frames)))
    assert len(signals.pose) == len(signals.face) == len(frames)
    assert all(p.shape == (*CANVAS, 3) and p.dtype == np.uint8 for p in signals.pose)
    assert all(f.shape == (512, 512, 3) and f.dtype == np.uint8 for f in signals.face)
    assert signals.face_boxes.shape == (len(frames), 4) and signals.keypoint_scores.shape == (len(frames), 17)
    summary = signals.summary()
    assert summary["frames"] == len(frames)
    assert summary["mean_keypoint_confidence"] == pytest.approx(signals.keypoint_scores.mean(), abs=1e-4)
    assert 0 <= summary["frames_with_body"] <= len(frames)
    assert summary["face_box_median"] == [round(v) for v in np.median(signals.face_boxes, axis=0)]


class FakeEstimator:
    """Returns the stick figure (scaled to the frame) and records the boxes it was asked about."""

    def __init__(self):
        self.boxes = []

    def keypoints(self, frame, box):
        self.boxes.append(box)
        scores = np.full(17, 0.9)
        scores[:3] = 0.1
        return FIGURE * min(frame.shape[:2]) / SIZE, scores


def test_body_box_face_region_and_a_stop_from_on_frame(head):
    frames = clip(head, 4)
    fake = FakeEstimator()
    signals = driving_signals(frames, fake, face_region=[150, 120, 90, 90], body_box=[10, 20, 300, 350],
                              face_size=128)
    assert [list(b) for b in fake.boxes] == [[10, 20, 300, 350]] * 4
    assert (signals.face_boxes == [150, 120, 90, 90]).all() and signals.face[0].shape == (128, 128, 3)
    summary = signals.summary()
    assert summary["frames_with_body"] == 4 and summary["mean_keypoint_confidence"] == pytest.approx(
        (14 * 0.9 + 3 * 0.1) / 17, abs=1e-4)

    def stop(i):
        if i == 1:
            raise RuntimeError("cancelled")

    fake = FakeEstimator()
    with pytest.raises(RuntimeError, match="cancelled"):
        driving_signals(frames, fake, face_region=[150, 120, 90, 90], on_frame=stop)
    assert len(fake.boxes) == 2
    # without body_box the person's box comes from the face: centred on it, 10 face widths wide,
    # from 0.6 face heights above it to 10 below its top, clipped to the frame
    assert list(fake.boxes[0]) == list(body_from_face([150, 120, 90, 90], CANVAS[1], CANVAS[0]))
    seen = []
    driving_signals(frames[:2], fake, on_face=seen.append)
    assert seen == [0, 1]  # after each frame's face detection


def test_body_box_follows_body_proportions():
    assert list(body_from_face([100, 50, 20, 20], 1000, 1000)) == [10, 38, 200, 212]
    # clipped to the frame: a face near the left edge of a small frame
    assert list(body_from_face([10, 10, 20, 20], 100, 120)) == [0, 0, 100, 120]


def test_bad_inputs_are_rejected(head):
    with pytest.raises(InvalidRequest):
        driving_signals([], FakeEstimator())
    with pytest.raises(InvalidRequest):
        driving_signals(clip(head, 2), FakeEstimator(), face_region=[150, 120, 90, 90], body_box=[0, 0, -5, 10])
    with pytest.raises(InvalidRequest, match="no face"):
        driving_signals([np.zeros((*CANVAS, 3), np.uint8)] * 2, FakeEstimator())
    empty = DrivingSignals([], [], np.zeros((0, 4)), np.zeros((0, 17))).summary()
    assert empty == {"frames": 0, "mean_keypoint_confidence": 0.0, "frames_with_body": 0, "face_box_median": None}
