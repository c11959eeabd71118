"""Architecture data of the catalog models: what the cost model's memory and time formulas read.

Parameter counts are those of the real configs (diffusers' ``WanTransformer3DModel`` /
``AutoencoderKLWan`` and transformers' ``UMT5EncoderModel`` instantiated on the meta device;
:data:`ARCHITECTURES`, checked in ``tests/test_orchestrator.py``). How they turn into bytes and
FLOPs is in ``studio.models.cost.vram`` and ``studio.models.cost.timing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from studio.models.catalog import TINY

if TYPE_CHECKING:
    from studio.models.catalog import ModelSpec

TEXT_TOKENS = 512                      # UMT5 sequence length the Wan pipelines always use


@dataclass(frozen=True)
class TextEncoder:
    """A UMT5 encoder: sizes from its config, parameter count from instantiating it."""

    name: str
    params: int
    embedding_params: int
    block_params: int
    d_model: int
    d_ff: int
    num_heads: int


UMT5_XXL = TextEncoder("UMT5-XXL encoder", params=5_680_910_336, embedding_params=1_050_148_864,
                       block_params=192_948_224, d_model=4096, d_ff=10240, num_heads=64)
TINY_TEXT = TextEncoder("tiny UMT5 (d_model 32)", params=36_320, embedding_params=15_616,
                        block_params=10_336, d_model=32, d_ff=64, num_heads=4)


@dataclass(frozen=True)
class Architecture:
    """The transformer, VAE and text encoder of one catalog model (from the published configs).

    ``transformer_params`` / ``vae_params`` are what diffusers 0.42 instantiates from the
    configs (counted on the meta device; ``tests/test_orchestrator.py`` recounts them).
    """

    dim: int
    ffn_dim: int
    num_layers: int
    num_heads: int
    in_channels: int
    transformer_params: int
    block_params: int
    vae: str                       # "wan2.1" (stride 8, z 16) or "wan2.2" (stride 16, z 48)
    vae_params: int
    vae_stride: int
    z_dim: int
    text_encoder: TextEncoder = UMT5_XXL
    experts: int = 1               # Wan2.2-A14B: a high-noise and a low-noise expert
    per_token_timestep: bool = False  # diffusers' expand_timesteps (Wan2.2-TI2V-5B)
    quality_tier: int = 0          # 0: not a real model
    on_cpu: bool = False           # the offline tiny model runs on the CPU

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def largest_linear_params(self) -> int:
        """The biggest single weight matrix (a feed-forward projection): one leaf module."""
        return self.dim * self.ffn_dim + self.ffn_dim


_WAN21_VAE = dict(vae="wan2.1", vae_params=126_892_531, vae_stride=8, z_dim=16)

ARCHITECTURES: dict[str, Architecture] = {
    TINY: Architecture(dim=24, ffn_dim=32, num_layers=2, num_heads=2, in_channels=16, transformer_params=22_952,
                       block_params=0, vae="tiny", vae_params=14_779, vae_stride=8, z_dim=16,
                       text_encoder=TINY_TEXT, quality_tier=0, on_cpu=True),
    "wan2.1-t2v-1.3b": Architecture(dim=1536, ffn_dim=8960, num_layers=30, num_heads=12, in_channels=16,
                                    transformer_params=1_418_996_800, block_params=46_440_704,
                                    quality_tier=1, **_WAN21_VAE),
    "wan2.2-ti2v-5b": Architecture(dim=3072, ffn_dim=14336, num_layers=30, num_heads=24, in_channels=48,
                                   transformer_params=4_999_787_712, block_params=163_656_704,
                                   vae="wan2.2", vae_params=704_688_668, vae_stride=16, z_dim=48,
                                   per_token_timestep=True, quality_tier=2),
    "wan2.1-t2v-14b": Architecture(dim=5120, ffn_dim=13824, num_layers=40, num_heads=40, in_channels=16,
                                   transformer_params=14_288_491_584, block_params=351_394_304,
                                   quality_tier=3, **_WAN21_VAE),
    "wan2.2-t2v-a14b": Architecture(dim=5120, ffn_dim=13824, num_layers=40, num_heads=40, in_channels=16,
                                    transformer_params=14_288_491_584, block_params=351_394_304,
                                    experts=2, quality_tier=4, **_WAN21_VAE),
}


def architecture(model_id: str) -> Architecture:
    """The architecture data of a catalog model; ``KeyError`` for models without any."""


def architecture_of(spec: "ModelSpec") -> Architecture:
    """The architecture a model's estimates start from: its own entry, or the one it names
    (``ModelSpec.architecture``: an image-to-video model costs what its text-to-video base does,
    its image encoder aside)."""
    return ARCHITECTURES[spec.id] if spec.id in ARCHITECTURES else ARCHITECTURES[spec.architecture]
