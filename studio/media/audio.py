"""Audio in and out: decode any audio file to mono float32, and mux audio into an H.264 mp4.

Decoding goes through libsndfile (wav, flac, ogg, mp3); formats it does not read (m4a/aac,
audio tracks of video files) are decoded with PyAV, which bundles its own ffmpeg, so nothing
needs ffmpeg on PATH (librosa's own fallback, audioread, would). Resampling is librosa's (soxr). Muxing runs the ffmpeg binary that ``imageio-ffmpeg``
ships (it has the ``aac`` encoder).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import librosa
import numpy as np
import soundfile as sf

from studio.errors import InvalidRequest

# A mux copies the video and encodes only the audio: far faster than real time, so this bounds
# a hung ffmpeg, not a slow one.
MUX_TIMEOUT_SECONDS = 300


def load_audio(path: str | os.PathLike, sr: int = 16000) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32 samples at ``sr`` Hz; returns ``(samples, sr)``.

    Channels are averaged to mono; the signal is resampled (soxr) to ``sr``. Raises
    ``InvalidRequest`` naming ``audio_url`` when the file is not decodable audio or holds no
    samples.
    """
    try:
        data, native_sr = sf.read(str(path), dtype="float32", always_2d=True)
        samples = librosa.resample(data.mean(axis=1), orig_sr=native_sr, target_sr=sr)
    except sf.LibsndfileError as first_error:  # not a libsndfile format: try ffmpeg's decoders
        try:
            samples = _decode_with_pyav(Path(path), sr)
        except (av.FFmpegError, IndexError, ValueError):  # IndexError: no audio stream
            raise InvalidRequest(f"audio_url: the file could not be decoded as audio ({first_error})") from None
    if samples.size == 0:
        raise InvalidRequest("audio_url: the audio holds no samples")
    if not np.all(np.isfinite(samples)):
        raise InvalidRequest("audio_url: the audio holds non-finite samples")
    return samples.astype(np.float32, copy=False), sr


def _decode_with_pyav(path: Path, sr: int) -> np.ndarray:
    """First audio stream of ``path`` as mono float32 at ``sr`` Hz, decoded by PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        chunks = [frame.to_ndarray().reshape(-1)
                  for decoded in container.decode(stream)
                  for frame in resampler.resample(decoded)]
        chunks += [frame.to_ndarray().reshape(-1) for frame in resampler.resample(None)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def mux_audio(video_path: str | os.PathLike, audio_path: str | os.PathLike, out_path: str | os.PathLike,
              timeout: float = MUX_TIMEOUT_SECONDS) -> Path:
    """Write ``out_path``: the video stream of ``video_path`` copied bit for bit, plus the audio
    of ``audio_path`` encoded as AAC (128 kb/s), in a faststart mp4.

    Both streams are kept whole (no ``-shortest``): the caller makes the video as long as the
    audio. The file is written to ``out_path + '.part'`` and renamed only when ffmpeg succeeds,
    so readers never see a half-written file. Raises ``RuntimeError`` with ffmpeg's message on
    failure or after ``timeout`` seconds.
    """
    out = Path(out_path)
    part = out.with_name(out.name + ".part")
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-nostdin", "-v", "error",
               "-i", str(video_path), "-i", str(audio_path),
               "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k",
               "-movflags", "+faststart", "-f", "mp4", str(part)]
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        part.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg did not finish muxing within {timeout} s") from None
    if result.returncode != 0:
        part.unlink(missing_ok=True)
        message = result.stderr.decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"ffmpeg failed to mux audio (exit {result.returncode}): {message}")
    os.replace(part, out)
    return out
