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
