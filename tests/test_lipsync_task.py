"""Lip-Sync Engine through REST and the Gradio API: the queued task, its audio, its figures, errors.

The face is scikit-image's astronaut photo (the Haar cascade finds it) as a short 12 fps clip;
the speech is espeak-ng's "papa see you" (a bilabial, a front and a rounded vowel).
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from skimage import data

from studio.core import UI_OWNER
from studio.media.video import Mp4Writer
from tests.conftest import API_KEY, OTHER_KEY
from tests.edit_helpers import decoded, source_task, wait_result

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

FPS = 12
SIZE = 256
CLIP_FRAMES = 6


def _key_id(live_server, key: str = API_KEY) -> str:
    return live_server.studio.keys.lookup(key).id


def face_clip() -> list[np.ndarray]:
    """The astronaut at 256x256, drifting right 1 px a frame."""
    face = cv2.resize(data.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return [np.roll(face, i, axis=1) for i in range(CLIP_FRAMES)]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """A folder with speech.wav (espeak-ng), not_audio.wav (a PNG under a wav name) and clip.mp4."""
    folder = tmp_path_factory.mktemp("lipsync-media")
    subprocess.run(["espeak-ng", "-s", "120", "-w", str(folder / "speech.wav"), "papa see you"],
                   check=True, capture_output=True, timeout=30)
    (folder / "not_audio.wav").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    clip = face_clip()
    with Mp4Writer(folder / "clip.mp4", SIZE, SIZE, FPS) as writer:
        for frame in clip:
            writer.write(frame)
    return folder


@pytest.fixture(scope="module")
def speech_seconds(media) -> float:
    return sf.info(str(media / "speech.wav")).duration


@pytest.fixture(scope="module")
def file_server(media):
    """``media`` served over HTTP on a loopback port (the test server allows loopback URLs)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(media)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _audio_seconds(mp4: bytes) -> float:
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        return float(stream.duration * stream.time_base)


