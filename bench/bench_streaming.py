"""Cost of live previews and Progressive Streaming per denoising step, on the tiny model.

One request (same prompt, seed and size) runs through the engine (``run_group``) in three
modes, --runs times each after a warm-up; the table shows medians of

  step ms           the engine's step clock (transformer passes only), per step
  callback ms/step  denoising wall time not on the step clock (step callback: previews,
                    frame JPEGs; plus the fixed prompt encoding), per step
  overhead ms/step  callback ms/step minus the `none` row's: what previews / streaming add
  decode+encode s   VAE decode, resize, H.264 encode (+ final-frame JPEGs when streaming)
  frames published  JPEGs written to the frame board (preview + final)

Modes: `none` (no preview at all), `preview` (the middle frame's denoised-estimate preview
every step, as every task gets), `streaming` (a stream session: every latent frame's preview
every step and every output frame as a final JPEG, on a FrameBoard).

    .venv/bin/python bench/bench_streaming.py [--runs 5] [--steps 20] [--resolution 480p]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.engine.plan import make_plan  # noqa: E402
from studio.engine.request import parse_request  # noqa: E402
from studio.engine.t2v import QuietHooks, run_group  # noqa: E402
from studio.media.frame_boards import FrameBoard  # noqa: E402
from studio.models.catalog import get_spec  # noqa: E402
from studio.models.loader import ModelCache  # noqa: E402


class Hooks(QuietHooks):
    def __init__(self, board: FrameBoard | None):
        self.board = board
        self.published = 0

    def streaming(self) -> bool:
        return self.board is not None

    def on_stream_frame(self, frame_index, quality, rgb, progress) -> None:
        self.board.put(frame_index, quality, rgb, progress)
        self.published += 1


def run(model, plan, mode: str, folder: Path) -> dict:
    board = FrameBoard("bench", folder / f"board-{time.monotonic_ns()}") if mode == "streaming" else None
    hooks = Hooks(board)
    interval = math.inf if mode == "none" else 0.0  # inf: only the first and last step preview
    started = time.perf_counter()
    output = run_group(model, [plan], [hooks], [folder / "v.mp4"], [folder / "t.jpg"],
                       min_preview_interval=interval)[0]
    total = time.perf_counter() - started
    return {"step": sum(output.step_seconds) / len(output.step_seconds),
            "callback": (output.denoise_seconds - sum(output.step_seconds)) / len(output.step_seconds),
            "decode": output.decode_encode_seconds, "total": total, "published": hooks.published}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--resolution", default="480p")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = ModelCache(folder / "models").get("tiny")
        request = parse_request({"prompt": "a red fox running through snow", "duration_seconds": 2.0, "fps": 12,
                                 "resolution": args.resolution, "num_inference_steps": args.steps, "seed": 3})
        plan = make_plan(request, get_spec("tiny"), seed=3)
        run(model, plan, "streaming", folder)  # warm-up
        results = {mode: [run(model, plan, mode, folder) for _ in range(args.runs)]
                   for mode in ("none", "preview", "streaming")}
    print(f"tiny model, {plan.gen_width}x{plan.gen_height} x {plan.gen_frames} frames generated, "
          f"{plan.out_width}x{plan.out_height} x {plan.out_frames} out, {args.steps} steps; "
          f"{platform.processor() or platform.machine()}, torch threads 1, median of {args.runs}\n")
    print("| mode | step ms | callback ms/step | overhead ms/step | decode+encode s | frames published |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(r["callback"] for r in results["none"]) * 1000
    for mode, runs in results.items():
        step = statistics.median(r["step"] for r in runs) * 1000
        callback = statistics.median(r["callback"] for r in runs) * 1000
        decode = statistics.median(r["decode"] for r in runs)
        print(f"| {mode} | {step:.1f} | {callback:.1f} | {callback - base:+.1f} | {decode:.2f} | "
              f"{runs[0]['published']} |")


if __name__ == "__main__":
    main()
