"""Browser-playable H.264 mp4 written frame by frame, and JPEG stills.

Uses the ffmpeg binary that ``imageio-ffmpeg`` ships (with libx264), so nothing needs ffmpeg on
PATH. Frames are piped to ffmpeg as they arrive: a long video is never held in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import imageio_ffmpeg
import numpy as np

# yuv420p + baseline-compatible settings are what every browser decodes; faststart moves the
# index to the front so playback starts before the whole file has downloaded.
_X264_PARAMS = ["-preset", "veryfast", "-crf", "20", "-movflags", "+faststart"]


class Mp4Writer:
    """Streams RGB uint8 frames into an H.264 (yuv420p, faststart) mp4.

    Written to ``path + '.part'`` and renamed on a clean close, so a crash or a cancelled run
    never leaves a truncated file under the final name.
    """

    def __init__(self, path: Path, width: int, height: int, fps: int):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs even sizes, got {width}x{height}")
        self.path = Path(path)
        self.size = (width, height)
        self.frames_written = 0
        self._part = self.path.with_name(self.path.name + ".part")
        self._gen = imageio_ffmpeg.write_frames(
            str(self._part),
            size=self.size,
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=None,
            macro_block_size=2,
            ffmpeg_log_level="error",
            output_params=["-f", "mp4", *_X264_PARAMS],
        )
        self._gen.send(None)

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame of the writer's size."""
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected {self.size[1]}x{self.size[0]}x3 uint8, got {frame.shape} {frame.dtype}")
        self._gen.send(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file and move it to its final name."""
        self._gen.close()
        os.replace(self._part, self.path)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial file."""
        try:
            self._gen.close()
        except Exception:  # ffmpeg may already be gone; the partial file is removed either way
            pass
        self._part.unlink(missing_ok=True)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def fit_width(image: np.ndarray, width: int, interpolation: int | None = None) -> np.ndarray:
    """``image`` scaled to ``width`` pixels wide, keeping its aspect ratio."""
    h, w = image.shape[:2]
    height = max(1, round(h * width / w))
    if interpolation is None:
        interpolation = cv2.INTER_AREA if width < w else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interpolation)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to exactly ``width`` x ``height`` (area filter down, cubic up)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 85) -> Path:
    """Save an RGB uint8 image as JPEG atomically (readers never see a half-written file)."""
    path = Path(path)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, from its container header (frames counted when the header lacks them)."""

    width: int
    height: int
    fps: float
    frames: int
    has_audio: bool

    @property
    def duration_seconds(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


def probe_video(path: Path, max_frames: int | None = None) -> VideoInfo:
    """The size, rate and length of a video; ``InvalidMedia`` when it is not a readable video
    or has more than ``max_frames`` frames."""
    import av

    from studio.media.inputs import InvalidMedia

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InvalidMedia("the file has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = stream.frames or sum(1 for _ in container.demux(stream) if _.size)
            info = VideoInfo(stream.codec_context.width, stream.codec_context.height, fps, frames,
                             bool(container.streams.audio))
    except av.FFmpegError:
        raise InvalidMedia("the file is not a readable video") from None
    if info.frames <= 0 or info.width <= 0 or info.fps <= 0:
        raise InvalidMedia("the video has no frames")
    if max_frames is not None and info.frames > max_frames:
        raise InvalidMedia(f"the video has {info.frames} frames: over the {max_frames} frame limit")
    return info


def sample_frames(path: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` evenly spaced frames of the video at ``path``, first and last included
    (decoded in one pass; only the picked frames are kept)."""
    total = probe_video(path).frames
    picks = set(np.linspace(0, max(total - 1, 0), min(count, total)).round().astype(int).tolist())
    return [frame for index, frame in enumerate(read_frames(path)) if index in picks]


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """Decode a video frame by frame as RGB uint8 arrays (never the whole video in memory)."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")
