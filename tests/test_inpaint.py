"""Video Inpainting, classical paths: tracking, masks, remove, blend, background, extend,
planning and validation, on synthetic videos whose true background and object are known."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import skimage.data

from studio.errors import InvalidRequest
from studio.genius.inpaint import background as ip_background
from studio.genius.inpaint import blend as ip_blend
from studio.genius.inpaint import classical as ip_classical
from studio.genius.inpaint import extend as ip_extend
from studio.genius.inpaint import masks as ip_masks
from studio.genius.inpaint import removal as ip_removal
from studio.genius.inpaint import tracking as ip_tracking

H, W, N = 128, 192, 20
OBJ_W, OBJ_H = 28, 36


@dataclass
class Scene:
    frames: list[np.ndarray]
    backgrounds: list[np.ndarray]  # the true background of each frame
    boxes: list[tuple[int, int, int, int]]  # the object's true box
    masks: list[np.ndarray]  # the object's true pixels


def _object(seed: int = 0) -> np.ndarray:
    """A blocky, blue-dominant texture: textured enough to track, unlike the coffee photo."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (9, 7, 3)).astype(np.uint8)
    obj = cv2.resize(blocks, (OBJ_W, OBJ_H), interpolation=cv2.INTER_NEAREST)
    obj[..., 0] //= 3
    obj[..., 2] = obj[..., 2] // 2 + 128
    return obj


