"""Per-frame cost of each classical video path at 480p, and the peak memory of a long
streamed interpolation.

Part 1 (``--part speed``): a synthetic 854x480 clip (smooth textured background, a textured
object moving 6 px per frame; a face photo for lip-sync) runs through each classical path of
the video-side features; the table shows output frames per second (median of --runs, after a
warm-up), the algorithm alone (no decode/encode).

Part 2 (``--part memory``): a 1280x720 clip of --seconds seconds at 24 fps is generated frame
by frame, interpolated x2 (``studio.genius.v2v.interpolation.interpolate``, streaming) and encoded to H.264
(``Mp4Writer``); peak resident memory (``ru_maxrss``) of that child process is reported, with
the memory the frames would take if held at once for comparison.

    .venv/bin/python bench/bench_video_paths.py [--part speed|memory|both] [--runs 3] [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

W, H = 854, 480


def clip(frames: int, width: int = W, height: int = H, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    background = cv2.resize(rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8), (width, height),
                            interpolation=cv2.INTER_CUBIC)
    patch = cv2.resize(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8), (96, 96), interpolation=cv2.INTER_NEAREST)
    out = []
    for i in range(frames):
        frame = background.copy()
        x = 100 + 6 * i
        frame[180:276, x:x + 96] = patch
        out.append(frame)
    return out


def face_clip(frames: int) -> list[np.ndarray]:
    from skimage import data

    face = cv2.resize(data.astronaut(), (H, H))
    frame = np.zeros((H, W, 3), np.uint8)
    frame[:, (W - H) // 2:(W - H) // 2 + H] = face
    return [frame.copy() for _ in range(frames)]


def speech(seconds: float, sr: int = 16000) -> np.ndarray:
    """A voiced, syllable-rate modulated tone: enough for the viseme analysis to do its work."""
    t = np.arange(int(seconds * sr)) / sr
    envelope = 0.5 * (1 + np.sign(np.sin(2 * np.pi * 3 * t)))
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 700, 1200, 2400), start=1))
    return (0.3 * envelope * voice).astype(np.float32)


def paths(n: int):
    from studio.genius.consistency import tracker as consistency
    from studio.genius.consistency.reference import EntityModel
    from studio.genius.inpaint import classical as inpaint
    from studio.genius.lipsync import classical as lipsync
    from studio.genius.scene import transitions
    from studio.genius.v2v import modes as v2v

    frames = clip(n)
    reference = cv2.resize(clip(1, seed=3)[0], (320, 180))
    box = (100, 180, 96, 96)
    entity = EntityModel.from_reference(frames[0][180:276, 100:196].copy(), "object", "patch")
    faces = face_clip(n)
    audio = speech(n / 24)
    half = n // 2
    return {
        "inpaint remove": lambda: inpaint.inpaint("remove", frames, bbox=box, feather_radius=8)[0],
        "inpaint blend (feather)": lambda: inpaint.inpaint("blend", frames, bbox=box, feather_radius=8,
                                                           overlay=reference)[0],
        "inpaint background": lambda: inpaint.inpaint("background", frames, bbox=box, feather_radius=4,
                                                      background=reference)[0],
        "inpaint extend to 1280x720": lambda: inpaint.inpaint("extend", frames, target_size=(1280, 720))[0],
        "v2v interpolation x2": lambda: list(v2v.transform("interpolation", frames, 24, factor=2)[0]),
        "v2v upscale x2": lambda: list(v2v.transform("upscale", frames, 24, scale=2)[0]),
        "v2v enhancement": lambda: list(v2v.transform("enhancement", frames, 24, strength=0.5)[0]),
        "v2v colorization": lambda: list(v2v.transform("colorization", [cv2.cvtColor(cv2.cvtColor(
            f, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for f in frames], 24, reference=reference)[0]),
        "v2v style transfer": lambda: list(v2v.transform("style_transfer", frames, 24, reference=reference)[0]),
        "v2v motion transfer": lambda: list(v2v.transform("motion_transfer", frames, 24, reference=reference)[0]),
        "lip-sync (analysis + mouth)": lambda: list(lipsync.lipsync(faces, 24, audio, 16000)[0]),
        "transition crossfade": lambda: transitions.render_transition("crossfade", frames[:half], frames[half:], half),
        "transition morph": lambda: transitions.render_transition("morph", frames[:half], frames[half:], half),
        "consistency track (detect every 5)": lambda: consistency.track(frames, {"patch": entity}),
    }


def speed(runs: int, n: int) -> None:
    print(f"{W}x{H}, {n}-frame clips; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, median of {runs} after a warm-up; output frames per second\n")
    print("| path | frames/s | ms/frame |")
    print("|---|---|---|")
    for name, work in paths(n).items():
        work()  # warm-up: imports, JIT (librosa.lpc), caches
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            out = work()
            times.append(time.perf_counter() - started)
        produced = len(out) if isinstance(out, list) and name != "consistency track (detect every 5)" else n
        seconds = statistics.median(times)
        print(f"| {name} | {produced / seconds:.1f} | {1000 * seconds / produced:.1f} |")


def interpolate_child(seconds: float, out: str) -> None:
    """Run in a child process: the streamed 720p interpolation, then report ru_maxrss."""
    from studio.genius.v2v import interpolation as v2v
    from studio.media.video import Mp4Writer

    width, height, fps = 1280, 720, 24
    rng = np.random.default_rng(1)
    background = cv2.resize(rng.integers(0, 255, (45, 80, 3), dtype=np.uint8), (width, height),
                            interpolation=cv2.INTER_CUBIC)

    def source():
        for i in range(int(seconds * fps)):
            frame = np.roll(background, 4 * i, axis=1)
            yield frame

    started = time.perf_counter()
    written = 0
    with Mp4Writer(Path(out), width, height, 2 * fps) as writer:
        for frame in v2v.interpolate(source(), source_fps=fps, factor=2):
            writer.write(frame)
            written += 1
    print(f"{written} {time.perf_counter() - started:.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


def memory(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, __file__, "--child", str(seconds), str(Path(tmp) / "out.mp4")]
        written, wall, peak_kb = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
    held = int(written) * 1280 * 720 * 3 / 2**30
    print(f"\n{seconds:.0f} s of 1280x720 at 24 fps interpolated x2 to 48 fps and encoded (streamed): "
          f"{written} frames in {float(wall):.0f} s, peak RSS {int(peak_kb) / 1024:.0f} MiB "
          f"(the output frames held at once would be {held:.1f} GiB)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        interpolate_child(float(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["speed", "memory", "both"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    if args.part in ("speed", "both"):
        speed(args.runs, args.frames)
    if args.part in ("memory", "both"):
        memory(args.seconds)


if __name__ == "__main__":
    main()
