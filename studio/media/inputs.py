"""Checks on media that users send: base64 images, uploaded files, audio length.

Everything is checked before it is decoded in full: sizes from the encoded length, pixel counts
from the image header (decompression bombs), durations from the container header.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studio.errors import PayloadTooLarge, StudioError

if TYPE_CHECKING:
    from studio.media.url_policy import FetchPolicy

MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGE_PIXELS = 36_000_000  # a little above 8K UHD (33.2 MP)
MAX_AUDIO_SECONDS = 600.0
MAX_AUDIO_BYTES = 100 * 2**20
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(;[\w=.+-]+)*;base64,", re.IGNORECASE)

# File signatures of what uploads may be (by kind), checked instead of trusting names or MIME.
_SIGNATURES = {
    "image": ((0, b"\x89PNG\r\n\x1a\n"), (0, b"\xff\xd8\xff"), (8, b"WEBP")),
    "video": ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3")),  # ISO-BMFF (mp4/mov), Matroska/WebM
    "audio": ((0, b"RIFF"), (0, b"ID3"), (0, b"\xff\xfb"), (0, b"\xff\xf3"), (0, b"fLaC"), (0, b"OggS"),
              (4, b"ftyp")),
}


class InvalidMedia(StudioError):
    """Media that is malformed, of the wrong type, or beyond a pixel/duration cap."""

    status_code = 400
    title = "Invalid media"


def decode_base64_image(data: str, max_bytes: int = MAX_IMAGE_BYTES,
                        max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A base64 (or ``data:image/...;base64,``) PNG/JPEG/WebP as an RGB uint8 array.

    413 when the decoded bytes would exceed ``max_bytes``; 400 for bad base64, another format,
    a data-URI MIME that is not an image, or more than ``max_pixels`` pixels.
    """
    match = _DATA_URI.match(data)
    if match:
        if match["mime"] and not match["mime"].lower().startswith("image/"):
            raise InvalidMedia(f"data URI has MIME type {match['mime']}, not an image")
        data = data[match.end():]
    data = "".join(data.split())
    if len(data) * 3 // 4 > max_bytes:
        raise PayloadTooLarge(f"image is over {max_bytes // 2**20} MiB")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMedia("image is not valid base64") from None
    return decode_image(raw, max_pixels)


def decode_base64_audio(data: str) -> bytes:
    """Bytes of a base64 string or ``data:audio/...;base64,`` URI (400 when it is not base64,
    or names a MIME type that is not audio or video)."""
    match = _DATA_URI.match(data)
    if match:
        mime = (match["mime"] or "").lower()
        if mime and not mime.startswith(("audio/", "video/")) and mime != "application/octet-stream":
            raise InvalidMedia(f"audio_base64: data URI has MIME type {match['mime']}, not audio")
        data = data[match.end():]
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMedia("audio_base64: not valid base64") from None


