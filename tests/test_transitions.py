"""Scene Orchestrator transitions: frame counts, exact blends and wipes, the optical-flow morph,
stitch/timeline agreement and the automatic choice."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from studio.errors import InvalidRequest
from studio.genius.scene import auto_transition as auto
from studio.genius.scene import transitions as tr
from studio.genius.scene.transitions import TransitionSpec

H, W = 96, 144


def smooth_noise(h: int, w: int, seed: int, cell: int = 16, amplitude: float = 0.5) -> np.ndarray:
    """Soft colour noise: a random grid of colours upsampled bicubically, around mid grey."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (h // cell + 2, w // cell + 2, 3)).astype(np.float32)
    noise = cv2.resize(grid, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)[cell:cell + h, cell:cell + w]
    return np.clip(128 + (noise - 128) * amplitude, 0, 255).astype(np.uint8)


def photo(image: np.ndarray, shift: int = 0) -> np.ndarray:
    return np.roll(cv2.resize(image, (W, H), interpolation=cv2.INTER_AREA), shift, axis=1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


@pytest.fixture(scope="module")
def shots() -> tuple[list[np.ndarray], list[np.ndarray]]:
    a = [photo(data.astronaut(), 2 * i) for i in range(8)]
    b = [photo(data.coffee(), -2 * i) for i in range(8)]
    return a, b


@pytest.mark.parametrize("kind", ["crossfade", "wipe", "zoom", "blur", "morph"])
@pytest.mark.parametrize("n", [1, 4, 7])
def test_each_type_yields_exactly_n_frames_of_the_shot_shape(shots, kind, n):
    a, b = shots
    frames = tr.render_transition(kind, a, b, n)
    assert len(frames) == n
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)


def test_cut_has_no_overlap_frames(shots):
    a, b = shots
    assert tr.render_transition("cut", a, b, 0) == []
    with pytest.raises(InvalidRequest):
        tr.render_transition("cut", a, b, 3)


def test_crossfade_midpoint_is_the_even_blend_of_the_paired_frames(shots):
    a, b = shots
    frames = tr.render_transition("crossfade", a, b, 5)
    # Overlap frame 2 of 5 sits at t = 3/6 = 0.5 and pairs A's frame len-5+2 with B's frame 2.
    expected = (a[-3].astype(np.float64) + b[2].astype(np.float64)) / 2
    assert np.abs(frames[2].astype(np.float64) - expected).max() <= 1.0
    # The first frame is mostly A (t = 1/6), not a copy of it.
    assert psnr(frames[0], a[-5]) > psnr(frames[0], b[0])
    assert not np.array_equal(frames[0], a[-5])


@pytest.mark.parametrize("direction", ["right", "left", "down", "up"])
def test_wipe_edge_is_at_t_times_the_frame_size(direction):
    a = np.zeros((H, W, 3), np.uint8)
    b = np.full((H, W, 3), 255, np.uint8)
    n = 7
    frames = tr.render_transition("wipe", [a], [b], n, direction=direction)
    for i, frame in enumerate(frames):
        t = (i + 1) / (n + 1)
        is_b = frame[..., 0] == 255
        if direction in ("right", "left"):
            cols = np.flatnonzero(is_b.all(axis=0))
            assert is_b.all(axis=0).sum() + (~is_b).all(axis=0).sum() == W  # every column is one shot
            edge = round(t * W)
            expected = np.arange(edge) if direction == "right" else np.arange(W - edge, W)
        else:
            cols = np.flatnonzero(is_b.all(axis=1))
            edge = round(t * H)
            expected = np.arange(edge) if direction == "down" else np.arange(H - edge, H)
        np.testing.assert_array_equal(cols, expected)


def test_wipe_rejects_an_unknown_direction(shots):
    with pytest.raises(InvalidRequest, match="direction"):
        tr.render_transition("wipe", shots[0], shots[1], 3, direction="diagonal")


