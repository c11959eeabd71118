"""Our engine against plain diffusers on the same request, at real size with random weights
(issue 15, part 1): seconds per step, end to end, the engine's overhead, peak GPU memory, VAE
decode and the previews' cost per step.

Prepared for a GPU session (GPU machines here cannot download weights; random weights run at the
real speed). Per model, runs of one request (same shapes, steps and guidance):

- **plain**: ``WanPipeline.__call__`` as the diffusers docs show it (eager, default attention,
  fp32 VAE), then ``diffusers.utils.export_to_video``. Steps are timed by ``callback_on_step_end``;
  "decode" is the time from the last step to the frames (VAE decode and postprocessing).
- **engine**: the studio itself. ``Studio.submit`` queues the request, the worker thread claims
  it and runs the engine (previews every step, events, the task row, decode streamed into the
  encoder). Per step and decode come from the task's metadata; end to end is the task's claim to
  its end. "preview" is the per-step time the engine spends beyond the denoising step itself.
  Three engine runs: with plain's settings (the engine's own overhead), then with the default
  speed settings (``studio.models.speed``: compile, attention, VAE) twice, the first paying the
  compile and the second warm (other seeds: the state cache would resume an equal request).
  On a GPU that computes in fp8 (8.9+), a last run with fp8 layers (``ECHOEL_FP8``'s setting;
  compile is kept, its blocks recompile) with the layers' measured error in its name.

Beside each run, what the cost model (``studio.models.cost``) predicts for it from its priors
(the H200 anchor and its speed-up for the run's settings; memory without the stand-in text
encoder): a GPU session's table shows at once how far the priors are off (issue 15, part 3).

The pipeline is built once per model and shared by both runs (the engine adopts it as its
resident model). Stand-in where the speed does not depend on the weights: a one-layer UMT5 text
encoder with the real 4096-wide output (prompt encoding is a one-off), and the tiny model's
tokenizer. Transformer in bf16, VAE in fp32, as the loader runs them. ``--tiny`` runs the same
code on the tiny model on the CPU, to check the script.

    python bench/bench_gpu_engine.py                      # CUDA: 1.3B 480p, TI2V-5B 720p, 14B 480p
    python bench/bench_gpu_engine.py --models wan2.1-t2v-1.3b --steps 50
    python bench/bench_gpu_engine.py --tiny               # the same code on the CPU (a check)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_gpu_models import (  # noqa: E402  (bench/bench_gpu_models.py)
    COMMON,
    WAN_1_3B,
    WAN_14B,
    bf16_transformer,
    standin_text_encoder,
)

PROMPT = "a red fox running through snow at dusk, cinematic lighting"
WAN_5B = dict(num_attention_heads=24, attention_head_dim=128, ffn_dim=14336, num_layers=30,
              in_channels=48, out_channels=48)
# Wan2.2's VAE (Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json; random latent statistics).
WAN22_VAE = dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                 temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                 patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                 latents_mean=[0.0] * 48, latents_std=[1.0] * 48)


@dataclass(frozen=True)
class Case:
    """A catalog model, the request it is benchmarked with, and its real-size shapes."""

    model: str
    resolution: str
    duration_seconds: float
    transformer: dict
    vae: dict
    expand_timesteps: bool = False


CASES = {
    "wan2.1-t2v-1.3b": Case("wan2.1-t2v-1.3b", "480p", 5.0, {**COMMON, **WAN_1_3B}, {}),
    "wan2.2-ti2v-5b": Case("wan2.2-ti2v-5b", "720p", 5.0, {**COMMON, **WAN_5B}, WAN22_VAE, expand_timesteps=True),
    "wan2.1-t2v-14b": Case("wan2.1-t2v-14b", "480p", 5.0, {**COMMON, **WAN_14B}, {}),
}


def real_pipeline(case: Case, device: torch.device):
    """``case``'s WanPipeline at real size with random weights on ``device``."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    from studio.models.tiny import _build_tokenizer

    tokenizer = _build_tokenizer()
    transformer = bf16_transformer(WanTransformer3DModel, case.transformer, device)
    text = standin_text_encoder(tokenizer, device).to(torch.bfloat16)
    with torch.device(device):
        vae = AutoencoderKLWan(**case.vae).eval()
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=5.0 if case.expand_timesteps else 3.0)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text, vae=vae, transformer=transformer, scheduler=scheduler,
                       expand_timesteps=case.expand_timesteps)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def run_plain(pipe, plan, device: torch.device, folder: Path) -> dict:
    """The request through ``pipe(...)`` and ``export_to_video``, as the diffusers docs do it."""
    from diffusers.utils import export_to_video

    marks: list[float] = []

    def on_step_end(_pipe, _step, _timestep, kwargs):
        _sync(device)
        marks.append(time.perf_counter())
        return kwargs

    _reset_peak(device)
    generator = torch.Generator(device=device).manual_seed(plan.seed)
    started = time.perf_counter()
    frames = pipe(prompt=plan.prompt, negative_prompt=plan.negative_prompt, height=plan.gen_height,
                  width=plan.gen_width, num_frames=plan.clip_frames, num_inference_steps=plan.num_inference_steps,
                  guidance_scale=plan.guidance_scale, generator=generator, output_type="np",
                  callback_on_step_end=on_step_end).frames[0]
    _sync(device)
    decoded = time.perf_counter()
    export_to_video(list(frames), str(folder / "plain.mp4"), fps=plan.fps)
    ended = time.perf_counter()
    steps = [b - a for a, b in zip([started, *marks], marks)]
    return {"step": statistics.median(steps[1:] or steps), "first_step": steps[0], "end_to_end": ended - started,
            "decode": decoded - marks[-1], "preview": 0.0, "peak": _peak_gib(device)}


