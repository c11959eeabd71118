"""Stack overhead for the offline tiny model on this machine.

Compares, for one request (median of --runs after a warm-up):
  raw     the plain diffusers WanPipeline call (denoise + VAE decode, output_type="np")
  encode  resizing those frames to the output size and writing the H.264 mp4 (our writer)
  stack   the same request through the whole service: POST /v1/generate -> websocket until
          'complete' -> GET /v1/result -> GET the mp4 bytes, against `python app.py` in a
          separate process
and prints overhead = stack - (raw + encode) against the goal: under 10% of (raw + encode)
plus 200 ms.

    .venv/bin/python bench/bench_stack.py [--runs 5] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import torch  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from studio.engine.plan import make_plan  # noqa: E402
from studio.engine.request import parse_request  # noqa: E402
from studio.media.video import Mp4Writer, resize  # noqa: E402
from studio.models.catalog import CATALOG  # noqa: E402
from studio.models.tiny import ensure_tiny_model  # noqa: E402


def request_body(steps: int) -> dict:
    return {"prompt": "a lighthouse in a storm, waves crashing", "duration_seconds": 2.0, "fps": 12,
            "resolution": "480p", "num_inference_steps": steps, "seed": 1234, "model": "tiny"}


def time_raw_and_encode(body: dict, runs: int, workdir: Path) -> tuple[list[float], list[float]]:
    from diffusers import WanPipeline

    torch.set_num_threads(1)  # what the service uses for the tiny model on CPU
    plan = make_plan(parse_request(body), CATALOG["tiny"], seed=body["seed"])
    pipe = WanPipeline.from_pretrained(ensure_tiny_model(workdir / "models"), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    raw, encode = [], []
    for i in range(runs + 1):
        started = time.perf_counter()
        video = pipe(prompt=plan.prompt, negative_prompt=plan.negative_prompt, height=plan.gen_height,
                     width=plan.gen_width, num_frames=plan.gen_frames, num_inference_steps=plan.num_inference_steps,
                     guidance_scale=plan.guidance_scale, output_type="np",
                     generator=torch.Generator().manual_seed(plan.seed)).frames[0]
        decoded = time.perf_counter()
        frames = (video * 255).round().astype("uint8")
        with Mp4Writer(workdir / "raw.mp4", plan.out_width, plan.out_height, plan.fps) as writer:
            for j in range(plan.out_frames):
                writer.write(resize(frames[plan.source_index(j)], plan.out_width, plan.out_height))
        encoded = time.perf_counter()
        if i:  # the first run is warm-up
            raw.append(decoded - started)
            encode.append(encoded - decoded)
    return raw, encode


BENCH_KEY = "bench-key"  # every /v1 route needs a key; the server is started accepting this one
AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}


def start_server(workdir: Path, port: int) -> subprocess.Popen:
    # Limits high enough that the bench's own submits are never refused (the default allows 5 per 10 s).
    env = {**os.environ, "ECHOEL_API_KEYS": BENCH_KEY,
           "ECHOEL_RATE_LIMITS": "generate=1000 per 1 second;default=10000 per 1 second"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--model", "tiny",
                             "--data-dir", str(workdir / "server")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", headers=AUTH, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def time_stack(body: dict, runs: int, port: int) -> list[float]:
    base = f"http://127.0.0.1:{port}"
    times = []
    with httpx.Client(base_url=base, headers=AUTH, timeout=120) as http:
        for i in range(runs + 1):
            started = time.perf_counter()
            task_id = http.post("/v1/generate", json=body).json()["task_id"]
            with connect(f"ws://127.0.0.1:{port}/v1/ws/{task_id}", additional_headers=AUTH) as ws:
                for raw in ws:
                    message = json.loads(raw)
                    if message["type"] in ("complete", "error", "cancelled"):
                        break
            assert message["type"] == "complete", message
            result = http.get(f"/v1/result/{task_id}").json()
            video = http.get(result["video_url"]).content
            assert len(video) > 1000
            if i:
                times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--port", type=int, default=7999)
    args = parser.parse_args()
    body = request_body(args.steps)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        raw, encode = time_raw_and_encode(body, args.runs, workdir)
        server = start_server(workdir, args.port)
        try:
            stack = time_stack(body, args.runs, args.port)
        finally:
            server.terminate()
            server.wait(30)

    med = statistics.median
    baseline = med(raw) + med(encode)
    overhead = med(stack) - baseline
    budget = 0.10 * baseline + 0.200
    plan = make_plan(parse_request(body), CATALOG["tiny"], seed=body["seed"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.platform()}, "
          f"torch {torch.__version__}")
    print(f"request: tiny, generated {plan.gen_width}x{plan.gen_height}x{plan.gen_frames}, "
          f"output {plan.out_width}x{plan.out_height}x{plan.out_frames} @ {plan.fps} fps, {args.steps} steps, "
          f"CFG {plan.guidance_scale}; median of {args.runs} runs after one warm-up")
    print()
    print("| measure | median s | min s | max s |")
    print("|---|---|---|---|")
    for name, values in (("raw diffusers pipeline call (denoise + decode)", raw),
                         ("encode (resize + H.264 mp4)", encode),
                         ("full stack: REST submit -> ws complete -> result -> mp4 bytes", stack)):
        print(f"| {name} | {med(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    print()
    verdict = "meets" if overhead <= budget else "MISSES"
    print(f"stack overhead: {overhead * 1000:.0f} ms over raw + encode ({baseline:.3f} s); "
          f"goal < {budget * 1000:.0f} ms (10% + 200 ms): {verdict} the goal")


if __name__ == "__main__":
    main()
