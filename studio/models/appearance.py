"""Learned appearance embeddings: a CLIP vision encoder for the Consistency Tracker's model path.

An :class:`ImageEmbedder` maps RGB images to L2-normalised vectors with transformers'
``CLIPVisionModelWithProjection`` (the kind of image encoder Wan's I2V and Animate pipelines
condition on) and its ``CLIPImageProcessor`` preprocessing: resize the shorter side to the
model's input size (bicubic), centre-crop a square, normalise with CLIP's mean and std. The
cosine of two embeddings is their appearance similarity (``studio.genius.consistency.scoring``).

Embedders (:data:`EMBEDDERS`, by id):

- ``tiny-clip``: an offline, deterministic, **untrained** tiny CLIP vision model (2 layers,
  hidden size 32, 32 px input, 8 px patches, 32-d projection) built from a fixed seed and saved
  under ``models_dir/tiny-clip`` with its processor, then loaded through ``from_pretrained``
  like the real one. Its random weights make its similarities meaningless; it exists so that
  the model path runs (and is tested) with no network and no GPU.
- ``clip-vit-base-patch32``: ``openai/clip-vit-base-patch32`` from the Hugging Face Hub (about
  88 M parameters; fine on a CPU, on the GPU when there is one). Loaded only when a request asks
  for it: from the local cache, or downloaded unless ``HF_HUB_OFFLINE`` is set, in which case it
  is :class:`~studio.errors.ModelUnavailable` (:func:`unavailable_reason` says so at submission).

:func:`load_embedder` keeps each loaded embedder for the life of the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from studio.errors import InvalidRequest, ModelUnavailable
from studio.models.hub import hub_offline, in_cache

if TYPE_CHECKING:  # torch and transformers are imported when an embedder is first loaded
    import torch

log = logging.getLogger(__name__)

TINY_CLIP = "tiny-clip"
CLIP_B32 = "clip-vit-base-patch32"
BATCH_SIZE = 32

#: Seed of the tiny model's weight initialisation; bump together with its layout for a new model.
_TINY_SEED = 20240917
_TINY_FILES = ("config.json", "preprocessor_config.json")
_HUB_FILES = ("config.json", "preprocessor_config.json")
_HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


class EmbedderSpec(NamedTuple):
    repo_id: str | None  # None: built offline
    trained: bool
    label: str


EMBEDDERS: dict[str, EmbedderSpec] = {
    TINY_CLIP: EmbedderSpec(None, False, "tiny CLIP (offline, untrained: its similarities are meaningless, for "
                                         "testing the studio)"),
    CLIP_B32: EmbedderSpec("openai/clip-vit-base-patch32", True, "CLIP ViT-B/32 (OpenAI, from the Hugging Face Hub)"),
}


class ImageEmbedder:
    """A CLIP vision encoder with its image processor: images in, unit vectors out."""

    def __init__(self, model_id: str, model, processor, device: "torch.device | str" = "cpu",
                 batch_size: int = BATCH_SIZE):
        self.model_id = model_id
        self.trained = EMBEDDERS[model_id].trained if model_id in EMBEDDERS else True
        self.model = model.eval()
        self.processor = processor
        self.device = device
        self.batch_size = batch_size
        self.dim = int(model.config.projection_dim)
        size = processor.crop_size if getattr(processor, "do_center_crop", False) else processor.size
        #: Side (px) of the square the model sees: crops larger than this are shrunk anyway.
        self.input_side = int(size.get("height") or size.get("shortest_edge"))
        self._lock = threading.Lock()

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``(n, dim)`` float32 L2-normalised embeddings of ``images`` (``(H, W, 3)`` uint8 RGB
        arrays of any sizes), in batches of :attr:`batch_size`."""
        import torch

        for index, image in enumerate(images):
            if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                    and image.shape[2] == 3 and min(image.shape[:2]) >= 1):
                raise InvalidRequest(f"image {index} must be a non-empty uint8 RGB array of shape (H, W, 3)")
        out = np.empty((len(images), self.dim), np.float32)
        with self._lock, torch.inference_mode():  # one forward at a time; the model is shared
            for start in range(0, len(images), self.batch_size):
                batch = [np.ascontiguousarray(image) for image in images[start:start + self.batch_size]]
                pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
                embeds = self.model(pixel_values=pixels.to(self.device)).image_embeds.float()
                out[start:start + len(batch)] = torch.nn.functional.normalize(embeds, dim=-1).cpu().numpy()
        return out