def test_lipsync_follows_the_audio(http, live_server, media, speech_seconds):
    clip = face_clip()
    source = source_task(live_server.studio, _key_id(live_server), clip, fps=FPS)
    response = http.post("/v1/genius/lipsync/generate", json={
        "task_id": source, "audio_base64": _b64(media / "speech.wav"), "expression": "neutral", "intensity": 1.0})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    result = wait_result(http, task_id)
    meta, details = result["metadata"], result["metadata"]["details"]
    assert meta["feature"] == "lipsync" and meta["path"] == "classical" and meta["has_audio"]
    assert meta["source"]["task_id"] == source
    # As long as the audio: round(seconds x fps) frames (1.7 s -> 20), the 6-frame clip ping-ponged.
    expected = round(speech_seconds * FPS)
    assert abs(meta["frames"] - expected) <= 1 and meta["fps"] == FPS
    assert any("ping-pong" in note for note in meta["notes"])
    mp4 = http.get(f"/v1/videos/{task_id}.mp4").content
    assert abs(_audio_seconds(mp4) - speech_seconds) <= 1 / FPS
    out = decoded(http, task_id)
    assert abs(len(out) - expected) <= 1
    # The visemes of "papa see you", and the seed's figures.
    visemes = {segment["viseme"] for segment in details["viseme_track"]}
    assert details["visemes_detected"] > 0 and "PP" in visemes and visemes & {"EE", "OO"}
    assert 0 < details["keyframes_generated"] <= meta["frames"]
    assert abs(details["duration_seconds"] - speech_seconds) < 0.01 and details["processing_time_ms"] > 0
    assert details["face_region_source"] == "detected"
    x1, y1, x2, y2 = details["face_region"]
    assert 70 <= x1 < x2 <= 160 and 15 <= y1 < y2 <= 100  # the astronaut's face (about 86, 30, 139, 83)
    # The mouth moved, and nothing outside the face region did (beyond the re-encoding's noise).
    original = decoded(http, source)
    sources = [original[i] for i in list(range(CLIP_FRAMES)) + list(range(CLIP_FRAMES - 2, 0, -1))] * 4  # ping-pong
    cx, cy, w, h = (x1 + x2) // 2, y1 + round(0.81 * (y2 - y1)), x2 - x1, y2 - y1
    mouth = (slice(cy - h // 6, cy + h // 5), slice(cx - w // 4, cx + w // 4))
    outside = np.ones((SIZE, SIZE), bool)
    outside[max(y1 - 10, 0):y2 + 30, max(x1 - 10, 0):x2 + 10] = False
    moved = [np.abs(o[mouth].astype(int) - s[mouth].astype(int)).mean() for o, s in zip(out, sources)]
    noise = [np.abs(o.astype(int) - s.astype(int))[outside].mean() for o, s in zip(out, sources)]
    rest = [i for seg in details["viseme_track"] if seg["viseme"] == "rest"
            for i in range(seg["start_frame"], seg["end_frame"])]
    assert rest and all(moved[i] < 5 for i in rest)  # rest frames are left as they were
    assert max(moved) > 15 and max(noise) < 3
    # The seed's response shape.
    seed = http.get(f"/v1/genius/lipsync/{task_id}")
    assert seed.status_code == 200, seed.text
    assert seed.json() == {"task_id": task_id, **{name: details[name] for name in (
        "keyframes_generated", "duration_seconds", "visemes_detected", "processing_time_ms", "viseme_track")}}


def test_audio_url_with_a_face_region(http, live_server, media, file_server, speech_seconds):
    source = source_task(live_server.studio, _key_id(live_server), face_clip(), fps=FPS)
    response = http.post("/v1/genius/lipsync/generate", json={
        "task_id": source, "audio_url": f"{file_server}/speech.wav", "face_region": [84, 28, 140, 84],
        "expression": "happy", "intensity": 1.5})
    assert response.status_code == 202, response.text
    result = wait_result(http, response.json()["task_id"])
    details = result["metadata"]["details"]
    assert details["face_region"] == [84, 28, 140, 84] and details["face_region_source"] == "request"
    assert (details["expression"], details["intensity"]) == ("happy", 1.5)
    # happy lifts the corners of every frame, pauses included
    assert details["keyframes_generated"] == result["metadata"]["frames"]
    assert abs(_audio_seconds(http.get(f"/v1/videos/{result['task_id']}.mp4").content) - speech_seconds) <= 1 / FPS


def test_bad_requests_are_clear_4xx(http, live_server, media, file_server):
    source = source_task(live_server.studio, _key_id(live_server), face_clip(), fps=FPS)
    speech = _b64(media / "speech.wav")

    def post(body, **kwargs):
        return http.post("/v1/genius/lipsync/generate", json={"task_id": source, **body}, **kwargs)

    not_audio = post({"audio_base64": _b64(media / "not_audio.wav")})
    assert not_audio.status_code == 400 and "audio_base64" in not_audio.json()["detail"]
    not_audio_url = post({"audio_url": f"{file_server}/not_audio.wav"})
    assert not_audio_url.status_code == 400 and "audio_url" in not_audio_url.json()["detail"]
    missing_url = post({"audio_url": f"{file_server}/nothing.wav"})
    assert missing_url.status_code == 400 and "404" in missing_url.json()["detail"]
    no_audio = post({})
    assert no_audio.status_code == 400 and "audio" in no_audio.json()["detail"]
    not_base64 = post({"audio_base64": "*** not base64 ***"})
    assert not_base64.status_code == 400 and "base64" in not_base64.json()["detail"]
    outside = post({"audio_base64": speech, "face_region": [300, 300, 400, 400]})
    assert outside.status_code == 400 and "face_region" in outside.json()["detail"]
    inverted = post({"audio_base64": speech, "face_region": [140, 84, 84, 28]})
    assert inverted.status_code == 400 and "face_region" in inverted.json()["detail"]
    unknown = post({"audio_base64": speech, "expression": "bored"})
    assert unknown.status_code == 400 and "expression" in unknown.json()["detail"]
    too_strong = post({"audio_base64": speech, "intensity": 2.5})
    assert too_strong.status_code == 400 and "intensity" in too_strong.json()["detail"]
    # another key's source video, another key's task, another kind of task: 404
    private = post({"audio_base64": speech}, headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert private.status_code == 404
    assert http.get(f"/v1/genius/lipsync/{source}").status_code == 404  # a t2v task
    failed = _lipsync_task(live_server.studio, _key_id(live_server), "failed")
    assert http.get(f"/v1/genius/lipsync/{failed}").status_code == 409
    assert http.get(f"/v1/genius/lipsync/{failed}", headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 404


def test_no_face_fails_the_task_clearly(http, live_server, media):
    blank = [np.full((128, 128, 3), 120, np.uint8)] * 4
    source = source_task(live_server.studio, _key_id(live_server), blank, fps=FPS)
    response = http.post("/v1/genius/lipsync/generate", json={"task_id": source,
                                                              "audio_base64": _b64(media / "speech.wav")})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    deadline = time.monotonic() + 60
    while (status := http.get(f"/v1/status/{task_id}").json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["status"] == "failed" and "face_region [x1, y1, x2, y2]" in status["error"]


def _lipsync_task(studio, owner: str, status: str) -> str:
    """A lip-sync task row already in ``status`` (so the worker never claims it)."""
    store = studio.store
    with store._transaction() as db:
        task_id = store._insert_task(db, "lipsync", {}, 0, None, owner, None, None, time.time())
        db.exec_driver_sql("UPDATE tasks SET status = ?, error = 'test' WHERE id = ?", (status, task_id))
    return task_id


def test_gradio_lipsync_of_an_uploaded_video(live_server, media, speech_seconds):
    client = Client(live_server.url, verbose=False, download_files=False)
    try:
        status, video, timeline, details = client.predict(
            handle_file(str(media / "clip.mp4")), "", handle_file(str(media / "speech.wav")), "neutral", 1.0, "",
            api_name="/lipsync")
    finally:
        client.close()
    meta = details["metadata"]
    assert status.startswith("Done") and meta["source"]["upload"] == "source.mp4" and meta["has_audio"]
    assert abs(meta["frames"] - round(speech_seconds * FPS)) <= 1
    assert (video.get("video", video))["path"].endswith(".mp4")
    assert timeline["datatypes"] == {"time": "quantitative", "viseme": "nominal"}
    plotted = {row[1] for row in timeline["data"]}
    assert plotted == {segment["viseme"] for segment in meta["details"]["viseme_track"]} and "PP" in plotted
    assert timeline["data"][-1][0] == pytest.approx(meta["frames"] / FPS, abs=1e-3)


def test_gradio_lipsync_of_a_ui_task_needs_audio(live_server):
    source = source_task(live_server.studio, UI_OWNER, face_clip(), fps=FPS)
    client = Client(live_server.url, verbose=False, download_files=False)
    try:
        with pytest.raises(Exception, match="audio"):
            client.predict(None, source, None, "neutral", 1.0, "", api_name="/lipsync")
    finally:
        client.close()
