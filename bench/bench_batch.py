"""Batch Inference on the offline tiny model: a batch of 8 prompts vs 8 single requests.

Everything runs through the real ``Studio`` (durable queue, worker, batched pipeline calls,
H.264 encode) in this process, without HTTP. Each row is timed from the first submit to the
last task completed; throughput = tasks / that time, and "vs singles" = throughput / the
singles row's. Rows:

  singles           8 x POST /generate equivalents (Studio.submit), one pipeline call each
  batch, mc=4/8     one batch, similarity caching off, max_concurrent 4 or 8 tasks per call
  batch, caching    one batch of 8 rewordings of one scene, similarity caching on (equal-prompt
                    text reuse and near-identical denoising-state reuse, studio.engine.state_cache)

    .venv/bin/python bench/bench_batch.py [--steps 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
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

from studio.config import Settings  # noqa: E402
from studio.core import Studio  # noqa: E402
from studio.engine.request import parse_request  # noqa: E402
from studio.genius.batch.schema import BatchRequest  # noqa: E402
from studio.genius.batch.submit import submit_batch  # noqa: E402

DISTINCT = ["a red fox running through snow", "sunset over ocean waves", "city skyline at night",
            "a cat sleeping on a sofa", "a dragon flying over mountains", "rain on a window",
            "a forest in autumn", "a car driving on a road"]
REWORDINGS = ["a red fox running through snow", "a red fox running in snow", "a red fox running through the snow",
              "a red fox running in the snow", "the red fox running through snow", "a red fox runs through snow",
              "a red fox running through deep snow", "a red fox running through snow, cinematic"]


def wait_all(studio: Studio, task_ids: list[str]) -> None:
    while not all(studio.store.get(t).is_terminal for t in task_ids):
        time.sleep(0.02)
    failed = [t for t in task_ids if studio.store.get(t).status != "completed"]
    if failed:
        raise RuntimeError(f"tasks failed: {failed}")


def run_singles(studio: Studio, settings: dict) -> float:
    started = time.perf_counter()
    ids = [studio.submit(parse_request({**settings, "prompt": p})).task_id for p in DISTINCT]
    wait_all(studio, ids)
    return time.perf_counter() - started


def run_batch(studio: Studio, settings: dict, prompts: list[str], max_concurrent: int, caching: bool) -> float:
    started = time.perf_counter()
    request = BatchRequest.model_validate({"prompts": prompts, "max_concurrent": max_concurrent,
                                           "enable_similarity_caching": caching, "settings": settings})
    reply = submit_batch(studio.services, request, owner="bench")
    wait_all(studio, reply.task_ids)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    settings = {"duration_seconds": 1.0, "fps": 12, "resolution": "480p", "num_inference_steps": args.steps,
                "seed": 5, "model": "tiny"}
    with tempfile.TemporaryDirectory() as data:
        studio = Studio(Settings(model="tiny", data_dir=Path(data)))
        studio.start()
        try:
            wait_all(studio, [studio.submit(parse_request({**settings, "prompt": "warm up"})).task_id])
            rows = {"singles": [], "batch, mc=4": [], "batch, mc=8": [], "batch, caching": []}
            for repeat in range(args.repeats):
                shape = {**settings, "seed": 100 + repeat}  # a fresh seed: no state cached from a repeat
                rows["singles"].append(run_singles(studio, shape))
                rows["batch, mc=4"].append(run_batch(studio, shape, DISTINCT, 4, caching=False))
                rows["batch, mc=8"].append(run_batch(studio, shape, DISTINCT, 8, caching=False))
                rows["batch, caching"].append(run_batch(studio, shape, REWORDINGS, 8, caching=True))
        finally:
            studio.stop()
    print(f"tiny model, 8 tasks of {settings['duration_seconds']:.0f} s 480p at {settings['fps']} fps, "
          f"{args.steps} steps; {platform.processor() or platform.machine()}, torch threads 1, "
          f"median of {args.repeats}\n")
    print("| run | seconds | tasks/s | vs singles |")
    print("|---|---|---|---|")
    base = 8 / statistics.median(rows["singles"])
    for name, times in rows.items():
        seconds = statistics.median(times)
        print(f"| {name} | {seconds:.2f} | {8 / seconds:.2f} | {8 / seconds / base:.2f}x |")


if __name__ == "__main__":
    main()
