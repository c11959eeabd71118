"""Caps on user media: base64 images (decompression bombs), upload types, audio length."""

from __future__ import annotations

import base64
import io
import subprocess
import wave

import numpy as np
import pytest
from PIL import Image

from studio.errors import PayloadTooLarge
from studio.media.inputs import InvalidMedia, audio_duration, check_upload_type, decode_base64_image


def png_base64(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_valid_image_decodes_with_or_without_data_uri():
    image = decode_base64_image(png_base64(32, 16))
    assert image.shape == (16, 32, 3) and image[0, 0].tolist() == [200, 30, 30]
    assert decode_base64_image("data:image/png;base64," + png_base64(8, 8)).shape == (8, 8, 3)


@pytest.mark.parametrize("data,message", [
    ("not base64!!", "not valid base64"),
    ("aGVsbG8", "not valid base64"),                       # bad padding
    (base64.b64encode(b"hello world").decode(), "not a readable"),
    ("data:text/plain;base64," + base64.b64encode(b"hi").decode(), "not an image"),
])
def test_malformed_images_are_400(data, message):
    with pytest.raises(InvalidMedia, match=message) as caught:
        decode_base64_image(data)
    assert caught.value.status_code == 400


def test_a_decompression_bomb_is_refused_from_its_header():
    # 30000 x 30000 pixels that compress to a few hundred KB: refused before decoding.
    buffer = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buffer, format="PNG")
    with pytest.raises(InvalidMedia, match="pixel limit|not a readable"):
        decode_base64_image(base64.b64encode(buffer.getvalue()).decode())


def test_an_oversized_image_is_413_before_decoding():
    with pytest.raises(PayloadTooLarge) as caught:
        decode_base64_image("A" * (30 * 2**20))
    assert caught.value.status_code == 413


def test_other_image_formats_are_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="GIF")
    with pytest.raises(InvalidMedia, match="GIF is not accepted"):
        decode_base64_image(base64.b64encode(buffer.getvalue()).decode())


def test_upload_types_are_checked_by_content(tmp_path):
    png = tmp_path / "fake.mp4"
    png.write_bytes(base64.b64decode(png_base64(4, 4)))
    check_upload_type(png, "image")
    with pytest.raises(InvalidMedia, match="not a supported video"):
        check_upload_type(png, "video")


def _wav(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate), dtype=np.int16).tobytes())
    return buffer.getvalue()


def test_audio_length_is_measured_and_capped():
    assert audio_duration(_wav(2.0)) == pytest.approx(2.0, abs=0.01)
    with pytest.raises(InvalidMedia, match="over the 5 s limit"):
        audio_duration(_wav(6.0), max_seconds=5)
    with pytest.raises(InvalidMedia, match="not readable audio|no audio"):
        audio_duration(b"definitely not audio" * 10)


def test_spoken_audio_from_espeak_is_measured(tmp_path):
    out = tmp_path / "speech.wav"
    try:
        subprocess.run(["espeak-ng", "-w", str(out), "hello from the studio"], check=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("espeak-ng is not installed")
    assert 0.5 < audio_duration(out.read_bytes()) < 5
