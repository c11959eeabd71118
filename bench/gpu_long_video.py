"""A long video window by window on a GPU, at real size with random weights (issue 13, part 1):
seconds per generated second, per denoising step and per window, and peak GPU memory.

Prepared for a GPU session (GPU machines here cannot download weights; random weights run at
the real speed). The engine's own chain runs (``studio.engine.long_video.run_chain``): window 1
on a Wan2.1-T2V-1.3B-shaped ``WanPipeline``, the rest on a Wan2.1-VACE-1.3B-shaped
``WanVACEPipeline`` continuing from the last 5 frames, stitched, interpolated and encoded as the
worker does it. Stand-ins where the speed does not depend on the weights: the text encoder is a
one-layer UMT5 with the real 4096-wide output (prompt encoding is a one-off per window and
not what is measured), the tokenizer is the tiny model's. Transformers in bf16, the VAE in fp32,
as the loader runs them. ``--tiny`` runs the same code on the tiny configurations on the CPU,
to check the script.

    python bench/gpu_long_video.py                       # on a CUDA machine: 1.3B at 480p, 15 s
    python bench/gpu_long_video.py --duration 30 --steps 20
    python bench/gpu_long_video.py --tiny                # the same code on the CPU (a check)

Helios makes long clips in one autoregressive pass, not in windows: ``bench/gpu_helios.py`` measures it.
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

from bench_gpu_models import COMMON, TINY, WAN_1_3B, _cast  # noqa: E402  (bench/bench_gpu_models.py)


def _pipelines(tiny: bool, device: torch.device):
    """(T2V pipeline, VACE pipeline) with random weights, sharing the tokenizer, text encoder, VAE."""
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel,
                           WanVACEPipeline, WanVACETransformer3DModel)
    from transformers import UMT5Config, UMT5EncoderModel

    from studio.models.tiny import _build_tokenizer

    tokenizer = _build_tokenizer()
    base = {**COMMON, **(TINY if tiny else WAN_1_3B)}
    vace_layers = [0] if tiny else list(range(0, 30, 2))
    dtype = torch.float32 if tiny else torch.bfloat16
    with torch.device(device):
        text = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=base["text_dim"], d_kv=8, d_ff=256,
                                           num_layers=1, num_heads=base["text_dim"] // 8, is_encoder_decoder=False,
                                           pad_token_id=0, eos_token_id=1)).eval()
        vae_config = dict(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=0) if tiny else {}
        vae = AutoencoderKLWan(**vae_config).eval()
        t2v = WanTransformer3DModel(**base).eval()
        vace = WanVACETransformer3DModel(**base, vace_layers=vace_layers, vace_in_channels=96).eval()
    for transformer in (t2v, vace):
        _cast(transformer, dtype)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    shared = dict(tokenizer=tokenizer, text_encoder=text, vae=vae, scheduler=scheduler)
    return WanPipeline(transformer=t2v, **shared), WanVACEPipeline(transformer=vace, **shared)


class _TwoModels:
    """The loader's interface (``get``, ``loaded_model``, ``evict``) over the two built pipelines."""

    def __init__(self, loaded: dict):
        self.loaded, self.loaded_model = loaded, None

    def get(self, model_id: str, on_progress=None):
        self.loaded_model = model_id
        return self.loaded[model_id]

    def evict(self) -> None:
        self.loaded_model = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of video (default 15: 4 windows)")
    parser.add_argument("--fps", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="denoising steps per window (the seed's minimum: 10)")
    parser.add_argument("--tiny", action="store_true", help="tiny configurations on the CPU (checks the script)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device: real-size models need a GPU (use --tiny to check the script)")

    import studio.engine.long_video as long_video
    from studio.engine.plan import make_plan
    from studio.engine.request import GenerationRequest
    from studio.engine.t2v import QuietHooks
    from studio.models.catalog import CATALOG, get_spec
    from studio.models.loader import LoadedModel

    model = "tiny" if args.tiny else "wan2.1-t2v-1.3b"
    spec = CATALOG[model]
    plan = make_plan(GenerationRequest(prompt="a red fox running through snow at dusk", duration_seconds=args.duration,
                                       fps=args.fps, resolution="480p", num_inference_steps=args.steps,
                                       guidance_scale=5.0), spec, seed=0)
    t2v, vace = _pipelines(args.tiny, device)
    folder = Path(tempfile.mkdtemp())
    loaded = {model: LoadedModel(spec, t2v, device, "gpu", 0.0, folder / "t2v-preview.pt"),
              spec.continuation: LoadedModel(get_spec(spec.continuation), vace, device, "gpu", 0.0,
                                             folder / "vace-preview.pt")}
    long_video.unavailable_reason = lambda _spec: None  # the weights are here, built; nothing to download

    class Clock(QuietHooks):
        def __init__(self):
            self.steps: list[float] = []

        def on_step(self, step, total, step_seconds, preview):
            self.steps.append(step_seconds)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    hooks = Clock()
    started = time.perf_counter()
    output = long_video.run_chain(_TwoModels(loaded), loaded[model], plan, hooks, folder / "out.mp4",
                                  folder / "out.jpg")
    wall = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}; {model} + {spec.continuation}, random weights")
    print(f"{args.duration:g} s at {args.fps} fps, 480p ({plan.gen_width}x{plan.gen_height} generated), "
          f"{plan.passes} windows x {args.steps} steps, CFG 5\n")
    print("| windows | clip frames | out frames | wall s | s per generated s | s per step (median) | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    median = sorted(hooks.steps)[len(hooks.steps) // 2]
    print(f"| {plan.passes} | {plan.clip_frames} | {output.frames} | {wall:.1f} | {wall / args.duration:.2f} | "
          f"{median:.3f} | {peak:.1f} |")
    print("\n| window | model | generated frames | context | seconds |\n|---|---|---|---|---|")
    for w in output.windows:
        print(f"| {w['index']} | {w['model']} | {w['generated_frames']} | {w['context_frames']} | {w['seconds']:.1f} |")


if __name__ == "__main__":
    main()
