"""Video Inpainting's Wan VACE path with the offline tiny-vace model: REST end to end, exact
compositing in process, windows, the catalog split and an unavailable hub model."""

from __future__ import annotations

import base64
import os
from typing import get_args

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2
import numpy as np
import pytest
import torch

from studio.engine import vace
from studio.engine.edit import EditJob
from studio.engine.request import GenerationRequest
from studio.engine.windows import balanced_windows
from studio.genius.inpaint import run as inpaint_run
from studio.genius.inpaint import vace as inpaint_vace
from studio.genius.inpaint.schema import InpaintSpec
from studio.media.video import Mp4Writer, read_frames
from studio.models.catalog import CATALOG, TINY_VACE, VACE_CATALOG, get_spec
from studio.models.loader import ModelCache, default_model, unavailable_reason
from studio.models.tiny import TINY_VACE_MODEL_DIRNAME, build_tiny_vace_pipeline, ensure_tiny_vace_model
from tests.conftest import API_KEY
from tests.edit_helpers import decoded, moving_square_clip, source_task, wait_result

# These tests exercise the offline tiny models, which are what a server without CUDA picks by
# default; on a GPU host they would pick the hub models instead (cpu_host: conftest).
pytestmark = pytest.mark.usefixtures("cpu_host")

FAST = {"num_inference_steps": 10, "seed": 7}  # the fewest steps a request takes; tiny-vace at 144x96 x 9 frames: about a second


def _key_id(live_server) -> str:
    return live_server.studio.keys.lookup(API_KEY).id


def _png(image: np.ndarray) -> str:
    return base64.b64encode(cv2.imencode(".png", image[:, :, ::-1])[1].tobytes()).decode()


# -- catalog, tiny model, windows ---------------------------------------------------------------

def test_vace_models_are_not_text_to_video_choices():
    assert set(VACE_CATALOG) == {TINY_VACE, "wan2.1-vace-1.3b", "wan2.1-vace-14b"}
    assert not set(VACE_CATALOG) & set(CATALOG)
    assert not set(VACE_CATALOG) & set(get_args(GenerationRequest.model_fields["model"].annotation))
    big = get_spec("wan2.1-vace-14b")
    assert (big.repo_id, big.pipeline, big.task, big.max_frames, big.native_fps) == (
        "Wan-AI/Wan2.1-VACE-14B-diffusers", "WanVACEPipeline", "vace", 81, 16)
    assert get_spec("wan2.1-vace-1.3b").native_width == 832 and all(s.task == "t2v" for s in CATALOG.values())
    assert default_model("vace") == (TINY_VACE if not torch.cuda.is_available() else "wan2.1-vace-1.3b")
    assert default_model() in CATALOG


