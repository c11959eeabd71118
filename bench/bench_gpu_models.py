"""One denoising step and one VAE decode of the real-size Wan models the editing features run,
with random weights (no download): seconds per step and peak GPU memory at each model's
native size. Prepared for a GPU session; ``--tiny`` runs the same code on the offline tiny
configurations (CPU) to check the script itself.

    python bench/bench_gpu_models.py                  # on a CUDA machine: every model
    python bench/bench_gpu_models.py --models wan2.2-animate-14b --repeat 5
    python bench/bench_gpu_models.py --tiny           # smoke test on a CPU

Configurations are the published diffusers ``transformer/config.json`` values of each
checkpoint (Wan2.1 1.3B / 14B, VACE, FLF2V, Animate) and the Wan2.1 VAE; the inputs have the
shapes the pipelines feed them at the model's native size and length (one segment / window).
Weights are random, so the timings are those of the real architecture, not of any output.
A step is one transformer forward without classifier-free guidance (with CFG, two). The table
prints the median of ``--repeat`` timed runs after one warm-up, and the peak memory
``torch.cuda.max_memory_allocated`` of the run (weights in bf16, the VAE in fp32 as the studio
loads them).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import torch

WAN_1_3B = dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30)
WAN_14B = dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, num_layers=40)
COMMON = dict(patch_size=(1, 2, 2), in_channels=16, out_channels=16, text_dim=4096, freq_dim=256,
              cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)
TINY = dict(num_attention_heads=2, attention_head_dim=12, ffn_dim=32, num_layers=2, text_dim=32, freq_dim=32)
TINY_ANIMATE = dict(image_dim=16, motion_encoder_size=32,
                    motion_encoder_channel_sizes={str(2 ** k): 8 for k in range(2, 6)}, motion_style_dim=8,
                    motion_dim=4, motion_encoder_dim=8, face_encoder_hidden_dim=16, face_encoder_num_heads=2,
                    inject_face_latents_blocks=1)


@dataclass
class Case:
    """A model: its transformer class and config, native size, and extra forward inputs."""

    name: str
    cls: str
    config: dict
    width: int
    height: int
    frames: int
    in_channels: int = 16
    extra: dict = field(default_factory=dict)  # input name -> shape (B first), filled in at run time
    cfg: bool = True  # the authors sample with classifier-free guidance


def cases(tiny: bool) -> list[Case]:
    """The benchmarked models at their native size, or their tiny stand-ins."""
    if tiny:
        base = {**COMMON, **TINY}
        w, h, f = 160, 96, 17
        t, lh, lw = (f - 1) // 4 + 1, h // 8, w // 8
        return [
            Case("tiny", "WanTransformer3DModel", base, w, h, f),
            Case("tiny-vace", "WanVACETransformer3DModel", {**base, "vace_layers": [0], "vace_in_channels": 96},
                 w, h, f, extra={"control_hidden_states": (1, 96, t, lh, lw)}),
            Case("tiny-i2v", "WanTransformer3DModel", {**base, "in_channels": 36, "image_dim": 16,
                                                        "pos_embed_seq_len": 34}, w, h, f, in_channels=36,
                 extra={"encoder_hidden_states_image": (2, 17, 16)}),
            Case("tiny-animate", "WanAnimateTransformer3DModel", {**base, "in_channels": 36, **TINY_ANIMATE},
                 w, h, f, in_channels=36, cfg=False,
                 extra={"encoder_hidden_states_image": (1, 17, 16), "pose_hidden_states": (1, 16, t, lh, lw),
                        "face_pixel_values": (1, 3, f, 32, 32)}),
        ]
    vace_1_3b = {**COMMON, **WAN_1_3B, "vace_layers": list(range(0, 30, 2)), "vace_in_channels": 96}
    return [
        Case("wan2.1-t2v-1.3b", "WanTransformer3DModel", {**COMMON, **WAN_1_3B}, 832, 480, 81),
        Case("wan2.1-vace-1.3b", "WanVACETransformer3DModel", vace_1_3b, 832, 480, 81,
             extra={"control_hidden_states": (1, 96, 21, 60, 104)}),
        Case("wan2.1-t2v-14b", "WanTransformer3DModel", {**COMMON, **WAN_14B}, 1280, 720, 81),
        Case("wan2.1-flf2v-14b", "WanTransformer3DModel",
             {**COMMON, **WAN_14B, "in_channels": 36, "image_dim": 1280, "added_kv_proj_dim": 5120,
              "pos_embed_seq_len": 2 * 257}, 1280, 720, 81, in_channels=36,
             extra={"encoder_hidden_states_image": (2, 257, 1280)}),
        # WanAnimateTransformer3DModel's defaults are the released 14B checkpoint's configuration.
        Case("wan2.2-animate-14b", "WanAnimateTransformer3DModel", {}, 1280, 720, 77, in_channels=36, cfg=False,
             extra={"encoder_hidden_states_image": (1, 257, 1280), "pose_hidden_states": (1, 16, 20, 90, 160),
                    "face_pixel_values": (1, 3, 77, 512, 512)}),
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device, repeat: int) -> float:
    fn()  # warm-up (kernels, allocator)
    times = []
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cast(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """``dtype`` weights except the modules the model keeps in float32 (norms, time embedding,
    rope), as ``from_pretrained(torch_dtype=...)`` loads a checkpoint."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point():
            tensor.data = tensor.data.to(torch.float32 if keep & set(name.split(".")) else dtype)


