"""Inputs that cannot be decoded are 400s naming the field that was sent, never a 500, and no
error detail shows a server path (issue 10, items 5 and 6)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from studio.errors import StudioError
from studio.media.inputs import decode_image
from tests.conftest import wait_for_terminal


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC (a valid CRC, so only the contents are hostile)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def inflating_png(kind: str, inflated_bytes: int = 8 * 2**20, after_image_data: bool = False) -> bytes:
    """A valid 8x8 PNG plus one ancillary ``kind`` chunk (iCCP, zTXt or iTXt) whose compressed
    payload is a few KiB but inflates to ``inflated_bytes``."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "PNG")
    raw = buffer.getvalue()
    bomb = zlib.compress(b"\0" * inflated_bytes, 9)
    payload = {"iCCP": b"icc\0\0" + bomb,  # name, compression method 0, zlib profile
               "zTXt": b"Comment\0\0" + bomb,  # keyword, compression method 0, zlib text
               "iTXt": b"Comment\0\1\0\0\0" + bomb}[kind]  # keyword, compressed, method, lang, translated
    at = raw.index(b"IEND") - 4 if after_image_data else 33  # 33: right after the signature and IHDR
    return raw[:at] + png_chunk(kind.encode(), payload) + raw[at:]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CHUNKS = ["iCCP", "zTXt", "iTXt"]


@pytest.mark.parametrize("after_image_data", [False, True])
@pytest.mark.parametrize("kind", CHUNKS)
def test_decode_image_refuses_chunks_that_inflate_to_megabytes(kind, after_image_data):
    data = inflating_png(kind, after_image_data=after_image_data)
    assert len(data) < 20_000  # small on the wire; megabytes once inflated
    with pytest.raises(StudioError) as caught:
        decode_image(data)
    assert caught.value.status_code == 400


# Every base64 image field of the REST API, with a body that reaches its decoding.
IMAGE_FIELDS = [
    ("/v1/genius/scene/edit", {"scenes": [{"prompt": "a fox", "duration": 1}], "enable_character_consistency": True},
     "character_reference_image_base64"),
    ("/v1/genius/inpaint/process", {"task_id": "no-such-task", "mode": "blend", "bbox": [0, 0, 8, 8]},
     "overlay_image_base64"),
    ("/v1/genius/inpaint/process", {"task_id": "no-such-task", "mode": "replace", "bbox": [0, 0, 8, 8],
                                    "prompt": "a cat"}, "overlay_image_base64"),
    ("/v1/genius/inpaint/process", {"task_id": "no-such-task", "mode": "background"}, "background_image_base64"),
    ("/v1/genius/consistency/register-entity", {"name": "hero", "entity_type": "character"},
     "reference_image_base64"),
    ("/v1/genius/v2v/transform", {"source_task_id": "no-such-task", "mode": "style_transfer"},
     "style_reference_base64"),
    ("/v1/genius/v2v/transform", {"source_task_id": "no-such-task", "mode": "colorization"},
     "style_reference_base64"),
    ("/v1/genius/v2v/transform", {"source_task_id": "no-such-task", "mode": "style_transfer",
                                  "prompt": "an oil painting"}, "style_reference_base64"),
]


@pytest.mark.parametrize("kind", CHUNKS)
@pytest.mark.parametrize("route,body,field", IMAGE_FIELDS, ids=lambda v: v if isinstance(v, str) else None)
def test_inflating_png_chunks_are_a_400_naming_the_field(http, live_server, route, body, field, kind):
    response = http.post(route, json={**body, field: b64(inflating_png(kind))})
    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == {"error", "detail", "type"}
    assert error["detail"].startswith(f"{field}:"), error
    assert str(live_server.settings.data_dir) not in response.text


