#!/usr/bin/env python3
"""A stand-in for the ``ffmpeg`` executable on a GPU machine without one, over PyAV.

The GPU machines lent for benchmarks reach no package registry, and everything they get travels
with the working tree (64 MiB a call): imageio-ffmpeg's ffmpeg build alone is 66 MB compressed,
PyAV's wheel (its own libav with libx264) half that. ``bench/gpu_session.sh`` points
``IMAGEIO_FFMPEG_EXE`` here, so the studio's ``Mp4Writer`` runs unchanged: this program takes the
one command it issues (raw RGB frames on stdin, H.264 yuv420p mp4 out) and encodes with the
same codec and settings. Any other command exits 2 naming what it does not support.
"""

from __future__ import annotations

import sys
from fractions import Fraction

#: Options taken with a value, and the values the studio's command gives (checked, not ignored).
FIXED = {"-v": None, "-f": None, "-vcodec": None, "-pix_fmt": None, "-i": "-", "-movflags": "+faststart"}
VALUED = {"-s", "-r", "-preset", "-crf", *FIXED}
FLAGS = {"-y", "-nostdin", "-an"}


def parse(argv: list[str]) -> dict[str, object]:
    """The encode's settings from the Mp4Writer command line; ``ValueError`` for anything else."""
    options: dict[str, list[str]] = {}
    args = iter(argv)
    output = None
    for arg in args:
        if arg in FLAGS:
            continue
        if arg in VALUED:
            options.setdefault(arg, []).append(next(args))
        elif arg.startswith("-") or output is not None:
            raise ValueError(f"unsupported argument {arg!r}")
        else:
            output = arg
    formats, codecs, pixel_formats = options.get("-f", []), options.get("-vcodec", []), options.get("-pix_fmt", [])
    if formats != ["rawvideo", "mp4"] or codecs != ["rawvideo", "libx264"] or pixel_formats != ["rgb24", "yuv420p"]:
        raise ValueError("only rawvideo rgb24 on stdin to libx264 yuv420p mp4 is supported")
    if options.get("-i") != ["-"] or output is None:
        raise ValueError("input must be stdin ('-i -') and an output path must be given")
    width, height = (int(n) for n in options["-s"][0].split("x"))
    return {"output": output, "width": width, "height": height, "rate": Fraction(options["-r"][0]),
            "codec_options": {"preset": options.get("-preset", ["medium"])[0], "crf": options.get("-crf", ["23"])[0]},
            "faststart": options.get("-movflags") == ["+faststart"]}


def encode(settings: dict, stdin) -> int:
    """Encode the raw frames on ``stdin``; returns how many there were."""
    import av
    import numpy as np

    width, height = settings["width"], settings["height"]
    frame_bytes = width * height * 3
    container = av.open(settings["output"], "w", format="mp4",
                        options={"movflags": "+faststart"} if settings["faststart"] else {})
    stream = container.add_stream("libx264", rate=settings["rate"])
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = settings["codec_options"]
    frames = 0
    while data := stdin.read(frame_bytes):
        if len(data) != frame_bytes:
            raise ValueError(f"a partial frame on stdin ({len(data)} of {frame_bytes} bytes)")
        rgb = np.frombuffer(data, np.uint8).reshape(height, width, 3)
        for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            container.mux(packet)
        frames += 1
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return frames


def main() -> int:
    try:
        settings = parse(sys.argv[1:])
    except (ValueError, StopIteration, KeyError) as error:
        print(f"pyav_ffmpeg: {error or 'a value is missing'}", file=sys.stderr)
        return 2
    try:
        encode(settings, sys.stdin.buffer)
    except Exception as error:
        print(f"pyav_ffmpeg: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