def run_case(case: Case, device: torch.device, dtype: torch.dtype, repeat: int) -> dict:
    """Build ``case``'s transformer with random weights and time one forward at native size."""
    import diffusers

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with torch.device(device):
        model = getattr(diffusers, case.cls)(**case.config).eval()
    _cast(model, dtype)
    params = sum(p.numel() for p in model.parameters())
    t = (case.frames - 1) // 4 + 1 + (1 if case.cls == "WanAnimateTransformer3DModel" else 0)  # + reference frame
    text_dim = model.config.text_dim
    inputs = {
        "hidden_states": torch.randn(1, case.in_channels, t, case.height // 8, case.width // 8, device=device,
                                     dtype=dtype),
        "timestep": torch.tensor([500], device=device),
        "encoder_hidden_states": torch.randn(1, 512, text_dim, device=device, dtype=dtype),
    }
    for name, shape in case.extra.items():
        inputs[name] = torch.randn(*shape, device=device, dtype=dtype)

    def step():
        with torch.inference_mode():
            model(**inputs, return_dict=False)

    seconds = _timed(step, device, repeat)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"model": case.name, "params_b": params / 1e9, "latent": f"{t}x{case.height // 8}x{case.width // 8}",
            "step_s": seconds, "cfg": case.cfg, "peak_gib": peak}


def run_vae(width: int, height: int, frames: int, device: torch.device, repeat: int, tiny: bool) -> dict:
    """One decode of a whole window's latents by the Wan2.1 VAE (random weights, fp32)."""
    from diffusers import AutoencoderKLWan

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    config = dict(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=0) if tiny else {}
    with torch.device(device):
        vae = AutoencoderKLWan(**config).eval()
    latents = torch.randn(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8, device=device)

    def decode():
        with torch.inference_mode():
            vae.decode(latents, return_dict=False)

    seconds = _timed(decode, device, repeat)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"size": f"{width}x{height}x{frames}", "decode_s": seconds, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="model names (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny configurations on the CPU (checks the script)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device: real-size models need a GPU (use --tiny to check the script)")
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    chosen = [c for c in cases(args.tiny) if not args.models or c.name in args.models]
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"dtype {dtype}, median of {args.repeat} after a warm-up")
    print("| model | params (B) | latent T x H x W | s / step | CFG | s / step with CFG | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for case in chosen:
        r = run_case(case, device, dtype, args.repeat)
        with_cfg = r["step_s"] * (2 if r["cfg"] else 1)
        print(f"| {r['model']} | {r['params_b']:.2f} | {r['latent']} | {r['step_s']:.3f} | "
              f"{'yes' if r['cfg'] else 'no'} | {with_cfg:.3f} | {r['peak_gib']:.1f} |")
    sizes = {(c.width, c.height, c.frames) for c in chosen}
    print("\n| VAE decode | s | peak GiB |\n|---|---|---|")
    for width, height, frames in sorted(sizes):
        r = run_vae(width, height, frames, device, args.repeat, args.tiny)
        print(f"| {r['size']} | {r['decode_s']:.3f} | {r['peak_gib']:.1f} |")


if __name__ == "__main__":
    main()


def bf16_transformer(cls, config: dict, device: torch.device) -> torch.nn.Module:
    """A real-size transformer of ``cls`` with random weights, built in bf16 on ``device`` (a 14B
    model built in fp32 first would need 56 GB)."""
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.bfloat16)
        with torch.device(device):
            transformer = cls(**config).eval()
    finally:
        torch.set_default_dtype(default)
    _cast(transformer, torch.bfloat16)
    return transformer


def standin_text_encoder(tokenizer, device: torch.device) -> torch.nn.Module:
    """A one-layer UMT5 encoder with the real 4096-wide output: prompt encoding is a one-off, so a
    stand-in keeps the denoising and decoding speed while sparing the 11 GB encoder."""
    from transformers import UMT5Config, UMT5EncoderModel

    with torch.device(device):
        return UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=4096, d_kv=8, d_ff=256, num_layers=1,
                                           num_heads=512, is_encoder_decoder=False, pad_token_id=0,
                                           eos_token_id=1)).eval()