def decode_image(raw: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """PNG/JPEG/WebP bytes as an RGB uint8 array: the one place user images are decoded.

    Any failure is ``InvalidMedia`` (400): another format, over ``max_pixels``, and everything
    a decoder can raise on hostile bytes (PIL raises ``ValueError`` for iCCP/zTXt/iTXt chunks
    that inflate past its limits, ``SyntaxError`` for a broken PNG structure, ``OSError`` for
    truncated data, ``zlib``/``struct`` errors and more), so none of it reaches a 500. Callers
    add the request field's name.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(raw))  # reads the header (and chunks before the pixels)
        except Exception:  # whatever the decoder raised, the bytes are not a usable image
            raise InvalidMedia("image is not a readable PNG, JPEG or WebP") from None
        if image.format not in IMAGE_FORMATS:
            raise InvalidMedia(f"image format {image.format} is not accepted; use PNG, JPEG or WebP")
        width, height = image.size
        if width * height > max_pixels:
            raise InvalidMedia(f"image is {width}x{height}: over the {max_pixels} pixel limit")
        try:
            return np.asarray(image.convert("RGB"))
        except Exception:  # as above: truncated pixels, chunks after them that inflate too far, ...
            raise InvalidMedia("image data is truncated, corrupt or carries oversized metadata") from None


def check_upload_type(path: Path, kind: str) -> None:
    """Refuse an uploaded file whose first bytes are not an accepted ``kind`` (image, video, audio)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not any(head[offset:offset + len(magic)] == magic for offset, magic in _SIGNATURES[kind]):
        raise InvalidMedia(f"the uploaded file is not a supported {kind} file")


def audio_duration(data: bytes, max_seconds: float = MAX_AUDIO_SECONDS, max_bytes: int = MAX_AUDIO_BYTES) -> float:
    """Seconds of audio in ``data``, refusing anything over the size or length caps (or not audio)."""
    import av

    if len(data) > max_bytes:
        raise PayloadTooLarge(f"audio is over {max_bytes // 2**20} MiB")
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise InvalidMedia("the file has no audio stream")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            else:  # no header duration: count decoded samples, stopping at the cap
                samples = 0
                for frame in container.decode(stream):
                    samples += frame.samples
                    if samples / frame.sample_rate > max_seconds:
                        break
                seconds = samples / (stream.sample_rate or 1)
    except av.FFmpegError:
        raise InvalidMedia("the file is not readable audio") from None
    if seconds > max_seconds:
        raise InvalidMedia(f"audio is {seconds:.0f} s long: over the {max_seconds:.0f} s limit")
    return seconds


def fetch_media(url: str, policy: "FetchPolicy", what: str) -> bytes:
    """The body of ``url`` through the guarded fetcher (public hosts only, size and time caps);
    400 naming ``what`` (the request field) when the server does not answer 200."""
    from studio.media.fetch import fetch
    from studio.media.url_policy import FetchFailed

    response = fetch(url, policy)
    if response.status_code != 200:
        raise FetchFailed(f"{what}: {url[:200]} answered HTTP {response.status_code}")
    return response.content


def fetch_image(url: str, policy: "FetchPolicy", what: str) -> np.ndarray:
    """An image from ``url`` (guarded fetch, image caps) as RGB uint8."""
    raw = fetch_media(url, policy, what)
    if len(raw) > MAX_IMAGE_BYTES:
        raise PayloadTooLarge(f"{what}: image is over {MAX_IMAGE_BYTES // 2**20} MiB")
    try:
        return decode_image(raw)
    except InvalidMedia as error:
        raise InvalidMedia(f"{what}: {error.detail}") from None


def image_input(data: str | None, url: str | None, policy: "FetchPolicy", data_field: str,
                url_field: str) -> np.ndarray | None:
    """An optional image a request gives as base64 ``data`` or a ``url`` (fetched through the
    guarded fetcher), as RGB uint8; None when neither is given. Errors name the field."""
    if data and url:
        raise InvalidMedia(f"{data_field}: give the image or {url_field}, not both")
    if data:
        return _base64_image(data, data_field)
    return fetch_image(url, policy, url_field) if url else None


def image_from(value: str, policy: "FetchPolicy", field: str) -> np.ndarray:
    """The image of a field that takes either an http(s) URL (fetched through the guarded
    fetcher) or base64, as RGB uint8. Errors name the field."""
    if re.match(r"^[hH][tT][tT][pP][sS]?://", value):
        return fetch_image(value, policy, field)
    return _base64_image(value, field)


def _base64_image(data: str, field: str) -> np.ndarray:
    try:
        return decode_base64_image(data)
    except (InvalidMedia, PayloadTooLarge) as error:  # same status, with the field it is about
        raise type(error)(f"{field}: {error.detail}") from None


def encode_png_base64(image: np.ndarray) -> str:
    """An RGB(A) array as base64 PNG: how the UI passes images through the same request models."""
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(image[:, :, :3], cv2.COLOR_RGB2BGR))
    if not ok:
        raise InvalidMedia("the image could not be encoded")
    return base64.b64encode(data.tobytes()).decode()