def test_tiny_vace_saves_and_reloads_the_same_weights(tmp_path):
    from diffusers import WanVACEPipeline

    folder = ensure_tiny_vace_model(tmp_path)
    assert folder.name == TINY_VACE_MODEL_DIRNAME and [p.name for p in tmp_path.iterdir()] == [folder.name]
    loaded, fresh = WanVACEPipeline.from_pretrained(folder), build_tiny_vace_pipeline()
    assert type(loaded.transformer).__name__ == "WanVACETransformer3DModel"
    for name in ("transformer", "vae", "text_encoder"):
        a, b = getattr(loaded, name).state_dict(), getattr(fresh, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("frames,max_frames,expected", [
    (9, 33, [(0, 9, 0, 9)]),
    (10, 33, [(0, 10, 0, 13)]),
    (40, 33, [(0, 20, 0, 21), (20, 40, 5, 25)]),
    (82, 81, [(0, 41, 0, 41), (41, 82, 5, 49)]),
    (200, 81, [(0, 67, 0, 69), (67, 133, 5, 73), (133, 200, 5, 73)]),
])
def test_windows_cover_the_clip_in_4k_plus_1_passes(frames, max_frames, expected):
    spans = balanced_windows(frames, max_frames, vace.CONTEXT_FRAMES)
    assert spans == expected
    assert [s for s, *_ in spans[1:]] == [e for _, e, *_ in spans[:-1]] and spans[-1][1] == frames
    assert all(g % 4 == 1 and c + e - s <= g <= max_frames for s, e, c, g in spans)


# -- in process: exact compositing, every model mode ------------------------------------------------

class _Hooks:
    def __init__(self):
        self.fractions: list[float] = []

    def should_cancel(self) -> bool:
        return False

    def on_progress(self, fraction: float, message: str) -> None:
        self.fractions.append(fraction)


@pytest.fixture(scope="module")
def vace_job(tmp_path_factory):
    """Runs the model path in process and keeps the frames handed to the encoder (lossless)."""
    root = tmp_path_factory.mktemp("vace")
    clip = moving_square_clip(frames=9)
    with Mp4Writer(root / "source.mp4", 192, 128, 12) as writer:
        for frame in clip:
            writer.write(frame)
    source = list(read_frames(root / "source.mp4"))  # what run() reads: compare against these exactly
    with Mp4Writer(root / "long.mp4", 192, 128, 12) as writer:  # longer than tiny-vace's 33 frames
        for frame in moving_square_clip(frames=40):
            writer.write(frame)
    cache = ModelCache(root / "models")

    def run(mode: str, image: np.ndarray | None = None, source_name: str = "source.mp4", **stored):
        request = {"mode": mode, "feather_radius": 4, "blend_method": "feather", "path": "model", "model": TINY_VACE,
                   "prompt": "a blue bird", "num_inference_steps": 2, "guidance_scale": 5.0, "seed": 3, **stored}
        if image is not None:
            cv2.imwrite(str(root / "ref.png"), image[:, :, ::-1])
            request["image"] = "ref.png"
        hooks, written = _Hooks(), []

        def capture(job, frames, fps, expected, progress=(0.0, 1.0), message=""):
            for index, frame in enumerate(frames):
                written.append(frame)
                job.check(progress[0] + (progress[1] - progress[0]) * (index + 1) / expected, message)
            return _Written(len(written), fps, *written[0].shape[1::-1])

        job = EditJob("t", "inpaint", InpaintSpec(**request), root, root / "out.mp4", root / "out.jpg", hooks,
                      root / source_name, models=cache)
        regions = []

        def region(*args):  # the region the run used (GrabCut is randomised: a recomputation may differ)
            regions.append(make_region(*args))
            return regions[-1]

        originals = inpaint_vace.write_video, inpaint_vace.region
        make_region = originals[1]
        inpaint_vace.write_video, inpaint_vace.region = capture, region
        try:
            outcome = inpaint_run.run(job)
        finally:
            inpaint_vace.write_video, inpaint_vace.region = originals
        return outcome, written, regions[0], hooks

    return source, run


class _Written:
    def __init__(self, frames, fps, width, height):
        self.frames, self.fps, self.width, self.height, self.has_audio = frames, fps, width, height, False


@pytest.mark.parametrize("mode,stored", [
    ("replace", {"bbox_xywh": [18, 38, 36, 36]}),
    ("remove", {"bbox_xywh": [18, 38, 36, 36], "prompt": ""}),
    ("background", {"bbox_xywh": [14, 34, 44, 44]}),
])
def test_model_output_is_composited_only_inside_the_mask(vace_job, mode, stored):
    source, run = vace_job
    reference = np.full((40, 40, 3), (20, 60, 230), np.uint8) if mode == "replace" else None
    outcome, written, region, hooks = run(mode, reference, **stored)
    assert outcome.path == "model" and outcome.method == "WanVACE (tiny-vace)"
    assert len(written) == len(source) == 9 and written[0].shape == source[0].shape
    details = outcome.details
    assert details["windows"] == 1 and details["window_frames"] == [9] and details["generation_size"] == [144, 96]
    assert details["reference_image"] is (mode == "replace") and details["model_trained"] is False
    assert 0 < details["mask_fraction"] < 1 and any("untrained" in n for n in outcome.notes)
    assert hooks.fractions == sorted(hooks.fractions) and hooks.fractions[-1] == pytest.approx(1.0)
    changed = []
    for out, src, weight in zip(written, source, region.weights):
        keep = weight == 0
        assert keep.any() and np.array_equal(out[keep], src[keep])  # outside the mask: the source, exactly
        full = weight == 1
        changed.append(np.abs(out[full].astype(int) - src[full].astype(int)).mean())
    assert min(changed) > 10  # the model painted the masked region


def test_extend_keeps_the_original_exactly(vace_job):
    source, run = vace_job
    outcome, written, region, _ = run("extend", target_size=[192, 192], prompt="a snowy field")
    assert outcome.details["offset"] == [0, 32] and outcome.details["target_size"] == [192, 192]
    assert outcome.details["generation_size"] == [128, 128]
    for out, src in zip(written, source):
        assert out.shape == (192, 192, 3) and np.array_equal(out[32:160], src)
        assert np.abs(out[:32].astype(int) - 127).mean() > 5  # the border was painted, not left grey


# -- REST ---------------------------------------------------------------------------------------------

def test_rest_replace_with_a_prompt(http, live_server):
    clip = moving_square_clip(frames=9)
    source = source_task(live_server.studio, _key_id(live_server), clip)
    response = http.post("/v1/genius/inpaint/process", json={
        "task_id": source, "mode": "replace", "bbox": [18, 38, 54, 74], "feather_radius": 4,
        "prompt": "a blue bird flying", **FAST})
    assert response.status_code == 202, response.text
    result = wait_result(http, response.json()["task_id"])
    meta = result["metadata"]
    assert (meta["path"], meta["method"], meta["frames"], meta["width"], meta["height"]) == (
        "model", "WanVACE (tiny-vace)", 9, 192, 128)
    details = meta["details"]
    assert (details["model"], details["steps"], details["seed"], details["windows"]) == ("tiny-vace", 10, 7, 1)
    assert any("resized" in n for n in meta["notes"]) and any("untrained" in n for n in meta["notes"])
    out, before = decoded(http, result["task_id"]), decoded(http, source)
    assert len(out) == 9
    for frame, original, (x1, y1, x2, y2) in zip(out, before, details["boxes"]):
        outside = np.ones(frame.shape[:2], bool)
        outside[max(0, y1 - 12):y2 + 12, max(0, x1 - 12):x2 + 12] = False  # box + dilation + feather + codec
        assert cv2.PSNR(frame[outside], original[outside]) > 35
        inside = np.abs(frame[y1:y2, x1:x2].astype(int) - original[y1:y2, x1:x2].astype(int)).mean()
        assert inside > 10


def test_rest_extend_with_a_prompt(http, live_server):
    clip = moving_square_clip(frames=9)
    source = source_task(live_server.studio, _key_id(live_server), clip)
    response = http.post("/v1/genius/inpaint/process", json={
        "task_id": source, "mode": "extend", "target_aspect_ratio": "1:1", "prompt": "a wide meadow", **FAST})
    assert response.status_code == 202, response.text
    result = wait_result(http, response.json()["task_id"])
    meta = result["metadata"]
    assert (meta["path"], meta["width"], meta["height"], meta["frames"]) == ("model", 192, 192, 9)
    out, before = decoded(http, result["task_id"]), decoded(http, source)
    for frame, original in zip(out, before):
        assert cv2.PSNR(frame[36:156], original[4:124]) > 35  # the centre is the source (codec margin 4 px)


def test_rest_unavailable_vace_model_is_a_clear_503(http, live_server):
    source = source_task(live_server.studio, _key_id(live_server), moving_square_clip(frames=4))
    assert unavailable_reason(get_spec("wan2.1-vace-1.3b")) is not None  # no GPU here, or offline and not cached
    response = http.post("/v1/genius/inpaint/process", json={
        "task_id": source, "mode": "replace", "bbox": [10, 10, 50, 50], "prompt": "a cat",
        "model": "wan2.1-vace-1.3b"})
    assert response.status_code == 503 and response.json()["type"] == "ModelUnavailable"
    detail = response.json()["detail"]
    assert "wan2.1-vace-1.3b" in detail and "Wan VACE" in detail and "tiny-vace" in detail
    unknown = http.post("/v1/genius/inpaint/process", json={
        "task_id": source, "mode": "replace", "bbox": [10, 10, 50, 50], "prompt": "a cat", "model": "tiny"})
    assert unknown.status_code in (400, 422)  # a text-to-video model is not a VACE model
    classical = http.post("/v1/genius/inpaint/process", json={
        "task_id": source, "mode": "remove", "bbox": [10, 10, 50, 50], "model": "wan2.1-vace-1.3b"})
    assert classical.status_code == 202  # remove stays classical unless use_model: the model is not needed
    # waited for: the in-process tests below patch module functions the live worker also uses
    assert wait_result(http, classical.json()["task_id"])["metadata"]["path"] == "classical"


def test_later_windows_continue_from_what_the_previous_one_painted(vace_job, monkeypatch):
    """A clip longer than tiny-vace's 33 frames runs in two windows; the second one is given the
    first's last painted frames as known frames (mask 0), so the painting continues across."""
    from diffusers import WanVACEPipeline

    calls = []
    original = WanVACEPipeline.__call__

    def recording(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append({"video": [np.asarray(f) for f in kwargs["video"]],
                      "mask": [np.asarray(m) for m in kwargs["mask"]], "frames": out.frames[0]})
        return out

    monkeypatch.setattr(WanVACEPipeline, "__call__", recording)
    _, run = vace_job
    outcome, written, _, _ = run("replace", None, source_name="long.mp4", bbox_xywh=[18, 38, 36, 36])
    assert len(written) == 40 and outcome.details["windows"] == 2
    assert outcome.details["window_context_frames"] == [0, 5]
    first, second = calls
    painted = [np.clip(np.rint(f * 255), 0, 255).astype(np.uint8) for f in first["frames"][15:20]]
    for given, mask, expected in zip(second["video"][:5], second["mask"][:5], painted):
        assert not mask.any()  # known frames: kept, not generated
        assert np.array_equal(given, expected)  # the first window's last five painted frames
    assert all(m.any() for m in second["mask"][5:])  # the box is generated in the new frames
