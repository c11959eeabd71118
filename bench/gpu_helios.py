"""Helios on a GPU, at real size with random weights (issue 13, part 1): seconds per generated
second, per denoising step and per chunk, time to the first encoded chunk, and peak GPU memory.

Prepared for a GPU session (GPU machines here cannot download weights; random weights run at the
real speed). The engine's own autoregressive run (``studio.engine.chunked.run_chunked``) drives a
Helios-14B-shaped ``HeliosTransformer3DModel`` (Wan2.1-14B's blocks with Helios's history
patches) in ``HeliosPipeline`` (Helios-Base: the request's steps with guidance) or
``HeliosPyramidPipeline`` (Helios-Distilled: 2 steps at each of 3 stages, no guidance), with each
33-frame chunk decoded, interpolated and encoded as it finishes, as the worker does it.
Stand-ins where the speed does not depend on the weights: a one-layer UMT5 text encoder with the
real 4096-wide output (prompt encoding is a one-off) and the tiny model's tokenizer. The
transformer in bf16, the VAE in fp32, as the loader runs them. ``--tiny`` runs the same code on
the tiny Helios models on the CPU, to check the script.

    python bench/gpu_helios.py                          # on a CUDA machine: Helios-Distilled, 20 s at 24 fps
    python bench/gpu_helios.py --model helios-base --duration 10 --steps 20
    python bench/gpu_helios.py --tiny                   # the same code on the CPU (a check)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_gpu_models import (  # noqa: E402  (bench/bench_gpu_models.py)
    COMMON,
    WAN_14B,
    bf16_transformer,
    standin_text_encoder,
)

TINY_OF = {"helios-base": "tiny-helios", "helios-distilled": "tiny-helios-distilled"}
HELIOS = dict(rope_dim=(44, 42, 42), has_multi_term_memory_patch=True, guidance_cross_attn=True,
              zero_history_timestep=True)


def _real_pipeline(model: str, device: torch.device):
    """A Helios-14B-shaped pipeline of ``model``'s class with random weights on ``device``."""
    from diffusers import (
        AutoencoderKLWan,
        HeliosDMDScheduler,
        HeliosPipeline,
        HeliosPyramidPipeline,
        HeliosScheduler,
        HeliosTransformer3DModel,
    )

    from studio.models.tiny import _build_tokenizer

    tokenizer = _build_tokenizer()
    transformer = bf16_transformer(HeliosTransformer3DModel, {**COMMON, **WAN_14B, **HELIOS}, device)
    text = standin_text_encoder(tokenizer, device)
    with torch.device(device):
        vae = AutoencoderKLWan().eval()
    shared = dict(tokenizer=tokenizer, text_encoder=text, vae=vae, transformer=transformer)
    if model == "helios-distilled":
        return HeliosPyramidPipeline(scheduler=HeliosDMDScheduler(use_dynamic_shifting=True), is_distilled=True,
                                     **shared)
    return HeliosPipeline(scheduler=HeliosScheduler(stage_range=[0, 1], stages=1, use_dynamic_shifting=True),
                          **shared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("helios-distilled", "helios-base"), default="helios-distilled")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of video (default 20: 15 chunks)")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--steps", type=int, default=10, help="helios-base: steps per chunk (the seed's minimum: 10)")
    parser.add_argument("--tiny", action="store_true", help="the tiny Helios models on the CPU (checks the script)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device: real-size models need a GPU (use --tiny to check the script)")

    from studio.engine.chunked import run_chunked
    from studio.engine.plan import make_plan
    from studio.engine.request import GenerationRequest
    from studio.engine.t2v import QuietHooks
    from studio.models.catalog import get_spec
    from studio.models.loader import LoadedModel
    from studio.models.tiny import build_tiny_helios_distilled_pipeline, build_tiny_helios_pipeline

    model = TINY_OF[args.model] if args.tiny else args.model
    spec = get_spec(model)
    plan = make_plan(GenerationRequest(prompt="a red fox running through snow at dusk", duration_seconds=args.duration,
                                       fps=args.fps, resolution="480p", num_inference_steps=args.steps,
                                       guidance_scale=5.0), spec, seed=0)
    if args.tiny:
        pipe = (build_tiny_helios_distilled_pipeline if spec.chunked.pyramid_steps else build_tiny_helios_pipeline)()
    else:
        pipe = _real_pipeline(model, device)
    pipe.set_progress_bar_config(disable=True)
    folder = Path(tempfile.mkdtemp())
    loaded = LoadedModel(spec, pipe, device, "gpu", 0.0, folder / "preview.npz")

    class Clock(QuietHooks):
        def __init__(self):
            self.steps: list[float] = []
            self.first_chunk_at: float | None = None

        def on_step(self, step, total, step_seconds, preview):
            self.steps.append(step_seconds)

        def on_encoded(self, frames_done, total):
            if self.first_chunk_at is None:
                self.first_chunk_at = time.perf_counter()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    hooks = Clock()
    started = time.perf_counter()
    output = run_chunked(loaded, plan, hooks, folder / "out.mp4", folder / "out.jpg")
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}; {model}, random weights")
    print(f"{args.duration:g} s at {args.fps} fps ({plan.gen_width}x{plan.gen_height} generated at "
          f"{spec.native_fps} fps), {plan.chunks} chunks, {plan.total_steps} steps, guidance {plan.guidance_scale:g}\n")
    print("| chunks | clip frames | out frames | wall s | s per generated s | generated fps | first chunk s "
          "| s per step (median) | peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    median = sorted(hooks.steps)[len(hooks.steps) // 2]
    clip_seconds = plan.clip_frames / spec.native_fps
    print(f"| {plan.chunks} | {plan.clip_frames} | {output.frames} | {wall:.1f} | {wall / clip_seconds:.2f} | "
          f"{plan.clip_frames / wall:.2f} | {hooks.first_chunk_at - started:.1f} | {median:.3f} | {peak:.1f} |")
    print("\n| chunk | frames | seconds |\n|---|---|---|")
    for chunk in output.chunks:
        print(f"| {chunk['index']} | {chunk['frames']} | {chunk['seconds']:.2f} |")


if __name__ == "__main__":
    main()