def run_engine(studio, request, device: torch.device) -> dict:
    """The request through the studio: submit, the worker thread's run, the task's metadata."""
    _reset_peak(device)
    task_id = studio.submit(request).task_id
    deadline = time.monotonic() + 3600
    while not (task := studio.store.get(task_id)).is_terminal:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the engine's task {task_id} did not end")
        time.sleep(0.05)
    if task.status != "completed":
        raise RuntimeError(f"the engine's task {task_id} ended {task.status}: {task.error}")
    timings = studio.result(task_id).metadata.timings
    steps = request.num_inference_steps
    per_step = timings["denoise_seconds"] / steps
    return {"step": timings["mean_step_seconds"], "first_step": float("nan"),
            "end_to_end": task.finished_at - task.started_at, "decode": timings["decode_encode_seconds"],
            "preview": max(0.0, per_step - timings["mean_step_seconds"]), "peak": _peak_gib(device)}


def predicted(spec, plan, acceleration, fp8: bool = False, vae_dtype: str = "float32") -> tuple[float, float]:
    """(seconds per step, peak GiB) the cost model predicts for ``plan`` run warm in the ``gpu``
    profile with ``acceleration``, from its priors alone (no measurement of this machine), and
    without the text encoder's weights (the benchmark's stand-in weighs nothing)."""
    from studio.models.cost.architectures import architecture_of
    from studio.models.cost.timing import CostInputs, Rates, estimate_time
    from studio.models.cost.vram import memory_estimate, speed_setup

    inputs = CostInputs(Rates(None), spec.id, acceleration=lambda model, profile: acceleration,
                        warm=lambda model, plan: True)
    setup = replace(speed_setup(fp8, vae_dtype), text_encoder_on_gpu=False)
    memory = memory_estimate(architecture_of(spec), plan.gen_width, plan.gen_height, plan.gen_frames, "gpu", setup)
    return estimate_time(inputs, spec, plan, "gpu").step_seconds, memory.peak_gib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--steps", type=int, default=10, help="denoising steps (default 10, the seed's least; the "
                                                              "authors use 50: per-step figures do not change)")
    parser.add_argument("--tiny", action="store_true", help="the tiny model on the CPU (checks the script)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device: real-size models need a GPU (use --tiny to check the script)")

    from studio.config import Settings
    from studio.core import Studio
    from studio.engine.plan import make_plan
    from studio.engine.request import GenerationRequest
    from studio.models.catalog import get_spec
    from studio.models.cost.timing import EAGER, WARMUP_SECONDS, rate_key
    from studio.models.loader import LoadedModel
    from studio.models.speed import (
        FP8_CAPABILITY,
        SpeedPolicy,
        apply_speed,
        attention_probe,
        choose_speed,
        read_device,
    )
    from studio.models.tiny import build_tiny_pipeline

    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}; random weights, {args.steps} steps, guidance 5\n")
    print("| model | size | run | s per step | end to end s | against plain | decode s | preview s per step "
          "| peak GiB | cost model: s per step, GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in (["tiny"] if args.tiny else args.models):
        case = CASES.get(model, Case("tiny", "480p", 1.0, {}, {}))
        spec = get_spec(model)
        request = GenerationRequest(prompt=PROMPT, duration_seconds=case.duration_seconds, fps=max(spec.native_fps, 12),
                                    resolution=case.resolution, num_inference_steps=args.steps, guidance_scale=5.0,
                                    seed=0, model=model)
        plan = make_plan(request, spec, seed=0)
        pipe = build_tiny_pipeline() if args.tiny else real_pipeline(case, device)
        pipe.set_progress_bar_config(disable=True)
        folder = Path(tempfile.mkdtemp())
        runs = {"plain diffusers": run_plain(pipe, plan, device, folder)}
        predictions = {"plain diffusers": predicted(spec, plan, EAGER)}
        profile = "gpu" if device.type == "cuda" else "cpu"
        loaded = LoadedModel(spec, pipe, device, profile, 0.0, folder / "previewer.npz")
        studio = Studio(Settings(data_dir=folder / "studio", model=model))
        studio.models.adopt(loaded)
        studio.start()
        try:
            runs["engine, plain's settings"] = run_engine(studio, request, device)
            predictions["engine, plain's settings"] = predictions["plain diffusers"]
            loaded.speed = choose_speed(read_device(device), profile, SpeedPolicy.from_env(), attention_probe(device))
            loaded.speed = apply_speed(pipe, loaded.speed)
            # A new seed: the studio's state cache would resume an equal request's denoising.
            runs["engine, default speed, first task"] = run_engine(studio, request.model_copy(update={"seed": 1}),
                                                                   device)
            runs["engine, default speed"] = run_engine(studio, request.model_copy(update={"seed": 2}), device)
            default_speed = loaded.speed
            for run in ("engine, default speed, first task", "engine, default speed"):
                predictions[run] = predicted(spec, plan, default_speed.acceleration, vae_dtype=default_speed.vae_dtype)
            learnt_warmup = studio.store.timing(rate_key(model, default_speed.acceleration), WARMUP_SECONDS)
            facts = read_device(device)
            if facts.capability is not None and facts.capability >= FP8_CAPABILITY:  # last: it changes the weights
                # The blocks stay compiled (compile=False: not compiled twice); they recompile for fp8.
                fp8 = apply_speed(pipe, replace(default_speed, fp8=True, compile=False))
                loaded.speed = replace(fp8, compile=default_speed.compile)
                run = f"engine, default speed + fp8 (layer error {fp8.fp8_error})"
                runs[run] = run_engine(studio, request.model_copy(update={"seed": 3}), device)
                predictions[run] = predicted(spec, plan, loaded.speed.acceleration, fp8=True,
                                             vae_dtype=default_speed.vae_dtype)
        finally:
            studio.stop()
        size = f"{plan.gen_width}x{plan.gen_height}x{plan.clip_frames}"
        plain = runs["plain diffusers"]
        for run, r in runs.items():
            against = "" if r is plain else f"{(r['step'] / plain['step'] - 1):+.1%} step, " \
                                           f"{(r['end_to_end'] / plain['end_to_end'] - 1):+.1%} e2e"
            step_s, gib = predictions[run]
            print(f"| {model} | {size} | {run} | {r['step']:.3f} | {r['end_to_end']:.1f} | {against} | "
                  f"{r['decode']:.2f} | {r['preview']:.3f} | {r['peak']:.1f} | {step_s:.3f}, {gib:.1f} |")
        first, warm = runs["engine, default speed, first task"], runs["engine, default speed"]
        # (an fp8 run recompiles its blocks at its first step: its end to end includes that)
        learnt = "none (eager)" if learnt_warmup is None else f"{learnt_warmup:.1f} s"
        print(f"| {model} | {size} | speed settings: {default_speed.to_dict()}; first task's extra (compile) "
              f"{first['end_to_end'] - warm['end_to_end']:.1f} s, learnt by the engine as {learnt} | | | | | | | |")
        del pipe, studio, loaded  # before the next model is built: one in GPU memory at a time
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
