"""Browser-playable H.264 mp4 written frame by frame, and JPEG stills.

Uses the ffmpeg binary that ``imageio-ffmpeg`` ships (with libx264), so nothing needs ffmpeg on
PATH. Frames are piped to ffmpeg as they arrive: a long video is never held in memory.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import cv2
import imageio_ffmpeg
import numpy as np

from studio.errors import EncodingFailed, StorageFull

# yuv420p + baseline-compatible settings are what every browser decodes; faststart moves the
# index to the front so playback starts before the whole file has downloaded.
_X264_PARAMS = ["-preset", "veryfast", "-crf", "20", "-movflags", "+faststart"]


class Mp4Writer:
    """Streams RGB uint8 frames into an H.264 (yuv420p, faststart) mp4.

    Written to ``path + '.part'`` and renamed only when ffmpeg exited cleanly and the file holds
    every frame sent, so a crash, a cancelled run or a full disk never leaves a truncated or
    undecodable file under the final name. A failed encode raises ``StorageFull`` when the disk
    ran out, ``EncodingFailed`` otherwise.
    """

    def __init__(self, path: Path, width: int, height: int, fps: int):
        if width % 2 or height % 2:
            raise ValueError(f"H.264 yuv420p needs even sizes, got {width}x{height}")
        self.path = Path(path)
        self.size = (width, height)
        self.frames_written = 0
        self._part = self.path.with_name(self.path.name + ".part")
        # ffmpeg's messages go to a temporary file: a pipe nobody reads could fill and stall it.
        self._stderr = tempfile.TemporaryFile()
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-nostdin", "-v", "error",
                   "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}", "-pix_fmt", "rgb24",
                   "-r", str(Fraction(fps).limit_denominator()), "-i", "-", "-an",
                   "-vcodec", "libx264", "-pix_fmt", "yuv420p", *_X264_PARAMS, "-f", "mp4", str(self._part)]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self._stderr)

    def write(self, frame: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame of the writer's size."""
        if frame.shape != (self.size[1], self.size[0], 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected {self.size[1]}x{self.size[0]}x3 uint8, got {frame.shape} {frame.dtype}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).data)
        except OSError:  # ffmpeg is gone (e.g. it could not write): report why it stopped
            self._fail()
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file, check it, and move it to its final name."""
        try:
            self._process.stdin.close()
        except OSError:
            pass  # a broken pipe: the exit status below says what happened
        if self._process.wait() != 0:
            self._fail()
        self._check_written()
        self._stderr.close()
        os.replace(self._part, self.path)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial file."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._stderr.close()
        self._part.unlink(missing_ok=True)

    def _fail(self) -> None:
        """Raise the error ffmpeg's exit stands for, after removing the partial file."""
        if self._process.poll() is None:
            self._process.kill()
        code = self._process.wait()
        self._stderr.seek(0)
        message = self._stderr.read().decode(errors="replace").strip()[-300:]
        self._stderr.close()
        self._part.unlink(missing_ok=True)
        if "No space left" in message or "Disk quota" in message:
            raise StorageFull("the server's disk filled up while the video was being written")
        raise EncodingFailed(f"the video encoder failed (exit {code})")

    def _check_written(self) -> None:
        """The finished file must decode and hold every frame: a clean exit alone is not proof."""
        try:
            frames = probe_video(self._part).frames
        except Exception:  # InvalidMedia or an OS error reading it back
            frames = 0
        if frames != self.frames_written:
            self._part.unlink(missing_ok=True)
            raise EncodingFailed(f"the encoded video holds {frames} of {self.frames_written} frames")

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
    try:
        tmp.write_bytes(data.tobytes())
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise
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
