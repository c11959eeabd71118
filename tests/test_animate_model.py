"""Wan Animate model paths on the offline tiny models (tiny-animate + tiny-vitpose):
V2V motion transfer (animate mode) and Lip-Sync (replace mode of the face region).

tiny-animate is untrained, so its pixels are noise-like; what is asserted is what a user relies
on: the request is checked up front, the run has the source's length, size, rate and audio, the
output follows its conditioning (another reference image or another driving video gives another
video, the same seed the same one), the segments and steps are the ones the pipeline ran, and
lip-sync changes nothing outside the face region.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess

import av
import cv2
import numpy as np
import pytest
from skimage import data

from studio.engine.animate import segment_count
from studio.genius.lipsync.animate import face_masks
from studio.media.inputs import encode_png_base64
from tests.conftest import API_KEY
from tests.edit_helpers import decoded, moving_square_clip, source_task, wait_result

# These tests exercise the offline tiny models, which are what a server without CUDA picks by
# default; on a GPU host they would pick the hub models instead (cpu_host: conftest).
pytestmark = pytest.mark.usefixtures("cpu_host")

V2V = "/v1/genius/v2v/transform"
LIPSYNC = "/v1/genius/lipsync/generate"
SIZE = (192, 128)  # width, height of the clips: tiny-animate generates at 192x128 (multiples of 16)


def _key_id(live_server) -> str:
    return live_server.studio.keys.lookup(API_KEY).id


def person_clip(frames: int = 12, shift: int = 1) -> list[np.ndarray]:
    """The astronaut's head and shoulders (the Haar cascade finds the face) drifting right."""
    person = cv2.resize(data.astronaut()[0:340, 60:400], (110, 110), interpolation=cv2.INTER_AREA)
    clip = []
    for i in range(frames):
        frame = np.full((SIZE[1], SIZE[0], 3), 30, np.uint8)
        frame[9:119, 20 + shift * i:130 + shift * i] = person
        clip.append(frame)
    return clip


def reference(seed: int) -> str:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (96, 128), interpolation=cv2.INTER_CUBIC)
    return encode_png_base64(image)


def _mad(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b)
    return float(np.mean([np.abs(x.astype(np.float32) - y.astype(np.float32)).mean() for x, y in zip(a, b)]))


def _run(http, route: str, body: dict) -> dict:
    response = http.post(route, json=body)
    assert response.status_code == 202, response.text
    return wait_result(http, response.json()["task_id"])


@pytest.mark.parametrize("frames, segment, expected", [(1, 33, 1), (33, 33, 1), (34, 33, 2), (61, 33, 2),
                                                       (62, 33, 3), (77, 77, 1), (149, 77, 2), (150, 77, 3),
                                                       (300, 77, 5)])
def test_segment_count_follows_the_pipelines_rule(frames, segment, expected):
    # WanAnimatePipeline: each segment after the first re-uses the last 5 frames of the one before.
    assert segment_count(frames, segment) == expected


def test_models_lists_the_animate_and_first_last_frame_models(http):
    models = {m["id"]: m for m in http.get("/v1/models").json()}
    assert models["tiny-animate"]["task"] == "animate" and models["tiny-animate"]["available"] is True
    real = models["wan2.2-animate-14b"]
    assert real["task"] == "animate" and real["repo_id"] == "Wan-AI/Wan2.2-Animate-14B-Diffusers"
    assert real["available"] is False and "CUDA" in real["availability"]
    # the first-last-frame models of the Scene Orchestrator's morphs are listed the same way
    assert models["tiny-i2v"]["task"] == "i2v" and models["tiny-i2v"]["available"] is True
    assert models["wan2.1-flf2v-14b"]["repo_id"] == "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers"


