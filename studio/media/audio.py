"""Audio in and out: decode any audio file to mono float32, and mux audio into an H.264 mp4.

Decoding goes through libsndfile (wav, flac, ogg, mp3); formats it does not read (m4a/aac,
audio tracks of video files) are decoded with PyAV, which bundles its own ffmpeg, so nothing
needs ffmpeg on PATH (librosa's own fallback, audioread, would). Resampling is librosa's (soxr). Muxing runs the ffmpeg binary that ``imageio-ffmpeg``
ships (it has the ``aac`` encoder).
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import librosa
import numpy as np
import soundfile as sf

from studio.errors import EncodingFailed, InvalidRequest, StorageFull

# A mux copies the video and encodes only the audio: far faster than real time, so this bounds
# a hung ffmpeg, not a slow one.
MUX_TIMEOUT_SECONDS = 300
# Speech comes mono or stereo, surround at most 7.1; ambisonics go to 16. A header claiming more
# (WAV allows 65535) is a hostile or broken file that no decoder here can process.
MAX_CHANNELS = 32
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000


def load_audio(path: str | os.PathLike, sr: int = 16000, field: str = "audio") -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32 samples at ``sr`` Hz; returns ``(samples, sr)``.

    Channels are averaged to mono; the signal is resampled (soxr) to ``sr``. Raises
    ``InvalidRequest`` naming ``field`` (the request field the audio came in) when the file is
    not decodable audio or holds no samples; the message never shows the file's path (the
    decoders put it in theirs).
    """
    try:
        with sf.SoundFile(str(path)) as audio:
            _check_layout(audio.channels, audio.samplerate, field)
            data = audio.read(dtype="float32", always_2d=True)
            native_sr = audio.samplerate
    except sf.LibsndfileError as first_error:  # not a libsndfile format: try ffmpeg's decoders
        try:
            samples = _decode_with_pyav(Path(path), sr, field)
        except (av.FFmpegError, IndexError, ValueError, RuntimeError):  # IndexError: no audio stream
            raise InvalidRequest(f"{field}: the file could not be decoded as audio "
                                 f"({first_error.error_string.rstrip('.')})") from None
    else:
        try:
            samples = librosa.resample(data.mean(axis=1), orig_sr=native_sr, target_sr=sr)
        except Exception:  # soxr refuses what it cannot resample; that is the file's fault, not ours
            raise InvalidRequest(f"{field}: the audio could not be resampled from {native_sr} Hz") from None
    if samples.size == 0:
        raise InvalidRequest(f"{field}: the audio holds no samples")
    if not np.all(np.isfinite(samples)):
        raise InvalidRequest(f"{field}: the audio holds non-finite samples")
    return samples.astype(np.float32, copy=False), sr


def probe_audio(data: bytes, field: str) -> None:
    """Refuse, at submission, audio that ``load_audio`` could not decode later: open ``data``
    with the decoder the run will use (libsndfile, else PyAV), check its channel count and
    sample rate, and decode its first block. Raises ``InvalidRequest`` naming ``field``."""
    try:
        with sf.SoundFile(io.BytesIO(data)) as audio:
            _check_layout(audio.channels, audio.samplerate, field)
            audio.read(frames=min(audio.frames, audio.samplerate), dtype="float32")  # the first second
        return
    except sf.LibsndfileError as error:
        reason = error.error_string.rstrip(".")
    except RuntimeError:  # libsndfile opened it but could not read the samples
        raise InvalidRequest(f"{field}: the audio samples could not be decoded") from None
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            if stream.codec_context.channels < 1:  # FFmpeg gives 0 for a layout it cannot use
                raise ValueError("no usable channel layout")
            _check_layout(stream.codec_context.channels, stream.sample_rate, field)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
            for frame in container.decode(stream):  # the first frame is enough to know it decodes
                resampler.resample(frame)
                break
    except (av.FFmpegError, IndexError, ValueError, RuntimeError):
        raise InvalidRequest(f"{field}: the file could not be decoded as audio ({reason})") from None


def _check_layout(channels: int, sample_rate: int, field: str) -> None:
    """400 naming ``field`` for a channel count or sample rate no decoder here can process."""
    if channels < 1:
        raise InvalidRequest(f"{field}: the audio's header gives no usable number of channels")
    if channels > MAX_CHANNELS:
        raise InvalidRequest(f"{field}: the audio has {channels} channels; at most {MAX_CHANNELS} are accepted")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidRequest(f"{field}: the audio's sample rate is {sample_rate} Hz; "
                             f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz are accepted")


def _decode_with_pyav(path: Path, sr: int, field: str) -> np.ndarray:
    """First audio stream of ``path`` as mono float32 at ``sr`` Hz, decoded by PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        _check_layout(stream.codec_context.channels, stream.sample_rate, field)
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
    so readers never see a half-written file. Raises ``StorageFull`` when the disk ran out,
    ``EncodingFailed`` on any other ffmpeg failure, ``RuntimeError`` after ``timeout`` seconds.
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
        if "No space left" in message or "Disk quota" in message:
            raise StorageFull("the server's disk filled up while the audio was being added")
        raise EncodingFailed(f"adding the audio track failed (ffmpeg exit {result.returncode})")
    os.replace(part, out)
    return out