# -- the offline tiny model ------------------------------------------------------------------------

class _Saveable:
    """Model and processor saved into one folder (what ``ensure_saved`` asks of ``build()``)."""

    def __init__(self, model, processor):
        self.model, self.processor = model, processor

    def save_pretrained(self, folder, **kwargs) -> None:
        self.model.save_pretrained(folder, **kwargs)
        self.processor.save_pretrained(folder)


def build_tiny_clip() -> _Saveable:
    """The tiny CLIP vision model and its processor, in memory. Deterministic: the weights are
    initialised on a forked, locally seeded torch RNG (the caller's RNG state is untouched)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_TINY_SEED)
        model = CLIPVisionModelWithProjection(config).eval()
    processor = _processor_class()(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return _Saveable(model, processor)


def ensure_tiny_clip(models_dir: Path) -> Path:
    """``models_dir/tiny-clip`` holding the saved tiny model and processor (built on first use)."""
    from studio.models.tiny import ensure_saved

    return ensure_saved(models_dir, TINY_CLIP, build_tiny_clip, files=_TINY_FILES, weight_dirs=("",))


def _processor_class():
    # Without torchvision transformers' CLIPImageProcessor falls back to the PIL one with a
    # warning; the PIL one is what runs here either way.
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil


# -- loading ---------------------------------------------------------------------------------------

def _cached(repo_id: str) -> bool:
    return all(in_cache(repo_id, name) for name in _HUB_FILES) and any(in_cache(repo_id, name) for name in _HUB_WEIGHTS)


def unavailable_reason(model_id: str) -> str | None:
    """Why embedder ``model_id`` cannot be loaded here, from cheap checks (no download); ``None``
    when it can (the offline one; a hub one that is cached, or may be downloaded)."""
    spec = EMBEDDERS.get(model_id)
    if spec is None:
        return f"unknown appearance model {model_id!r}; known: {', '.join(EMBEDDERS)}"
    if spec.repo_id is None:
        return None
    if hub_offline() and not _cached(spec.repo_id):
        return (f"{model_id} ({spec.repo_id}) is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                f"use appearance model '{TINY_CLIP}' (untrained) or 'histogram', or download it first")
    return None


_loaded: dict[tuple[Path, str], ImageEmbedder] = {}
_loaded_lock = threading.Lock()


def load_embedder(models_dir: Path, model_id: str) -> ImageEmbedder:
    """The embedder ``model_id``, loaded once per process (the tiny one is built and saved under
    ``models_dir`` first). ``ModelUnavailable`` when it cannot be loaded here."""
    spec = EMBEDDERS.get(model_id)
    if spec is None:
        raise ModelUnavailable(unavailable_reason(model_id))
    key = (Path(models_dir).resolve() if spec.repo_id is None else Path(), model_id)
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = _load(Path(models_dir), model_id, spec)
        return _loaded[key]


def _load(models_dir: Path, model_id: str, spec: EmbedderSpec) -> ImageEmbedder:
    import torch
    from transformers import CLIPVisionModelWithProjection
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # per-load bars would flood the server log
    if spec.repo_id is None:
        folder = ensure_tiny_clip(models_dir)
        model = CLIPVisionModelWithProjection.from_pretrained(folder, dtype=torch.float32)
        return ImageEmbedder(model_id, model, _processor_class().from_pretrained(folder))
    reason = unavailable_reason(model_id)
    if reason is not None:
        raise ModelUnavailable(reason)
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(spec.repo_id, dtype=torch.float32)
        processor = _processor_class().from_pretrained(spec.repo_id)
    except Exception as exc:
        # The exception's text names cache paths on this server: it goes to the log, not the client.
        log.warning("could not load %s (%s): %s", model_id, spec.repo_id, exc)
        raise ModelUnavailable(f"could not load {model_id} ({spec.repo_id}): {type(exc).__name__}") from exc
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return ImageEmbedder(model_id, model.to(device), processor, device)
