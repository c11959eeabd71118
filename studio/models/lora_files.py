"""LoRA adapter files: read one, say what it changes, and check it fits a model.

A LoRA for a Wan transformer adds, to some of its linear layers, a low-rank update
``B @ A`` (``lora_A``: ``[rank, in]``, ``lora_B``: ``[out, rank]``). Files come in several key
conventions (diffusers/peft ``transformer.blocks.0.attn1.to_q.lora_A.weight``, the original Wan /
ComfyUI ``diffusion_model.blocks.0.self_attn.q.lora_A.weight``, musubi-tuner ``lora_unet_...``);
diffusers' ``WanLoraLoaderMixin.lora_state_dict`` turns them all into the first, which is what
:func:`adapter_targets` reads.

A file fits a model when every layer it changes exists in the model's transformer with the same
``in`` and ``out`` sizes (:func:`check_fits`). The model's layer sizes come from its transformer
built on the meta device (no weights, no download): the tiny model's own, or a real Wan2.x
configuration from ``studio.models.cost.architectures``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from studio.errors import InvalidRequest
from studio.models.catalog import TINY, ModelSpec

#: Wan2.x transformer settings the architecture table does not list (the same for every size).
_WAN_COMMON = dict(patch_size=(1, 2, 2), attention_head_dim=128, text_dim=4096, freq_dim=256, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)


#: A registered adapter's file: ``<data dir>/loras/lora-<id>/adapter.safetensors`` (the folder is
#: what object storage publishes and fetches, ``MediaPaths.publish_inputs``).
ADAPTER_FILE = "adapter.safetensors"


def adapter_folder(data_dir: Path, lora_id: str) -> Path:
    """The folder holding registered adapter ``lora_id``'s file, under a studio's data folder."""
    return Path(data_dir) / "loras" / f"lora-{lora_id}"


@dataclass(frozen=True)
class AdapterSummary:
    """What a LoRA file changes: ``targets`` module -> (in, out) sizes, and its rank."""

    targets: dict[str, tuple[int, int]]
    rank: int


def read_adapter(data: bytes, what: str = "file") -> dict:
    """The tensors of a safetensors LoRA file (``InvalidRequest`` for anything else)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise InvalidRequest(f"{what} is not a safetensors file ({str(error)[:120]})") from None
    if not tensors:
        raise InvalidRequest(f"{what} holds no tensors")
    return tensors


def adapter_targets(tensors: dict, what: str = "file") -> AdapterSummary:
    """The layers ``tensors`` (a LoRA state dict, any supported convention) changes."""
    from diffusers import WanPipeline

    try:
        state = WanPipeline.lora_state_dict(dict(tensors))
    except Exception as error:  # a converter that meets keys it does not know
        raise InvalidRequest(f"{what} is not a Wan LoRA the studio can read ({str(error)[:160]})") from None
    down = {k[:-len(".lora_A.weight")]: v for k, v in state.items() if k.endswith(".lora_A.weight")}
    up = {k[:-len(".lora_B.weight")]: v for k, v in state.items() if k.endswith(".lora_B.weight")}
    if not down or down.keys() != up.keys():
        raise InvalidRequest(f"{what} is not a LoRA: it needs lora_A / lora_B weight pairs for the same layers")
    targets, ranks = {}, set()
    for name, a in down.items():
        b = up[name]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise InvalidRequest(f"{what}: {name} has lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)}, "
                                 "which do not make a low-rank update")
        targets[name.removeprefix("transformer.")] = (int(a.shape[1]), int(b.shape[0]))
        ranks.add(int(a.shape[0]))
    return AdapterSummary(targets, max(ranks))


def check_fits(targets: dict[str, tuple[int, int]] | dict[str, list[int]], spec: ModelSpec, what: str) -> None:
    """``InvalidRequest`` unless every layer in ``targets`` exists in ``spec``'s transformer with
    the same sizes."""
    shapes = linear_shapes(spec.id)
    missing = [name for name in targets if name not in shapes]
    wrong = [name for name in targets if name in shapes and tuple(targets[name]) != shapes[name]]
    if missing:
        raise InvalidRequest(f"{what} changes {len(missing)} layer(s) {spec.id} does not have (e.g. "
                             f"{', '.join(sorted(missing)[:3])}); it was made for another model")
    if wrong:
        name = sorted(wrong)[0]
        raise InvalidRequest(f"{what} does not fit {spec.id}: {name} is {shapes[name][0]}->{shapes[name][1]} in the "
                             f"model and {targets[name][0]}->{targets[name][1]} in the LoRA ({len(wrong)} layer(s) "
                             "differ); it was made for another model size")


def supports_loras(spec: ModelSpec) -> bool:
    """Whether LoRAs can be checked against and applied to ``spec`` (the text-to-video models)."""
    return spec.task == "t2v"


@functools.lru_cache(maxsize=None)
def linear_shapes(model_id: str) -> dict[str, tuple[int, int]]:
    """Every linear layer of the model's transformer: name -> (in, out) features."""
    import torch

    transformer = _transformer_on_meta(model_id)
    return {name: (m.in_features, m.out_features) for name, m in transformer.named_modules()
            if isinstance(m, torch.nn.Linear)}


def _transformer_on_meta(model_id: str):
    import torch
    from diffusers import WanTransformer3DModel

    from studio.models.catalog import get_spec
    from studio.models.cost.architectures import architecture_of
    from studio.models.tiny import tiny_transformer_config

    spec = get_spec(model_id)
    if not supports_loras(spec):
        raise InvalidRequest(f"LoRAs apply to the text-to-video models; {spec.id} is a {spec.task} model")
    if TINY in (spec.id, spec.architecture):
        config = tiny_transformer_config()
    else:
        arch = architecture_of(spec)
        config = dict(_WAN_COMMON, num_attention_heads=arch.num_heads, in_channels=arch.in_channels,
                      out_channels=arch.z_dim, ffn_dim=arch.ffn_dim, num_layers=arch.num_layers)
    # The meta device through torch's device context, which is this thread's alone (accelerate's
    # init_empty_weights patches every thread's modules, the worker's model loads included).
    with torch.device("meta"):
        return WanTransformer3DModel(**config)
