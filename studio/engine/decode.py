"""Streaming VAE decode: turn Wan latents into RGB frames one latent frame at a time.

``AutoencoderKLWan.decode`` concatenates every decoded frame into one float tensor before
returning, which for long or large videos is the peak-memory moment of the whole job. The
Wan decoder is causal in time and already works latent-frame by latent-frame with a
feature cache, so we run that same loop ourselves and hand each chunk out as soon as it
is ready.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def unnormalize_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Undo the pipeline's latent normalisation, exactly as ``WanPipeline.__call__`` does.

    ``WanPipeline`` hands out ``(z - mean) / std`` and decodes ``latents / (1/std) + mean``;
    the reciprocal is kept so the float rounding matches the pipeline bit for bit.
    """
    cfg = vae.config
    latents = latents.to(vae_execution_device(vae), dtype=vae.dtype)
    mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    return latents / inv_std + mean


def normalize_latents(vae, z: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`unnormalize_latents`: raw VAE latents -> the pipeline's latents."""
    cfg = vae.config
    mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1).to(z.device, z.dtype)
    std = torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1).to(z.device, z.dtype)
    return (z - mean) / std


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """Decoder output ``[1, 3, n, H, W]`` in [-1, 1] -> uint8 ``[n, H, W, 3]``.

    Same maths as diffusers' ``VideoProcessor.postprocess_video`` followed by its
    ``numpy_to_pil`` rounding (``x * 0.5 + 0.5``, clamp, ``* 255``, round).
    """
    frames = (video[0] * 0.5 + 0.5).clamp(0, 1)
    frames = frames.permute(1, 2, 3, 0).float().cpu().numpy()
    return (frames * 255).round().astype(np.uint8)


def free_gpu_bytes(vae) -> float | None:
    """Memory the VAE's GPU can still give: free on the device plus what this process's allocator
    holds unused; None when the VAE runs on the CPU (no separate memory to run out of)."""
    device = vae_execution_device(vae)
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return float(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def untiled_decode_bytes(vae, latents: torch.Tensor) -> float:
    """The activation peak of decoding ``latents`` untiled, one latent frame at a time: the cost
    model's per-pixel figure (``studio.models.cost.vram``; Wan2.1's VAE or Wan2.2's, told apart by
    their latent channels) x the frame's pixels x the VAE's bytes per value."""
    from studio.models.cost.vram import VAE_DECODE_VALUES_PER_PIXEL

    values = VAE_DECODE_VALUES_PER_PIXEL["wan2.2" if vae.config.z_dim == 48 else "wan2.1"]
    scale = getattr(vae.config, "scale_factor_spatial", 8)
    pixels = latents.shape[-2] * scale * latents.shape[-1] * scale
    return float(values * pixels * torch.empty((), dtype=vae.dtype).element_size())


def tiling_note(vae, latents: torch.Tensor, free_bytes: float | None) -> str | None:
    """Why this decode must run tiled though the VAE is set to decode whole frames: the untiled
    decode's peak (``untiled_decode_bytes``) would not fit ``free_bytes`` by the cost model's
    one rule (``fits``); None when it fits, when the VAE tiles anyway, or on the CPU (None free).
    Tiling instead of running out of memory keeps a finished denoising from being lost."""
    from studio.models.cost.vram import fits

    if free_bytes is None or getattr(vae, "use_tiling", False):
        return None
    need = untiled_decode_bytes(vae, latents)
    if fits(need, free_bytes):
        return None
    width = latents.shape[-1] * getattr(vae.config, "scale_factor_spatial", 8)
    return (f"decoded in tiles: whole {width}-pixel-wide frames need about {need / 2**30:.1f} GiB to decode and "
            f"{free_bytes / 2**30:.1f} GiB were free")


def iter_decoded_frames(vae, latents: torch.Tensor, tiled: bool = False) -> Iterator[np.ndarray]:
    """Decode normalized pipeline latents ``[1, C, T, h, w]`` chunk by chunk.

    Yields, per latent frame, a uint8 array ``[n, H, W, 3]``: one frame for the first latent
    frame, then ``scale_factor_temporal`` (4) frames each, i.e. ``4 * (T - 1) + 1`` in total.
    Only one chunk of decoded pixels exists at a time, unless the VAE decodes tiled
    (``vae.enable_tiling``, the group-offload memory profile, or ``tiled``: ``tiling_note`` found
    the whole frames too big for the memory free now): then diffusers' tiled decode runs (one
    spatial tile through every frame at a time, whose peak the orchestrator's tiled formula
    describes) and its output is handed out in the same chunks.
    """
    if latents.ndim != 5 or latents.shape[0] != 1:
        raise ValueError(f"expected latents of shape [1, C, T, h, w], got {tuple(latents.shape)}")
    if tiled or getattr(vae, "use_tiling", False):
        yield from _iter_tiled(vae, latents)
        return
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, unpatchify

    # Respect accelerate's offload hooks the way diffusers' @apply_forward_hook does for
    # vae.decode, since we call the submodules directly.
    hook = getattr(vae, "_hf_hook", None)
    if hook is not None and hasattr(hook, "pre_forward"):
        hook.pre_forward(vae)

    patch_size = vae.config.patch_size
    # A private cache (not vae._feat_map) so a concurrent vae.decode / encode on the same
    # module cannot corrupt this stream, and vice versa.
    num_convs = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
    feat_cache: list[torch.Tensor | None] = [None] * num_convs

    with torch.no_grad():
        z = unnormalize_latents(vae, latents)
    for i in range(z.shape[2]):
        # Decode outside the generator's suspended frame: a `with no_grad()` held across a
        # yield would leak disabled autograd into the consumer's code between chunks.
        yield _decode_one(vae, z, i, feat_cache, patch_size, unpatchify)


@torch.no_grad()
def _decode_one(vae, z: torch.Tensor, i: int, feat_cache: list, patch_size, unpatchify) -> np.ndarray:
    # post_quant_conv is a 1x1x1 causal conv, so applying it per frame equals applying it
    # to the whole clip as AutoencoderKLWan._decode does.
    x = vae.post_quant_conv(z[:, :, i : i + 1])
    out = vae.decoder(x, feat_cache=feat_cache, feat_idx=[0], first_chunk=(i == 0))
    if patch_size is not None:
        out = unpatchify(out, patch_size=patch_size)
    return to_uint8_frames(torch.clamp(out, min=-1.0, max=1.0))


def _iter_tiled(vae, latents: torch.Tensor) -> Iterator[np.ndarray]:
    """``vae.decode`` tiled (where the frame exceeds a tile) in the streaming path's chunks."""
    set_to_tile = vae.use_tiling
    vae.enable_tiling()  # for this decode alone when the VAE was set untiled: the next may fit whole frames
    try:
        with torch.no_grad():
            video = vae.decode(unnormalize_latents(vae, latents), return_dict=False)[0]
    finally:
        if not set_to_tile:
            vae.disable_tiling()
    # Wan's causal VAE: the first latent frame is one frame, every later one scale_factor_temporal.
    ratio = getattr(vae.config, "scale_factor_temporal", 4)
    yield to_uint8_frames(video[:, :, :1])
    for start in range(1, video.shape[2], ratio):
        yield to_uint8_frames(video[:, :, start:start + ratio])


def vae_execution_device(vae) -> torch.device:
    """The device the VAE's inputs must be on (its offload hook's device when offloaded)."""
    from diffusers.utils.torch_utils import get_module_execution_device

    return get_module_execution_device(vae)
