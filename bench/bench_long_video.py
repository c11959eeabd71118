"""Long videos generated window by window (issue 13, part 1): time per output second, peak
memory against duration, and time to the first streamed frame.

Each duration runs in a fresh child process (so its peak RSS is its own) through the engine's
chain, ``studio.engine.long_video.run_chain``, exactly as the worker runs a long request: the
first window on the text-to-video model, the rest on its VACE continuation model, stitched,
interpolated to the requested fps, upscaled to the requested size and encoded as the frames come.
The tiny offline models by default (CPU); ``--model wan2.1-t2v-1.3b`` on a CUDA machine with the
weights cached. The table shows

  windows           model passes (each ``--steps`` denoising steps)
  out frames        frames of the delivered video
  wall s            the whole run, model loads excluded (each child loads its models first)
  s per out s       wall time per second of output video
  first frame s     from the start of the run to the first frame handed to a stream (the first
                    window's first denoising preview): what a viewer waits, whatever the duration
  peak RSS MiB      the child's peak resident memory (ru_maxrss): it must not grow with the
                    duration, because one window's frames are held at a time

    .venv/bin/python bench/bench_long_video.py [--durations 10,30,60] [--fps 24] [--resolution 480p]
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


def run_one(model: str, duration: float, fps: int, resolution: str, steps: int) -> dict:
    """In this process: one long request through the chain; its figures."""
    from studio.engine.long_video import run_chain
    from studio.engine.plan import make_plan
    from studio.engine.request import GenerationRequest
    from studio.engine.t2v import QuietHooks
    from studio.models.catalog import CATALOG
    from studio.models.loader import ModelCache

    class FirstFrameClock(QuietHooks):
        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.first_frame: float | None = None

        def streaming(self) -> bool:
            return True

        def on_stream_frame(self, frame_index, quality, rgb, progress) -> None:
            if self.first_frame is None:
                self.first_frame = time.perf_counter() - self.started

    spec = CATALOG[model]
    plan = make_plan(GenerationRequest(prompt="a red fox running through snow at dusk", duration_seconds=duration,
                                       fps=fps, resolution=resolution, num_inference_steps=steps), spec, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        models = ModelCache(Path(folder) / "models")
        models.get(plan.continuation_model or model)  # both models built/downloaded before the clock starts
        first = models.get(model)
        hooks = FirstFrameClock()
        output = run_chain(models, first, plan, hooks, Path(folder) / "out.mp4", Path(folder) / "out.jpg")
        wall = time.perf_counter() - hooks.started - output.continuation_load_seconds
    return {"model": model, "duration": duration, "fps": fps, "resolution": resolution, "windows": plan.passes,
            "out_frames": output.frames, "wall_s": wall, "per_out_s": wall / duration,
            "first_frame_s": hooks.first_frame, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--durations", default="10,30,60")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--resolution", default="480p")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.model, float(args.child), args.fps, args.resolution, args.steps)))
        return
    rows = run_children(__file__, ["--model", args.model, "--fps", str(args.fps), "--resolution", args.resolution,
                                   "--steps", str(args.steps)], args.durations)
    print(f"machine: {machine()}")
    print(f"{args.model}, {args.resolution} at {args.fps} fps, {args.steps} steps per window\n")
    print("| duration s | windows | out frames | wall s | s per out s | first frame s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['duration']:g} | {r['windows']} | {r['out_frames']} | {r['wall_s']:.1f} | {r['per_out_s']:.2f} | "
              f"{r['first_frame_s']:.2f} | {r['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