def test_motion_transfer_with_the_model(http, live_server):
    source = source_task(live_server.studio, _key_id(live_server), person_clip(frames=40))
    base = {"source_task_id": source, "mode": "motion_transfer", "use_model": True, "model": "tiny-animate",
            "num_inference_steps": 10, "seed": 3, "style_reference_base64": reference(1)}
    result = _run(http, V2V, base)
    meta, details = result["metadata"], result["metadata"]["details"]
    assert meta["path"] == "model" and meta["method"].startswith("Wan Animate (tiny-animate), animate mode")
    assert (meta["width"], meta["height"], meta["frames"], meta["fps"]) == (*SIZE, 40, 12.0)
    # 40 frames in segments of 33 continuing from 5 frames: 2 segments, every step of both run
    assert details["segments"] == 2 and details["steps_total"] == 20 and details["segment_context_frames"] == 5
    assert details["model"] == "tiny-animate" and details["model_trained"] is False
    assert details["pose_model"] == "tiny-vitpose" and details["driving_signals"]["frames"] == 40
    face_x, face_y, face_w, _ = details["driving_signals"]["face_box_median"]
    assert 40 < face_x + face_w / 2 < 130 and 9 < face_y < 80  # the astronaut's face, where it was drawn
    assert details["prompt"] and details["animate_mode"] == "animate"
    assert "untrained" in " ".join(meta["notes"]) and "2 segments" in " ".join(meta["notes"])
    summary = http.get(f"/v1/genius/v2v/{result['task_id']}").json()
    assert summary["path"] == "model" and summary["frames"] == 40

    out = decoded(http, result["task_id"])
    assert len(out) == 40 and out[0].shape == (SIZE[1], SIZE[0], 3)
    again = decoded(http, _run(http, V2V, base)["task_id"])
    other_reference = decoded(http, _run(http, V2V, {**base, "style_reference_base64": reference(2)})["task_id"])
    still = source_task(live_server.studio, _key_id(live_server), person_clip(frames=40, shift=0))
    other_motion = decoded(http, _run(http, V2V, {**base, "source_task_id": still})["task_id"])
    assert _mad(out, again) < 0.5  # the same request repeats
    assert _mad(out, other_reference) > 2 and _mad(out, other_motion) > 0.5  # the conditioning is used


def test_motion_transfer_model_requests_are_checked_at_submission(http, live_server):
    owner = _key_id(live_server)
    person = source_task(live_server.studio, owner, person_clip(frames=6))
    square = source_task(live_server.studio, owner, moving_square_clip(frames=6))
    ok = {"source_task_id": person, "mode": "motion_transfer", "use_model": True, "num_inference_steps": 10,
          "style_reference_base64": reference(1)}

    def refused(body: dict, status: int = 400) -> str:
        response = http.post(V2V, json=body)
        assert response.status_code == status, response.text
        return response.json()["detail"]

    assert "style_reference_url" in refused({k: v for k, v in ok.items() if k != "style_reference_base64"})
    # classical motion transfer without anything to animate names both of its inputs
    classical = refused({"source_task_id": person, "mode": "motion_transfer"})
    assert classical.startswith("style_reference_url:") and "motion_reference_task_id" in classical
    assert "face_region" in refused({**ok, "source_task_id": square})
    assert "motion_reference_task_id" in refused({**ok, "motion_reference_task_id": person})
    assert "tiny-animate" in refused({**ok, "model": "tiny"})
    assert "tiny" in refused({**ok, "use_model": False, "mode": "style_transfer", "prompt": "oil",
                              "model": "tiny-animate"})
    assert "use_model" in refused({**ok, "mode": "upscale", "style_reference_base64": None})
    assert "face_region" in refused({"source_task_id": person, "mode": "motion_transfer",
                                     "style_reference_base64": reference(1), "face_region": [0, 0, 50, 50]})
    assert "CUDA" in refused({**ok, "model": "wan2.2-animate-14b"}, 503)
    # a face the cascade cannot find can be given
    boxed = _run(http, V2V, {**ok, "source_task_id": square, "face_region": [20, 40, 52, 72], "seed": 1})
    assert boxed["metadata"]["path"] == "model" and boxed["metadata"]["frames"] == 6
    assert boxed["metadata"]["details"]["parameters"]["face_region"] == [20, 40, 32, 32]
    # a prompt alone selects the model path too
    prompted = _run(http, V2V, {**ok, "use_model": False, "prompt": "an astronaut waving", "seed": 1,
                                "strength": 0.3})
    assert prompted["metadata"]["path"] == "model"
    assert any(note.startswith("strength not used") for note in prompted["metadata"]["notes"])
    assert prompted["metadata"]["details"]["prompt"] == "an astronaut waving"


