"""Cost and memory of turning generated frames into a high-fps, high-resolution output (issue 13,
parts 2 and 3): optical-flow interpolation, upscaling, H.264 encoding.

Each configuration runs in a fresh child process (so its peak RSS is its own): synthetic
"generated" frames at a model's native size and frame rate (a textured scene with a moving
square, the shape of Wan2.1-1.3B's 832x480 at 16 fps by default) are pushed through
``studio.engine.output_frames.OutputFrames`` for the requested duration, fps and resolution,
and every output frame is encoded by ``Mp4Writer`` as a generation does. The table shows

  out frames       the frames of the delivered video
  wall s           interpolation + upscaling + encoding, in total
  s per out s      wall time per second of output video
  peak RSS MiB     the child's peak resident memory (ru_maxrss), which must not grow with the
                   duration: frames stream through, only the previous generated frame is held

    .venv/bin/python bench/bench_output_frames.py [--durations 2,10] [--resolution 4k] [--fps 24]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe as machine  # noqa: E402  (bench/machine.py)
from machine import run_children  # noqa: E402


def run_one(model: str, duration: float, fps: int, resolution: str) -> dict:
    """In this process: push the frames of one output through interpolation, upscaling and the encoder."""
    import numpy as np

    from studio.engine.output_frames import OutputFrames
    from studio.engine.plan import make_plan
    from studio.engine.request import GenerationRequest
    from studio.media.video import Mp4Writer
    from studio.models.catalog import CATALOG

    spec = CATALOG[model]
    plan = make_plan(GenerationRequest(prompt="bench", genre="none", duration_seconds=duration, fps=fps,
                                       resolution=resolution), spec, seed=0)
    # Every frame of the clip at the native rate (window-by-window generation delivers that
    # many on models with a continuation, studio.engine.long_video): the memory claim is about
    # long outputs.
    generated = plan.clip_frames
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (plan.gen_height // 8, plan.gen_width // 8, 3), dtype=np.uint8)
    import cv2

    background = cv2.resize(background, (plan.gen_width, plan.gen_height), interpolation=cv2.INTER_CUBIC)
    frames = OutputFrames(plan)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        with Mp4Writer(Path(folder) / "out.mp4", plan.out_width, plan.out_height, plan.fps) as writer:
            for i in range(generated):
                frame = background.copy()
                x = (20 + 4 * i) % (plan.gen_width - 80)
                frame[100:180, x:x + 64] = (240, 60, 40)
                for out in frames.push(frame):
                    writer.write(out)
            written = writer.frames_written
    wall = time.perf_counter() - started
    return {"model": model, "duration": duration, "fps": fps, "resolution": resolution,
            "generated": f"{generated} x {plan.gen_width}x{plan.gen_height} at {spec.native_fps} fps",
            "out": f"{written} x {plan.out_width}x{plan.out_height}", "out_frames": written,
            "temporal": plan.temporal, "spatial": plan.spatial, "wall_s": wall, "per_out_s": wall / duration,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="wan2.1-t2v-1.3b")
    parser.add_argument("--durations", default="2,10")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--resolution", default="4k")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.model, float(args.child), args.fps, args.resolution)))
        return
    rows = run_children(__file__, ["--model", args.model, "--fps", str(args.fps), "--resolution", args.resolution],
                        args.durations)
    print(f"machine: {machine()}")
    print(f"generated frames shaped like {args.model}'s; {args.resolution} at {args.fps} fps\n")
    print("| duration s | generated | output | time / space | wall s | s per out s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['duration']:g} | {r['generated']} | {r['out']} | {r['temporal']} / {r['spatial']} | "
              f"{r['wall_s']:.1f} | {r['per_out_s']:.2f} | {r['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
