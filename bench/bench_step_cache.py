"""Step cache ("speculative decoder") on the offline tiny model: off vs balanced vs fast.

For one request (same prompt, seed and size for every row), each configuration runs --runs
times after one warm-up, and the table shows medians of:

  denoise     sum of the denoising step times (step clock as in the engine: from the first
              transformer pass, callback time excluded)
  reused      transformer passes served from the cache / all passes (tail block not run)
  speedup     self-reported speedup_factor (studio.genius.decoder.stats: uncached estimate / actual)
  vs off      measured: median denoise of `off` / median denoise of this row
  PSNR        of the decoded video (VAE output in [0, 1], before H.264) against `off`'s
              (inf = identical)

The FirstBlockCache rows run through ``studio.genius.step_cache.apply`` exactly as the engine does.
With --alternatives, two other diffusers caches run on the same harness for comparison:
MagCache (ratios calibrated on this model and step count with ``calibrate=True``, default
threshold 0.06) and TaylorSeer lite (blocks skipped, ``proj_out`` Taylor-predicted, interval 3).

    .venv/bin/python bench/bench_step_cache.py [--runs 5] [--steps 20 50] [--alternatives]

The tiny model is untrained and has 2 blocks, so skipping the "remaining blocks" saves at most
one block of two per pass while the per-pass overhead (patch embedding, text projection,
rotary tables, unpatchify) stays: expect modest speedups here; see perf_anchors.md for the
real models.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from studio.engine.plan import make_plan  # noqa: E402
from studio.engine.request import parse_request  # noqa: E402
from studio.engine import step_cache  # noqa: E402
from studio.models.catalog import CATALOG  # noqa: E402
from studio.models.tiny import ensure_tiny_model  # noqa: E402


def request_body(steps: int) -> dict:
    return {"prompt": "a lighthouse in a storm, waves crashing", "duration_seconds": 2.0, "fps": 12,
            "resolution": "480p", "num_inference_steps": steps, "seed": 1234, "model": "tiny"}


class StepClock:
    """The engine's step clock: starts at the first transformer pass, one entry per step."""

    def __init__(self):
        self.started: float | None = None
        self.steps: list[float] = []

    def pre_hook(self, module, args):
        if self.started is None:
            self.started = time.perf_counter()

    def __call__(self, pipe, i, t, kwargs):
        now = time.perf_counter()
        self.steps.append(now - self.started)
        self.started = now
        return {}


def run_once(pipe, plan, setup) -> dict:
    clock = StepClock()
    tail = [0]
    handles = [pipe.transformer.register_forward_pre_hook(clock.pre_hook),
               pipe.transformer.blocks[-1].ffn.register_forward_hook(lambda *a: tail.__setitem__(0, tail[0] + 1))]
    passes = [0]
    handles.append(pipe.transformer.register_forward_pre_hook(lambda *a: passes.__setitem__(0, passes[0] + 1)))
    try:
        with torch.inference_mode(), setup(pipe) as recorder:
            latents = pipe(prompt=plan.prompt, negative_prompt=plan.negative_prompt, height=plan.gen_height,
                           width=plan.gen_width, num_frames=plan.gen_frames,
                           num_inference_steps=plan.num_inference_steps, guidance_scale=plan.guidance_scale,
                           generator=torch.Generator().manual_seed(plan.seed), output_type="latent",
                           callback_on_step_end=clock).frames
    finally:
        for handle in handles:
            handle.remove()
    with torch.inference_mode():
        video = decode(pipe, latents)
    stats = recorder.stats(clock.steps) if isinstance(recorder, step_cache.DecoderRecorder) else None
    return {"denoise": sum(clock.steps), "passes": passes[0], "computed": tail[0], "video": video, "stats": stats}


def decode(pipe, latents: torch.Tensor) -> np.ndarray:
    vae = pipe.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    video = vae.decode(latents / std + mean, return_dict=False)[0]
    return pipe.video_processor.postprocess_video(video, output_type="np")[0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def level_setup(level: str):
    return lambda pipe: step_cache.apply(pipe, level)


def config_setup(config):
    @contextlib.contextmanager
    def setup(pipe):
        pipe.transformer.enable_cache(config)
        try:
            yield None
        finally:
            pipe.transformer.disable_cache()
    return setup


def calibrate_mag_ratios(pipe, plan) -> list[float]:
    from diffusers import MagCacheConfig

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_once(pipe, plan, config_setup(MagCacheConfig(calibrate=True, num_inference_steps=plan.num_inference_steps)))
    lists = [ast.literal_eval(line) for line in out.getvalue().splitlines() if line.startswith("[") and "]" in line
             and not line.startswith("[MagCache]")]
    return lists[0]  # the cond branch (sequential CFG logs cond first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--alternatives", action="store_true", help="also MagCache and TaylorSeer lite")
    args = parser.parse_args()

    from diffusers import MagCacheConfig, TaylorSeerCacheConfig, WanPipeline

    torch.set_num_threads(1)  # what the service uses for the tiny model on CPU
    with tempfile.TemporaryDirectory() as tmp:
        pipe = WanPipeline.from_pretrained(ensure_tiny_model(Path(tmp) / "models"), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"1 intra-op thread; medians of {args.runs} runs after a warm-up")
    for steps in args.steps:
        plan = make_plan(parse_request(request_body(steps)), CATALOG["tiny"], seed=1234)
        rows = [(level, level_setup(level)) for level in ("off", "balanced", "fast")]
        if args.alternatives:
            ratios = calibrate_mag_ratios(pipe, plan)
            rows += [
                ("magcache 0.06", config_setup(MagCacheConfig(threshold=0.06, num_inference_steps=steps,
                                                              mag_ratios=ratios))),
                ("taylorseer-lite i3", config_setup(TaylorSeerCacheConfig(cache_interval=3, use_lite_mode=True,
                                                                          taylor_factors_dtype=torch.float32))),
            ]
        print(f"\nrequest: tiny, {plan.gen_width}x{plan.gen_height}x{plan.gen_frames} generated, {steps} steps, "
              f"CFG {plan.guidance_scale}, seed {plan.seed}")
        print(f"| {'config':<19} | denoise (s) | reused passes | speedup (self-reported) | vs off (measured) "
              f"| PSNR vs off (dB) |")
        print("|---|---|---|---|---|---|")
        # Round-robin over the rows, so a change in machine load hits every row alike.
        for _name, setup in rows:
            run_once(pipe, plan, setup)  # warm-up
        runs = {name: [] for name, _ in rows}
        for _ in range(args.runs):
            for name, setup in rows:
                runs[name].append(run_once(pipe, plan, setup))
        reference = None
        off_denoise = None
        for name, _setup in rows:
            results = runs[name]
            denoise = statistics.median(r["denoise"] for r in results)
            if reference is None:
                reference, off_denoise = results[0]["video"], denoise
            quality = statistics.median(psnr(r["video"], reference) for r in results)
            reused = results[0]["passes"] - results[0]["computed"]
            speedups = [r["stats"].speedup_factor for r in results if r["stats"] is not None]
            speedup = f"{statistics.median(speedups):.3f}" if speedups else "n/a"
            print(f"| {name:<19} | {denoise:.3f} | {reused}/{results[0]['passes']} | {speedup} | "
                  f"{off_denoise / denoise:.3f} | {quality:.2f} |")


if __name__ == "__main__":
    main()