def test_face_masks_cover_the_grown_face_box_with_a_soft_edge():
    masks = face_masks((100, 200, 3), np.array([[80.0, 20.0, 40.0, 40.0]]))
    mask = masks[0]
    assert mask.shape == (100, 200) and mask.dtype == np.float32
    assert mask[10:70, 70:130].min() == 1.0  # the box grown by a quarter of its size (10 px) each side
    assert mask[40, 62] == 0 and mask[40, 138] == 0 and mask[78, 100] == 0  # beyond the 6 px edge band
    assert 0 < mask[40, 67] < 1  # inside the band


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_lipsync_with_the_model_repaints_the_face_only(http, live_server, tmp_path):
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(tmp_path / "speech.wav"), "papa see you"],
                   check=True, capture_output=True, timeout=30)
    audio = base64.b64encode((tmp_path / "speech.wav").read_bytes()).decode()
    source = source_task(live_server.studio, _key_id(live_server), person_clip(frames=12))
    body = {"task_id": source, "audio_base64": audio}
    classical = _run(http, LIPSYNC, body)
    model = _run(http, LIPSYNC, {**body, "use_model": True, "model": "tiny-animate", "num_inference_steps": 10,
                                 "seed": 5})
    meta, details = model["metadata"], model["metadata"]["details"]
    assert meta["path"] == "model" and "Wan Animate (tiny-animate, replace mode)" in meta["method"]
    assert details["viseme_track"] == classical["metadata"]["details"]["viseme_track"]
    assert details["animate_mode"] == "replace" and details["steps_total"] == 10 * details["segments"]
    assert meta["frames"] == classical["metadata"]["frames"] and meta["has_audio"] is True
    seed_result = http.get(f"/v1/genius/lipsync/{model['task_id']}").json()
    assert seed_result["visemes_detected"] == classical["metadata"]["details"]["visemes_detected"]

    a, b = decoded(http, classical["task_id"]), decoded(http, model["task_id"])
    grown = face_masks(a[0].shape, np.array([details["driving_signals"]["face_box_median"]], float))[0]
    outside = cv2.dilate((grown > 0).astype(np.uint8), np.ones((17, 17), np.uint8)) == 0  # H.264 blocks spill
    diff = np.stack([np.abs(x.astype(np.int16) - y.astype(np.int16)).mean(axis=2) for x, y in zip(a, b)])
    assert diff[:, outside].mean() < 1.0, diff[:, outside].mean()  # the source's pixels outside the face
    assert diff[:, grown == 1].mean() > 10  # the untrained model's paint inside it
    with av.open(io.BytesIO(http.get(f"/v1/videos/{model['task_id']}.mp4").content)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"


def test_gradio_model_paths_take_an_uploaded_video(client, tmp_path):
    from gradio_client import handle_file

    from studio.media.video import Mp4Writer

    clip_path, reference_path = tmp_path / "person.mp4", tmp_path / "reference.png"
    with Mp4Writer(clip_path, *SIZE, 12) as writer:
        for frame in person_clip(frames=8):
            writer.write(frame)
    cv2.imwrite(str(reference_path), cv2.imdecode(np.frombuffer(base64.b64decode(reference(1)), np.uint8),
                                                  cv2.IMREAD_COLOR))
    status, _video, details = client.predict(
        handle_file(str(clip_path)), "", "motion_transfer", 0.7, handle_file(str(reference_path)), True, 0.8, 2, 2, 0,
        None, "", "tiny-animate", 10, True, api_name="/v2v")
    meta = details["metadata"]
    assert status.startswith("Done") and meta["path"] == "model" and meta["source"]["upload"] == "source.mp4"
    assert meta["frames"] == 8 and meta["details"]["model"] == "tiny-animate"
    if shutil.which("espeak-ng") is None:
        return
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "speech.wav"), "papa"], check=True, capture_output=True,
                   timeout=30)
    status, _video, _timeline, details = client.predict(
        handle_file(str(clip_path)), "", handle_file(str(tmp_path / "speech.wav")), "neutral", 1.0, "", True,
        "tiny-animate", api_name="/lipsync")
    assert status.startswith("Done") and details["metadata"]["path"] == "model"


@pytest.mark.parametrize("body, limit", [
    ({"mode": "motion_transfer", "use_model": True, "model": "tiny-animate"}, 300),  # Wan Animate
    ({"mode": "style_transfer", "prompt": "an oil painting"}, 600),  # VACE with a reference image
])
def test_a_source_too_long_for_a_model_path_is_a_400_naming_its_length(http, live_server, body, limit):
    frame = np.full((32, 32, 3), 128, np.uint8)
    source = source_task(live_server.studio, _key_id(live_server), [frame] * (limit + 1))
    reply = http.post(V2V, json={**body, "source_task_id": source, "style_reference_base64": reference(1)})
    assert reply.status_code == 400, reply.text
    assert reply.json()["detail"].startswith("source_task_id") and f"has {limit + 1}" in reply.json()["detail"]