def test_zoom_magnifies_a_about_the_centre():
    # A has a 20 px square in the middle; at t = 0.5 it is magnified by 1 + 0.5 x (2 - 1) = 1.5.
    a = np.zeros((H, W, 3), np.uint8)
    a[H // 2 - 10:H // 2 + 10, W // 2 - 10:W // 2 + 10] = 255
    b = np.zeros_like(a)
    mid = tr.render_transition("zoom", [a], [b], 3, zoom=2.0)[1]
    bright = mid[..., 0] > 64  # A enters the blend at half weight (127)
    assert abs(bright.any(axis=0).sum() - 30) <= 2
    assert abs(bright.any(axis=1).sum() - 30) <= 2


def test_blur_is_strongest_in_the_middle():
    a = np.zeros((H, W, 3), np.uint8)
    a[:, ::4] = 255  # fine stripes: a blur flattens them
    frames = tr.render_transition("blur", [a], [a], 5)
    contrast = [float(f.std()) for f in frames]
    assert contrast[2] < contrast[1] < contrast[0]
    assert contrast[2] < 0.3 * float(a.std())


@pytest.fixture(scope="module")
def translated_square():
    """A textured 40 px square moved by (16, 8) px over a soft textured background."""
    background = smooth_noise(128, 192, seed=1)
    square = cv2.resize(data.chelsea()[60:200, 120:260], (40, 40), interpolation=cv2.INTER_AREA)

    def at(x: int, y: int) -> np.ndarray:
        frame = background.copy()
        frame[y:y + 40, x:x + 40] = square
        return frame

    return at(40, 40), at(56, 48), at(48, 44), square


def test_morph_moves_the_square_to_the_midpoint(translated_square):
    a, b, true_mid, square = translated_square
    mid = tr.render_transition("morph", [a], [b], 5)[2]
    score = cv2.matchTemplate(cv2.cvtColor(mid, cv2.COLOR_RGB2GRAY), cv2.cvtColor(square, cv2.COLOR_RGB2GRAY),
                              cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(score)
    assert best > 0.8
    assert np.hypot(x - 48, y - 44) < 2.0
    crossfade = tr.render_transition("crossfade", [a], [b], 5)[2]
    assert psnr(mid, true_mid) > psnr(crossfade, true_mid) + 4.0


def test_timeline_counts_overlaps_exactly_and_reports_clamps():
    specs = [TransitionSpec("crossfade", 0.5), TransitionSpec("cut", 0.5), TransitionSpec("wipe", 2.0)]
    result = tr.timeline([48, 72, 60, 24], specs, fps=24)
    frames = [b["frames"] for b in result["transitions"]]
    assert frames == [12, 0, 24]  # the 2 s wipe (48 frames) is clamped to the 24-frame last shot
    assert result["total_frames"] == 48 + 72 + 60 + 24 - 36
    assert result["total_duration_seconds"] == pytest.approx(result["total_frames"] / 24)
    wipe = result["transitions"][2]
    assert wipe["clamped"] and wipe["requested_frames"] == 48 and wipe["duration"] == 1.0
    assert not result["transitions"][0]["clamped"]
    assert [b["start_frame"] for b in result["transitions"]] == [36, 108, 144]
    assert [s["start_frame"] for s in result["scenes"]] == [0, 36, 108, 144]


def test_a_shot_is_not_shared_by_two_overlaps():
    # The middle shot has 10 frames: the first boundary takes 8, so the second gets at most 2.
    result = tr.timeline([20, 10, 20], [TransitionSpec("crossfade", 1.0), TransitionSpec("crossfade", 1.0)], fps=8)
    assert [b["frames"] for b in result["transitions"]] == [8, 2]
    assert result["total_frames"] == 40


def test_stitch_streams_exactly_the_timeline_total(shots):
    a, b = shots
    c = [photo(data.chelsea(), i) for i in range(6)]
    specs = [TransitionSpec("crossfade", 0.25), TransitionSpec("wipe", 1.0, {"direction": "left"})]
    fps = 12
    frames = list(tr.stitch([a, b, c], specs, fps))
    plan = tr.timeline([len(a), len(b), len(c)], specs, fps)
    assert len(frames) == plan["total_frames"] == 8 + 8 + 6 - 3 - 5
    assert len(frames) / fps == plan["total_duration_seconds"]
    # Shot A plays untouched up to its overlap, shot C ends untouched.
    assert all(np.array_equal(frames[i], a[i]) for i in range(5))
    assert np.array_equal(frames[-1], c[-1])
    # The crossfade starts where the timeline says.
    start = plan["transitions"][0]["start_frame"]
    assert not np.array_equal(frames[start], a[start])


def test_stitch_rejects_a_wrong_number_of_transitions(shots):
    with pytest.raises(InvalidRequest, match="transitions"):
        list(tr.stitch(list(shots), [], 24))


def test_auto_picks_crossfade_for_shots_of_very_different_colour():
    red = photo(data.astronaut()).copy()
    red[..., 1:] //= 4
    blue = photo(data.coffee()).copy()
    blue[..., :2] //= 4
    kind, reasons, measures = auto.choose_transition([red, red], [blue, blue])
    assert kind == "crossfade"
    assert measures["colour_distance"] > auto.DIFFERENT_COLOUR
    assert any(f"{measures['colour_distance']:.2f}" in r for r in reasons)


def test_auto_picks_a_cut_for_nearly_identical_shots():
    frame = photo(data.astronaut())
    rng = np.random.default_rng(3)
    noisy = np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)
    kind, reasons, measures = auto.choose_transition([frame], [noisy])
    assert kind == "cut"
    assert measures["colour_distance"] < 0.2 and measures["ssim"] > 0.9
    assert reasons and all(isinstance(r, str) for r in reasons)


def test_auto_picks_a_morph_for_a_small_reliable_displacement(translated_square):
    a, b, _, _ = translated_square
    kind, reasons, measures = auto.choose_transition([a], [b])
    assert kind == "morph"
    assert measures["cross_flow"] > auto.STILL_CROSS_FLOW
    assert "morph" in reasons[-1]


def test_auto_picks_a_wipe_along_a_steady_pan():
    wide = cv2.resize(data.astronaut(), (3 * W, H), interpolation=cv2.INTER_AREA)
    pan = [np.ascontiguousarray(wide[:, 100 - 4 * i: 100 - 4 * i + W]) for i in range(2)]  # content moves right
    other = photo(data.coffee())
    kind, reasons, measures = auto.choose_transition(pan, [other, other])
    assert kind == "wipe" and measures["wipe_direction"] == "right"
    assert measures["motion_dx"] > 0
    assert reasons[-1].endswith("wipe right")


def test_auto_picks_a_zoom_for_a_zooming_shot_and_measures_its_rate():
    a = photo(data.astronaut())
    zoomed = tr.scale_about(a, 1.03, (W - 1) / 2, (H - 1) / 2)  # 3 % per frame
    other = photo(data.coffee())
    kind, reasons, measures = auto.choose_transition([a, zoomed], [other, other])
    assert kind == "zoom" and f"{measures['zoom_rate']:+.2f}%" in reasons[-1]
    assert measures["zoom_rate"] == pytest.approx(3.0, abs=0.5)
    # A plain shift is not mistaken for a zoom.
    _, _, shifted = auto.choose_transition([a, np.roll(a, 4, axis=0)], [other, other])
    assert abs(shifted["zoom_rate"]) < auto.ZOOM_RATE


def test_stitch_resolves_auto_and_the_timeline_reports_why(translated_square):
    a, b, _, _ = translated_square
    specs = tr.resolve_auto([[a] * 6, [b] * 6], [TransitionSpec("auto", 0.25)])
    assert specs[0].type == "morph" and specs[0].reasons
    plan = tr.timeline([6, 6], specs, fps=12)
    assert plan["transitions"][0]["reasons"] == list(specs[0].reasons)
    assert len(list(tr.stitch([[a] * 6, [b] * 6], [TransitionSpec("auto", 0.25)], 12))) == plan["total_frames"] == 9


def test_transitions_catalogue_lists_every_type():
    assert [t["type"] for t in tr.TRANSITIONS] == list(tr.TRANSITION_TYPES)
    assert all(t["description"] for t in tr.TRANSITIONS)
