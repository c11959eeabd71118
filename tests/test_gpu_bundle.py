"""What a lent GPU machine gets to run the benchmarks (``scripts/gpu_bundle.py``,
``bench/gpu_session.sh``): the PyAV stand-in for ffmpeg writes what the studio's ``Mp4Writer``
asks for, refuses what it cannot do, and the bundle holds what the image lacks and nothing else."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from studio.media.video import Mp4Writer, probe_video

ROOT = Path(__file__).resolve().parent.parent
SHIM = ROOT / "bench" / "pyav_ffmpeg.py"


def _bundle_module():
    spec = importlib.util.spec_from_file_location("gpu_bundle", ROOT / "scripts" / "gpu_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pyav_stand_in_encodes_what_the_mp4_writer_sends(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(SHIM))
    # Its "#!/usr/bin/env python3" must find an interpreter with PyAV: this one (on the GPU machine, its python3).
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    frames = [np.full((96, 160, 3), (i * 8, 255 - i * 8, 40), np.uint8) for i in range(30)]
    with Mp4Writer(tmp_path / "clip.mp4", 160, 96, 24) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe_video(tmp_path / "clip.mp4")
    assert (info.width, info.height, info.frames, info.fps) == (160, 96, 30, 24.0)

    import av

    with av.open(str(tmp_path / "clip.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        middle = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][15]
    assert np.abs(middle.astype(float) - frames[15]).mean() < 3  # crf 20: close to what was sent


def test_the_stand_in_refuses_commands_it_does_not_implement(tmp_path):
    run = subprocess.run([sys.executable, str(SHIM), "-i", str(tmp_path / "in.mp4"), str(tmp_path / "out.wav")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "pyav_ffmpeg:" in run.stderr


def test_the_bundle_holds_what_the_image_lacks_with_what_it_requires():
    bundle = _bundle_module()
    everything_but_sqlalchemy_and_alembic = {bundle.normal(n) for n in (
        "diffusers", "torchao", "pydantic", "celery", "redis", "standardwebhooks", "librosa", "soundfile", "av",
        "prometheus-client", "peft", "opencv-python-headless", "typing-extensions", "greenlet")}
    wanted = bundle.needed(everything_but_sqlalchemy_and_alembic)
    # alembic brings Mako (and Mako MarkupSafe); SQLAlchemy's greenlet is on the image here.
    assert set(wanted) == {"SQLAlchemy", "alembic", "Mako", "MarkupSafe"}, wanted
    assert all(version[0].isdigit() for version in wanted.values())
