"""The two phases around the denoising loop at real size, in each way the studio can run them
(issue 15, part 2): prompt encoding with the UMT5-XXL encoder resident or streamed in by the
``text_encoder_offload`` memory profile, and the VAE decode in fp32, bf16 and tiled. Seconds and
peak GPU memory, beside what the cost model (``studio.models.cost``) assumes for them.

Prepared for a GPU session (random weights: no download; speed does not depend on the values):

- **encode**: the prompt and the negative prompt (512 tokens each, as the pipelines pad them)
  through ``WanPipeline``'s encoder code. *resident*: the encoder on the GPU (the ``gpu``
  profile). *streamed*: diffusers' leaf-level group offloading with CUDA-stream prefetch, as the
  loader applies ``text_encoder_offload``: the weights cross PCIe on every encode. The cost model
  counts the crossing at PCIe 4.0 x16's nominal 31.5 GB/s.
- **decode**: the studio's streaming decode (``studio.engine.decode.iter_decoded_frames``) of
  the latents of 81 frames at 832x480 and 1280x720 with the Wan2.1 VAE: fp32 whole frames, bf16
  whole frames (``ECHOEL_VAE_DTYPE=bfloat16``), fp32 tiled (the ``group_offload`` profile, and
  any decode too big for the free memory). The cost model's peak is its formula for that decode.

Each figure is the median of ``--repeat`` runs after one warm-up.

    python bench/bench_gpu_phases.py                  # CUDA
    python bench/bench_gpu_phases.py --tiny           # the same code on the tiny model (CPU, a check)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_gpu_models import _timed  # noqa: E402  (bench/bench_gpu_models.py: median after a warm-up)

# google/umt5-xxl's encoder, as Wan's text_encoder/config.json gives it.
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
PROMPT = "a red fox running through snow at dusk, cinematic lighting"
NEGATIVE = "blurry, low quality, static"


def timed(fn, device: torch.device, repeat: int) -> tuple[float, float]:
    """(median seconds of ``repeat`` runs after a warm-up, peak GiB) of ``fn()``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = _timed(fn, device, repeat)
    return seconds, torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def text_encoder(tiny: bool):
    """A UMT5 encoder of the real size (random bf16 weights, on the CPU), or the tiny model's."""
    from transformers import UMT5Config, UMT5EncoderModel

    if tiny:
        from studio.models.tiny import build_tiny_pipeline

        return build_tiny_pipeline().text_encoder
    with torch.device("meta"):
        model = UMT5EncoderModel(UMT5Config(**UMT5_XXL)).to(torch.bfloat16)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02)
    return model.eval()


def encode_rows(encoder, tokenizer, device: torch.device, repeat: int) -> list[tuple[str, float, float, float]]:
    """(way, seconds, peak GiB, the cost model's seconds) of encoding both prompts, each way."""
    from diffusers import WanPipeline
    from diffusers.hooks import apply_group_offloading

    from studio.models.cost.timing import PCIE_BYTES_PER_S

    holder = type("Holder", (), {})()  # what WanPipeline's encoder code reads of a pipeline
    holder.tokenizer, holder.text_encoder = tokenizer, encoder

    def encode() -> None:
        with torch.no_grad():
            WanPipeline._get_t5_prompt_embeds(holder, [PROMPT, NEGATIVE], 1, 512, device)

    weights = sum(p.numel() * p.element_size() for p in encoder.parameters())
    rows = []
    encoder.to(device)
    rows.append(("resident (gpu profile)", *timed(encode, device, repeat), 0.0))
    encoder.to("cpu")
    apply_group_offloading(encoder, onload_device=device, offload_device=torch.device("cpu"),
                           offload_type="leaf_level", use_stream=device.type == "cuda")
    rows.append(("streamed (text_encoder_offload)", *timed(encode, device, repeat), weights / PCIE_BYTES_PER_S))
    return rows


def decode_rows(tiny: bool, device: torch.device, repeat: int) -> list[tuple[str, str, float, float, float]]:
    """(size, way, seconds, peak GiB, the cost model's peak GiB) of each decode."""
    from diffusers import AutoencoderKLWan

    from studio.engine.decode import iter_decoded_frames
    from studio.models.cost.architectures import ARCHITECTURES
    from studio.models.cost.vram import vae_decode_bytes

    if tiny:
        from studio.models.tiny import build_tiny_pipeline

        vae, sizes, arch = build_tiny_pipeline().vae, [(160, 96, 17)], ARCHITECTURES["wan2.1-t2v-1.3b"]
    else:
        with torch.device(device):
            vae = AutoencoderKLWan().eval()  # the Wan2.1 VAE's config is diffusers' default
        sizes, arch = [(832, 480, 81), (1280, 720, 81)], ARCHITECTURES["wan2.1-t2v-1.3b"]
    rows = []
    for width, height, frames in sizes:
        latents = torch.randn(1, vae.config.z_dim, (frames - 1) // 4 + 1, height // 8, width // 8, device=device)
        for way, dtype, tiled in (("fp32", torch.float32, False), ("bf16", torch.bfloat16, False),
                                  ("fp32 tiled", torch.float32, True)):
            vae.to(dtype)

            def decode() -> None:
                for _chunk in iter_decoded_frames(vae, latents, tiled=tiled):
                    pass

            seconds, peak = timed(decode, device, repeat)
            predicted = vae_decode_bytes(arch, width, height, frames, vae_bytes=torch.empty((), dtype=dtype)
                                         .element_size(), tiled=tiled) / 2**30
            rows.append((f"{width}x{height}x{frames}", way, seconds, peak, predicted))
        vae.to(torch.float32)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tiny model on the CPU (checks the script)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device: real-size models need a GPU (use --tiny to check the script)")
    from studio.models.tiny import _build_tokenizer

    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}; random weights, median of {args.repeat}\n")
    print("| phase | size | way | seconds | peak GiB | cost model |")
    print("|---|---|---|---|---|---|")
    encoder = text_encoder(args.tiny)
    for way, seconds, peak, crossing in encode_rows(encoder, _build_tokenizer(), device, args.repeat):
        print(f"| encode | 2 x 512 tokens | {way} | {seconds:.3f} | {peak:.1f} | {crossing:.3f} s crossing |")
    del encoder
    if device.type == "cuda":
        torch.cuda.empty_cache()
    for size, way, seconds, peak, predicted in decode_rows(args.tiny, device, args.repeat):
        print(f"| decode | {size} | {way} | {seconds:.3f} | {peak:.1f} | {predicted:.1f} GiB peak |")


if __name__ == "__main__":
    main()