def make_scene(pan: int = 0, speed: int = 7, wobble: int = 8, ellipse: bool = False, vanish_at: int | None = None,
               n: int = N, size: tuple[int, int] = (W, H)) -> Scene:
    """coffee() as a static or panning (``pan`` px/frame) background; an object moving
    ``speed`` px/frame to the right on a vertical sine of ``wobble`` px; gone from ``vanish_at`` on."""
    width, height = size
    big = cv2.resize(skimage.data.coffee(), (width + pan * n + 8, height + 8), interpolation=cv2.INTER_AREA)
    obj = _object()
    shape = np.ones((OBJ_H, OBJ_W), bool)
    if ellipse:
        shape = np.zeros((OBJ_H, OBJ_W), np.uint8)
        cv2.ellipse(shape, (OBJ_W // 2, OBJ_H // 2), (OBJ_W // 2 - 1, OBJ_H // 2 - 1), 0, 0, 360, 1, -1)
        shape = shape.astype(bool)
    scene = Scene([], [], [], [])
    for t in range(n):
        bg = big[4:4 + height, 4 + pan * t:4 + pan * t + width].copy()
        x, y = 10 + speed * t, height // 3 + round(wobble * np.sin(t / 4))
        frame, mask = bg.copy(), np.zeros((height, width), bool)
        vis = shape[:, :max(0, width - x)]  # the part still inside the frame
        if vanish_at is None or t < vanish_at:
            frame[y:y + OBJ_H, x:x + OBJ_W][vis] = obj[:, :vis.shape[1]][vis]
            mask[y:y + OBJ_H, x:x + OBJ_W] = vis
        scene.frames.append(frame)
        scene.backgrounds.append(bg)
        scene.boxes.append((x, y, OBJ_W, OBJ_H))
        scene.masks.append(mask)
    return scene


def psnr_in_boxes(out: list[np.ndarray], truth: list[np.ndarray], boxes) -> float:
    err = np.concatenate([(o[y:y + h, x:x + w].astype(float) - t[y:y + h, x:x + w]).ravel()
                          for o, t, (x, y, w, h) in zip(out, truth, boxes)])
    mse = float(np.mean(err ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def spatial_only(frames, boxes) -> list[np.ndarray]:
    """The baseline: cv2.inpaint (Telea) of the same dilated box, no temporal information."""
    out = []
    for f, (x, y, w, h) in zip(frames, boxes):
        m = np.zeros(f.shape[:2], np.uint8)
        d = ip_masks.MASK_DILATION_PX
        m[max(0, y - d):y + h + d, max(0, x - d):x + w + d] = 255
        out.append(cv2.inpaint(f, m, ip_removal.INPAINT_RADIUS, cv2.INPAINT_TELEA))
    return out


def outside(box, margin: int, shape=(H, W)) -> np.ndarray:
    """Pixels farther than ``margin`` from the box (Chebyshev), which nothing may change."""
    x, y, w, h = box
    keep = np.ones(shape[:2], bool)
    keep[max(0, y - margin):y + h + margin, max(0, x - margin):x + w + margin] = False
    return keep


# --------------------------------------------------------------------------- tracking


def test_track_follows_object_on_a_panning_camera():
    scene = make_scene(pan=2)
    track = ip_tracking.track_bbox(scene.frames, scene.boxes[0])
    errors = [abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in zip(track.boxes, scene.boxes)]
    assert max(errors) <= 1
    assert all(b[2:] == (OBJ_W, OBJ_H) for b in track.boxes)
    assert min(track.confidences) >= 0.9


def test_track_confidence_drops_when_the_object_disappears():
    scene = make_scene(vanish_at=12)
    track = ip_tracking.track_bbox(scene.frames, scene.boxes[0])
    assert min(track.confidences[:12]) >= 0.9
    assert max(track.confidences[12:]) < ip_tracking.LOST_SCORE


def test_track_boxes_stay_inside_the_frame():
    scene = make_scene(speed=10, n=18)  # the object leaves through the right edge
    track = ip_tracking.track_bbox(scene.frames, scene.boxes[0])
    assert all(0 <= x and x + w <= W and 0 <= y and y + h <= H for x, y, w, h in track.boxes)
    assert track.boxes[-1][0] == W - OBJ_W


# --------------------------------------------------------------------------- masks


def _distance_to_hard(box, dilate: int) -> np.ndarray:
    x, y, w, h = box
    hard = np.full((H, W), 255, np.uint8)
    hard[y - dilate:y + h + dilate, x - dilate:x + w + dilate] = 0
    return cv2.distanceTransform(hard, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def test_feather_radius_changes_only_the_edge_band():
    box = (60, 40, 30, 24)
    d = _distance_to_hard(box, ip_masks.MASK_DILATION_PX)
    m3, m9 = (ip_masks.make_masks((H, W, 3), [box], r)[0] for r in (3, 9))
    m0 = ip_masks.make_masks((H, W), [box], 0)[0]
    changed = m3 != m9
    assert changed.any()
    assert np.all((d[changed] > 0) & (d[changed] < 9 + 1))  # inside the band of the larger radius
    assert np.all(m3[d == 0] == 1) and np.all(m9[d == 0] == 1)
    assert np.all(m3[d >= 4] == 0) and np.all(m9[d >= 10] == 0)
    assert set(np.unique(m0)) == {0.0, 1.0} and np.array_equal(m0 == 1, d == 0)
    # the ramp falls with distance along a row going right from the box edge
    row = m9[50, box[0] + box[2] + ip_masks.MASK_DILATION_PX - 1:box[0] + box[2] + ip_masks.MASK_DILATION_PX + 11]
    assert np.all(np.diff(row) <= 0) and row[0] == 1 and row[-1] == 0 and 0 < row[5] < 1


# --------------------------------------------------------------------------- remove


@pytest.mark.parametrize("pan", [0, 2])
def test_remove_recovers_the_true_background(pan):
    scene = make_scene(pan=pan)
    track = ip_tracking.track_bbox(scene.frames, scene.boxes[0])
    out, stats = ip_removal.remove(scene.frames, track.boxes, feather_radius=6)
    ours = psnr_in_boxes(out, scene.backgrounds, scene.boxes)
    baseline = psnr_in_boxes(spatial_only(scene.frames, scene.boxes), scene.backgrounds, scene.boxes)
    assert ours >= 30.0
    assert ours >= baseline + 10.0
    assert stats.temporal_fraction >= 0.95 and stats.reliable_links == 1.0
    assert stats.temporal_fraction + stats.spatial_fraction == pytest.approx(1.0)
    for frame, done, box in zip(scene.frames, out, track.boxes):
        keep = outside(box, ip_masks.MASK_DILATION_PX + 6 + 1)
        assert np.array_equal(frame[keep], done[keep])


def test_remove_of_a_static_object_falls_back_to_spatial_fill():
    scene = make_scene(speed=0, wobble=0, n=8)
    out, stats = ip_removal.remove(scene.frames, scene.boxes, feather_radius=2)
    assert stats.spatial_fraction == 1.0 and stats.temporal_fraction == 0.0
    assert psnr_in_boxes(out, spatial_only(scene.frames, scene.boxes), scene.boxes) >= 25.0


def test_remove_is_fast_at_480p():
    scene = make_scene(pan=3, speed=20, n=10, size=(854, 480))  # a fast object: 20 px/frame
    track = ip_tracking.track_bbox(scene.frames, scene.boxes[0])
    assert track.boxes == scene.boxes
    started = time.perf_counter()
    out, stats = ip_removal.remove(scene.frames, track.boxes, feather_radius=10)
    fps = len(out) / (time.perf_counter() - started)
    assert stats.temporal_fraction >= 0.95
    assert psnr_in_boxes(out, scene.backgrounds, scene.boxes) >= 30.0
    assert fps >= 4.0, f"remove ran at {fps:.1f} frames/s at 854x480"


# --------------------------------------------------------------------------- blend


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


def _gradients(rgb: np.ndarray) -> np.ndarray:
    """Sobel x/y of the grey image, without the 1 px rim (what Poisson cloning preserves)."""
    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.dstack([cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)])[1:-1, 1:-1]


# feather pastes the pixels themselves; Poisson keeps the overlay's gradients, not its colours
@pytest.mark.parametrize("method,view,min_corr", [("feather", np.asarray, 0.999), ("poisson", _gradients, 0.95)])
def test_blend_puts_the_overlay_in_the_tracked_box(method, view, min_corr):
    scene = make_scene(n=10)
    overlay = skimage.data.chelsea()
    r = 5
    out, info = ip_classical.inpaint("blend", scene.frames, bbox=scene.boxes[0], feather_radius=r, overlay=overlay,
                           blend_method=method)
    expected = cv2.resize(overlay, (OBJ_W, OBJ_H), interpolation=cv2.INTER_AREA)
    assert info["method"] == method and info["boxes"] == [list(b) for b in scene.boxes]
    for frame, done, (x, y, w, h) in zip(scene.frames, out, scene.boxes):
        assert _corr(view(done[y:y + h, x:x + w]), view(expected)) >= min_corr
        keep = outside((x, y, w, h), r + 1)
        assert np.array_equal(frame[keep], done[keep])


def test_blend_respects_an_rgba_overlay_alpha():
    scene = make_scene(n=2, wobble=0)
    rgba = np.dstack([skimage.data.chelsea(), np.zeros(skimage.data.chelsea().shape[:2], np.uint8)])
    rgba[:, rgba.shape[1] // 2:, 3] = 255  # only the right half is opaque
    out = ip_blend.blend(scene.frames, scene.boxes, rgba, feather_radius=0)
    x, y, w, h = scene.boxes[0]
    left, right = slice(x, x + w // 2 - 1), slice(x + w // 2 + 1, x + w)
    assert np.array_equal(out[0][y:y + h, left], scene.frames[0][y:y + h, left])
    expected = cv2.resize(rgba[..., :3], (w, h), interpolation=cv2.INTER_AREA)
    assert np.array_equal(out[0][y:y + h, right], expected[:, w // 2 + 1:])


# --------------------------------------------------------------------------- background


def test_background_keeps_the_object_and_shows_the_new_background():
    scene = make_scene(ellipse=True, n=12)
    new_bg = skimage.data.astronaut()
    loose = (scene.boxes[0][0] - 4, scene.boxes[0][1] - 4, OBJ_W + 8, OBJ_H + 8)  # a user's box is loose
    out, info = ip_classical.inpaint("background", scene.frames, bbox=loose, feather_radius=2, background=new_bg)
    assert info["track_confidence_min"] >= 0.6  # the template skips the loose margin
    masks = ip_background.segment_foreground(scene.frames, [tuple(b) for b in info["boxes"]])
    ious = [(m & t).sum() / (m | t).sum() for m, t in zip(masks, scene.masks)]
    assert min(ious) >= 0.8
    expected_bg = ip_background.cover_resize(new_bg, W, H)
    assert expected_bg.shape == (H, W, 3)
    for done, truth in zip(out, scene.masks):
        away = ~cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.mean(np.all(done[away] == expected_bg[away], axis=1)) >= 0.99
    assert 0 < info["foreground_fraction_mean"] < OBJ_W * OBJ_H / (W * H)


def test_cover_resize_keeps_aspect_and_fills_the_frame():
    tall = np.zeros((300, 100, 3), np.uint8)
    tall[:, :, 0] = np.arange(300)[:, None] * 255 // 299
    out = ip_background.cover_resize(tall, 192, 128)
    assert out.shape == (128, 192, 3)
    # scale 1.92: 128 rows show the middle 128 / 1.92 ~ 67 source rows out of 300
    assert abs(int(out[0, 0, 0]) - 255 * (150 - 33) // 299) <= 3


# --------------------------------------------------------------------------- extend


def test_extend_has_the_exact_size_and_keeps_the_original_centred():
    scene = make_scene(n=3)
    out, info = ip_classical.inpaint("extend", scene.frames, target_size=(256, 160))
    assert info["target_size"] == [256, 160] and info["offset"] == [32, 16]
    for frame, done in zip(scene.frames, out):
        assert done.shape == (160, 256, 3)
        assert np.array_equal(done[16:16 + H, 32:32 + W], frame)
        # the seam is no stronger than the image's own row-to-row change
        seam = np.abs(done[15, 32:32 + W].astype(int) - done[16, 32:32 + W]).mean()
        inner = np.abs(np.diff(frame.astype(int), axis=0)).mean()
        assert seam <= 2 * inner
        # far from the original the border is the heavy blur: smooth
        corner = done[:8, :16].astype(float)
        assert np.abs(np.diff(corner, axis=1)).mean() < 0.5 * inner


@pytest.mark.parametrize("size,word", [((255, 160), "even"), ((180, 160), "smaller"), ((192 * 5, 128), "at most")])
def test_extend_rejects_bad_target_sizes(size, word):
    with pytest.raises(InvalidRequest, match="target_size") as err:
        ip_extend.extend(make_scene(n=1).frames, *size)
    assert word in str(err.value)


# --------------------------------------------------------------------------- planning, dispatch, validation


@pytest.mark.parametrize("mode,prompt,image,model,path", [
    ("remove", False, False, False, "classical"),
    ("remove", False, False, True, "model"),
    ("replace", True, False, False, "model"),
    ("blend", False, True, True, "classical"),
    ("background", False, True, False, "classical"),
    ("background", True, True, True, "classical"),
    ("background", True, False, False, "model"),
    ("extend", False, False, False, "classical"),
    ("extend", True, False, False, "model"),
    ("extend", False, False, True, "model"),
])
def test_plan_inpaint(mode, prompt, image, model, path):
    assert ip_classical.plan_inpaint(mode, has_prompt=prompt, has_image=image, model_available=model) == path


@pytest.mark.parametrize("mode,prompt,image,field", [
    ("replace", False, False, "prompt"), ("blend", True, False, "overlay"),
    ("background", False, False, "background"), ("erase", False, False, "mode"),
])
def test_plan_inpaint_names_the_missing_input(mode, prompt, image, field):
    with pytest.raises(InvalidRequest, match=f"^{field}:"):
        ip_classical.plan_inpaint(mode, has_prompt=prompt, has_image=image)


def test_inpaint_remove_reports_what_it_did():
    scene = make_scene(n=12)
    out, info = ip_classical.inpaint("remove", scene.frames, bbox=scene.boxes[0], feather_radius=4)
    assert len(out) == 12 and info["path"] == "classical" and info["mode"] == "remove"
    assert info["boxes"] == [list(b) for b in scene.boxes]
    assert info["track_confidence_min"] >= 0.9
    assert info["temporal_fraction"] + info["spatial_fraction"] == pytest.approx(1.0)
    assert info["elapsed_s"] > 0
    assert psnr_in_boxes(out, scene.backgrounds, scene.boxes) >= 30.0
    assert set(ip_classical.CLASSICAL_MODES) == {"remove", "blend", "background", "extend"}


@pytest.mark.parametrize("kwargs,field", [
    ({"bbox": (180, 10, 30, 30)}, "bbox"),  # beyond the right edge
    ({"bbox": (10, 10, 0, 30)}, "bbox"),  # empty
    ({"bbox": (10, 10, 30)}, "bbox"),
    ({"bbox": (-1, 10, 30, 30)}, "bbox"),
    ({"bbox": None}, "bbox"),
    ({"bbox": (10, 10, 30, 30), "feather_radius": -1}, "feather_radius"),
    ({"bbox": (10, 10, 30, 30), "feather_radius": 33}, "feather_radius"),  # > min(H, W) // 4
    ({"bbox": (10, 10, 30, 30), "feather_radius": 2.5}, "feather_radius"),
    ({"bbox": (10, 10, 30, 30), "feather_radius": "wide"}, "feather_radius"),
])
def test_inpaint_rejects_bad_fields(kwargs, field):
    with pytest.raises(InvalidRequest, match=f"^{field}:"):
        ip_classical.inpaint("remove", make_scene(n=2).frames, **kwargs)


def test_inpaint_refuses_model_only_requests():
    frames = make_scene(n=2).frames
    with pytest.raises(InvalidRequest, match="^mode:.*VACE"):
        ip_classical.inpaint("replace", frames, bbox=(10, 10, 30, 30))
    with pytest.raises(InvalidRequest, match="^background:"):
        ip_classical.inpaint("background", frames, bbox=(10, 10, 30, 30))
    with pytest.raises(InvalidRequest, match="^frames:"):
        ip_classical.inpaint("remove", [], bbox=(10, 10, 30, 30))