@pytest.mark.parametrize("route,body,field", IMAGE_FIELDS, ids=lambda v: v if isinstance(v, str) else None)
def test_truncated_and_garbled_images_are_a_400_naming_the_field(http, route, body, field):
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(buffer, "PNG")
    png = buffer.getvalue()
    garbled = png[:40] + bytes(b ^ 0x5A for b in png[40:-12]) + png[-12:]  # IDAT corrupt
    for data in (png[: len(png) // 2], garbled, b"\x89PNG\r\n\x1a\n" + b"\0" * 100):
        response = http.post(route, json={**body, field: b64(data)})
        assert response.status_code == 400, response.text
        assert response.json()["detail"].startswith(f"{field}:"), response.text


# -- audio: refused at submit when it cannot be processed; errors name the field sent ----------

def wav_header(channels: int, rate: int = 16000, data: bytes = b"\0" * 32000) -> bytes:
    """A 16-bit PCM WAV whose header claims ``channels`` (up to 65535, as the format allows) but
    whose byte rate is a mono one, so it reads as one second long and passes the length checks."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


@pytest.fixture()
def served_bytes():
    """Serve one body at a loopback URL (the test server allows loopback URLs)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    bodies: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = bodies.get(self.path, b"")
            self.send_response(200 if self.path in bodies else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(name: str, body: bytes) -> str:
        bodies[f"/{name}"] = body
        return f"http://127.0.0.1:{server.server_address[1]}/{name}"

    yield serve
    server.shutdown()
    server.server_close()


def face_source(live_server) -> str:
    from tests.conftest import API_KEY
    from tests.edit_helpers import source_task

    owner = live_server.studio.keys.lookup(API_KEY).id
    return source_task(live_server.studio, owner, [np.full((64, 64, 3), 128, np.uint8)] * 4)


@pytest.mark.parametrize("channels", [65535, 1000])
def test_a_wav_claiming_too_many_channels_is_a_400_at_submit(http, live_server, served_bytes, channels):
    source = face_source(live_server)
    audio = wav_header(channels)
    sent = http.post("/v1/genius/lipsync/generate", json={"task_id": source, "audio_base64": b64(audio)})
    assert sent.status_code == 400, sent.text
    assert sent.json()["detail"].startswith("audio_base64: ") and "channels" in sent.json()["detail"]
    fetched = http.post("/v1/genius/lipsync/generate",
                        json={"task_id": source, "audio_url": served_bytes("many.wav", audio)})
    assert fetched.status_code == 400, fetched.text
    assert fetched.json()["detail"].startswith("audio_url: ")
    for response in (sent, fetched):
        assert str(live_server.settings.data_dir) not in response.text


def test_a_failed_audio_decode_names_audio_base64_and_no_server_path(http, live_server):
    """A task whose stored audio cannot be decoded when it runs (queued before the submit check
    existed, or spoiled on disk) fails naming the field that was sent, with no path."""
    from studio.genius.edit_submit import new_inputs, store_source
    from studio.genius.lipsync.schema import LipSyncSpec
    from tests.conftest import API_KEY

    studio = live_server.studio
    owner = studio.keys.lookup(API_KEY).id
    inputs_id, folder = new_inputs(studio.services)
    source = store_source(studio.services, owner, folder, face_source(live_server), None)
    (folder / "audio.wav").write_bytes(wav_header(65535))
    spec = LipSyncSpec(audio="audio.wav", audio_field="audio_base64", audio_seconds=0.1, expression="neutral",
                       intensity=1.0, inputs_id=inputs_id, source=source)
    task_id = studio.submit_spec(spec, owner, 1.0).task_id
    status = wait_for_terminal(http, task_id)
    assert status["status"] == "failed", status
    texts = [http.get(f"/v1/status/{task_id}").text, http.get(f"/v1/result/{task_id}").text]
    assert all(str(studio.settings.data_dir) not in text and "/inputs/" not in text for text in texts), texts
    assert "audio_base64" in texts[0] and "audio_url" not in texts[0], texts[0]


# -- model loading: the loader's exception text (cache paths) stays in the log ------------------

def test_model_load_errors_do_not_show_cache_paths(tmp_path, monkeypatch):
    import transformers

    from studio.errors import ModelUnavailable
    from studio.models import appearance, pose

    secret = str(tmp_path / "hub-cache" / "models--x" / "config.json")

    def broken(*args, **kwargs):
        raise OSError(f"Can't load the configuration from '{secret}'")

    monkeypatch.setattr(pose, "unavailable_reason", lambda trained: None)
    monkeypatch.setattr(transformers.VitPoseForPoseEstimation, "from_pretrained", broken)
    with pytest.raises(ModelUnavailable) as caught:
        pose._load_trained()
    assert "OSError" in caught.value.detail and str(tmp_path) not in caught.value.detail

    monkeypatch.setattr(appearance, "unavailable_reason", lambda model_id: None)
    monkeypatch.setattr(transformers.CLIPVisionModelWithProjection, "from_pretrained", broken)
    with pytest.raises(ModelUnavailable) as caught:
        appearance._load(tmp_path, appearance.CLIP_B32, appearance.EMBEDDERS[appearance.CLIP_B32])
    assert "OSError" in caught.value.detail and str(tmp_path) not in caught.value.detail


def test_a_reference_image_a_mode_does_not_take_is_named_as_sent(http, live_server):
    source = face_source(live_server)
    png = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(png, "PNG")
    response = http.post("/v1/genius/v2v/transform", json={"source_task_id": source, "mode": "upscale",
                                                           "style_reference_base64": b64(png.getvalue())})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("style_reference_base64: "), response.text
