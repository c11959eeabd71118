"""The offline ``tiny`` models: deterministic, untrained Wan pipelines small enough for a CPU.

``tiny`` is a WanPipeline, ``tiny-vace`` a WanVACEPipeline (masked video generation, for
Video Inpainting), ``tiny-animate`` a WanAnimatePipeline (pose- and face-driven character
video, for motion transfer and lip-sync) and ``tiny-i2v`` a WanImageToVideoPipeline (first and
last frame conditioning, as FLF2V, for the Scene Orchestrator's morphs); ``tiny-helios`` and
``tiny-helios-distilled`` are a HeliosPipeline and a HeliosPyramidPipeline (autoregressive
chunks with history, the pyramid one at three resolution stages). They are assembled from the *real* diffusers /
transformers classes (WanTransformer3DModel / WanVACETransformer3DModel /
WanAnimateTransformer3DModel, AutoencoderKLWan, UMT5EncoderModel, CLIPVisionModel, a fast
tokenizer, FlowMatchEulerDiscreteScheduler), so every code path the studio uses with the real
Wan checkpoints (loading, prompt encoding, sampling, callbacks, VAE encode/decode) runs
unchanged without network or GPU. Their weights are random, so their videos look like noise.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing diffusers is slow; callers of ensure_tiny_model on a warm dir skip it
    import diffusers

TINY_MODEL_DIRNAME = "tiny"
TINY_VACE_MODEL_DIRNAME = "tiny-vace"
TINY_ANIMATE_MODEL_DIRNAME = "tiny-animate"
TINY_I2V_MODEL_DIRNAME = "tiny-i2v"
TINY_I2V_FIRST_MODEL_DIRNAME = "tiny-i2v-first"
TINY_TI2V_MODEL_DIRNAME = "tiny-ti2v"
TINY_HELIOS_MODEL_DIRNAME = "tiny-helios"
TINY_HELIOS_DISTILLED_MODEL_DIRNAME = "tiny-helios-distilled"

#: Seed of the weight initialisation; bump together with the layout to get a new model.
_SEED = 20240611

# The pipeline always tokenizes to this length (WanPipeline's max_sequence_length default).
_MAX_TEXT_TOKENS = 512

# A spatial/temporal size limit: WanRotaryPosEmbed keeps a table of ``rope_max_seq_len`` rows
# per axis and slices the first N rows, so every per-axis token count (frames: (F-1)/4+1,
# height: H/16, width: W/16) must be <= rope_max_seq_len or the view() in its forward fails.
# 1024 (the Wan default) covers 16384 px / 4093 frames and costs only a few KB of buffers.
_ROPE_MAX_SEQ_LEN = 1024

_SPECIAL_TOKENS = ["[PAD]", "</s>", "[UNK]"]  # ids 0, 1, 2 match UMT5Config's pad/eos defaults

# A fixed vocabulary keeps the tokenizer deterministic and offline; words outside it map to
# [UNK], which is fine for an untrained model but keeps prompts distinguishable.
_WORDS = """
a an the and or but of to in on at by for with from into onto over under above below
near far behind between through across around after before during while as like than
is are was were be been being has have had do does did will would can could should may
it its this that these those there here he she they we you i me him her them us my your
his our their who what which where when why how all some many few more most much no not
very too so just only also again still even ever never always often slowly quickly
one two three four five six seven eight nine ten first second last next new old young
big small large tiny huge tall short long wide narrow high low deep shallow full empty
red orange yellow green blue purple pink brown black white gray grey gold silver
dark light bright dim warm cold hot cool soft hard smooth rough wet dry clean dirty
beautiful pretty ugly happy sad calm quiet loud wild gentle strong weak fast slow
man woman person people child children boy girl baby family friend crowd dancer singer
cat dog bird fish horse cow lion tiger bear wolf fox rabbit deer elephant monkey dragon
tree trees flower flowers grass forest jungle garden leaf leaves plant field farm
sky sun moon star stars cloud clouds rain snow storm wind fog lightning rainbow sunset
sunrise night day morning evening dusk dawn light shadow shadows fire smoke water
sea ocean river lake wave waves beach sand island mountain mountains hill valley desert
rock stone ice cave road street city town village house home room building bridge tower
castle car train boat ship plane bicycle window door wall floor table chair bed kitchen
walk walks walking run runs running jump jumps jumping fly flies flying swim swims
swimming dance dances dancing sing sings singing play plays playing sit sits sitting
stand stands standing look looks looking watch watches turn turns turning move moves
moving fall falls falling rise rises rising spin spins spinning float floats floating
glow glows glowing shine shines shining flow flows flowing drift drifts drifting
camera shot close closeup wide aerial view pan zoom tracking slow motion scene frame
video film movie cinematic realistic photo photorealistic style painting drawing cartoon
anime animation render detailed sharp blurry blurred focus background foreground colors
color colorful vivid neon glowing lights music song beat rhythm bass drum drums guitar
piano voice concert stage sound echo echoes wave pulse dream dreamy magic magical space
planet galaxy universe abstract pattern patterns shape shapes circle circles square line
lines spiral particles texture glass metal wood paper quality best worst low high
overexposed static still subtitles works images picture overall fingers hands faces
deformed disfigured misshapen limbs fused legs background messy walking backwards
incomplete extra poorly drawn jpeg compression residue bad
""".split()
_PUNCTUATION = list(".,!?;:'\"-()")


def _build_tokenizer():
    """WordLevel tokenizer over a fixed vocabulary, wrapped as a transformers fast tokenizer.

    It appends ``</s>`` like the real UMT5 tokenizer so the pipeline's attention-mask based
    prompt lengths behave the same way.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in _SPECIAL_TOKENS + _WORDS + _PUNCTUATION:
        vocab.setdefault(tok, len(vocab))  # the word list has a few repeats; keep the first id

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        eos_token="</s>",
        model_max_length=_MAX_TEXT_TOKENS,
        padding_side="right",
    )


def build_tiny_pipeline() -> "diffusers.WanPipeline":
    """Build the tiny WanPipeline in memory.

    Deterministic: every call returns identical weights, because initialisation runs on a
    forked, locally seeded torch RNG (the caller's global RNG state is left untouched).
    """
    from diffusers import WanPipeline, WanTransformer3DModel

    return _build(WanPipeline, WanTransformer3DModel, {})


def build_tiny_ti2v_pipeline() -> "diffusers.WanPipeline":
    """Build the tiny TI2V pipeline in memory: :func:`build_tiny_pipeline` with Wan2.2 TI2V-5B's
    ``expand_timesteps`` (a timestep per latent token, so a given first frame can stay clean
    while the rest is denoised). Deterministic like :func:`build_tiny_pipeline`."""
    from diffusers import WanPipeline, WanTransformer3DModel

    return _build(WanPipeline, WanTransformer3DModel, {}, {"expand_timesteps": True})


def build_tiny_vace_pipeline() -> "diffusers.WanVACEPipeline":
    """Build the tiny WanVACEPipeline in memory: the tiny model's tokenizer, text encoder, VAE
    and scheduler configs with a WanVACETransformer3DModel (one VACE block, on layer 0).

    Deterministic like :func:`build_tiny_pipeline`.
    """
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    # The control input is the inactive and reactive video latents (2 x z_dim) plus the mask
    # folded into the latent grid (one channel per pixel of an 8 x 8 VAE cell).
    return _build(WanVACEPipeline, WanVACETransformer3DModel, {"vace_layers": [0], "vace_in_channels": 2 * 16 + 8 * 8})


_IMAGE_DIM = 16  # features per image token of the tiny CLIP encoder
_IMAGE_TOKENS = 4 * 4 + 1  # its tokens per image: (32 / 8)^2 patches + the class token


def _tiny_image_encoder(seed_offset: int) -> dict:
    """A tiny CLIP vision encoder (32 px images, 8 px patches) and its processor, as the
    ``image_encoder`` / ``image_processor`` components of a pipeline."""
    import torch

    # The Pil processor is what CLIPImageProcessor falls back to without torchvision (not a dependency).
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED + seed_offset)
        image_encoder = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=_IMAGE_DIM, projection_dim=_IMAGE_DIM, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, image_size=32, patch_size=8)).eval()
    return {"image_encoder": image_encoder, "image_processor": CLIPImageProcessorPil(size=32, crop_size=32)}


def build_tiny_i2v_pipeline() -> "diffusers.WanImageToVideoPipeline":
    """Build the tiny WanImageToVideoPipeline in memory: the tiny model's tokenizer, text
    encoder, VAE and scheduler configs, a WanTransformer3DModel taking the image-conditioned
    input (noisy latents + the 4-channel frame mask + the conditioning frames' latents) and the
    tokens of two images (first and last frame, as Wan2.1 FLF2V), and a tiny CLIP encoder.

    Deterministic like :func:`build_tiny_pipeline`.
    """
    return _tiny_image_to_video(images=2)


def build_tiny_i2v_first_pipeline() -> "diffusers.WanImageToVideoPipeline":
    """Build the tiny first-frame WanImageToVideoPipeline: as :func:`build_tiny_i2v_pipeline`,
    with the image tokens of one image (as Wan2.1-I2V: no positional embedding of two images).

    Deterministic like :func:`build_tiny_pipeline`.
    """
    return _tiny_image_to_video(images=1)


def _tiny_image_to_video(images: int):
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

    i2v = {"in_channels": 16 + 4 + 16, "image_dim": _IMAGE_DIM}
    if images == 2:  # the tokens of two images carry a positional embedding (FLF2V)
        i2v["pos_embed_seq_len"] = 2 * _IMAGE_TOKENS
    seed_offset = {2: 2, 1: 3}[images]  # tiny-i2v's encoder kept its first seed
    return _build(WanImageToVideoPipeline, WanTransformer3DModel, i2v, _tiny_image_encoder(seed_offset))


def build_tiny_animate_pipeline() -> "diffusers.WanAnimatePipeline":
    """Build the tiny WanAnimatePipeline in memory: the tiny model's tokenizer, text encoder,
    VAE and scheduler configs with a WanAnimateTransformer3DModel (a 32 px face motion encoder,
    the face adapter on every block) and a tiny CLIP vision encoder for the character image.

    Deterministic like :func:`build_tiny_pipeline`.
    """
    from diffusers import WanAnimatePipeline, WanAnimateTransformer3DModel

    animate = {
        # in_channels: noisy latents + reference latents (2 x z_dim) + the 4-channel frame mask
        "in_channels": 2 * 16 + 4, "image_dim": _IMAGE_DIM,
        "motion_encoder_size": 32, "motion_encoder_channel_sizes": {str(2 ** k): 8 for k in range(2, 6)},
        "motion_style_dim": 8, "motion_dim": 4, "motion_encoder_dim": 8,
        "face_encoder_hidden_dim": 16, "face_encoder_num_heads": 2, "inject_face_latents_blocks": 1,
    }
    return _build(WanAnimatePipeline, WanAnimateTransformer3DModel, animate, _tiny_image_encoder(1))


def build_tiny_helios_pipeline() -> "diffusers.HeliosPipeline":
    """Build the tiny HeliosPipeline in memory: the tiny model's tokenizer, text encoder and VAE
    with a HeliosTransformer3DModel (multi-term memory patches for the history) and a
    single-stage HeliosScheduler. Deterministic like :func:`build_tiny_pipeline`."""
    from diffusers import HeliosPipeline, HeliosScheduler

    return _tiny_helios(HeliosPipeline, HeliosScheduler(stage_range=[0, 1], stages=1, use_dynamic_shifting=True))


def build_tiny_helios_distilled_pipeline() -> "diffusers.HeliosPyramidPipeline":
    """Build the tiny HeliosPyramidPipeline in memory (``is_distilled``, HeliosDMDScheduler):
    :func:`build_tiny_helios_pipeline`'s modules sampled at three resolution stages.
    Deterministic like :func:`build_tiny_pipeline`."""
    from diffusers import HeliosDMDScheduler, HeliosPyramidPipeline

    # gamma below 1/3: the stage-change noise's 2x2 covariance (1 + gamma) I - gamma 11^T must stay
    # positive definite for its Cholesky factor (at 1/3 it is singular and float32 may refuse it).
    return _tiny_helios(HeliosPyramidPipeline, HeliosDMDScheduler(use_dynamic_shifting=True, gamma=0.25),
                        is_distilled=True)


def _tiny_helios(pipeline_cls, scheduler, **config):
    import torch
    from diffusers import HeliosTransformer3DModel, WanPipeline, WanTransformer3DModel

    wan = _build(WanPipeline, WanTransformer3DModel, {})  # the shared tokenizer, text encoder and VAE
    settings = {k: v for k, v in tiny_transformer_config().items() if k != "rope_max_seq_len"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED + 5)
        transformer = HeliosTransformer3DModel(**settings, rope_dim=(4, 4, 4), has_multi_term_memory_patch=True,
                                               guidance_cross_attn=True, zero_history_timestep=True).eval()
    return pipeline_cls(tokenizer=wan.tokenizer, text_encoder=wan.text_encoder, vae=wan.vae, scheduler=scheduler,
                        transformer=transformer, **config)


_TEXT_DIM = 32


def tiny_transformer_config(**extra) -> dict:
    """The tiny transformers' settings; ``extra``: a pipeline's own (and overrides, e.g. in_channels)."""
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 12,  # rope splits it 4/4/4 over t/h/w (h = w = 2 * (12 // 6))
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": _TEXT_DIM,
        "freq_dim": 32,
        "ffn_dim": 32,
        "num_layers": 2,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": _ROPE_MAX_SEQ_LEN,
        **extra,
    }


def _build(pipeline_cls, transformer_cls, transformer_extra: dict, components: dict | None = None):
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = _build_tokenizer()
    text_dim = _TEXT_DIM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        text_encoder = UMT5EncoderModel(
            UMT5Config(
                vocab_size=len(tokenizer),
                d_model=text_dim,
                d_kv=8,
                d_ff=64,
                num_layers=2,
                num_heads=4,
                relative_attention_num_buckets=8,
                relative_attention_max_distance=32,
                dropout_rate=0.0,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                is_encoder_decoder=False,
            )
        ).eval()
        transformer = transformer_cls(**tiny_transformer_config(**transformer_extra)).eval()
        # Same temporal (4x) and spatial (8x) compression and z_dim as Wan 2.1's VAE, with a few
        # channels only; keeps the real latent-normalisation statistics in its config.
        # num_res_blocks=0 (the decoder still gets one per stage) decodes ~1.7x faster than 1,
        # and its decodes stay close enough to linear in the latent for the preview fit to
        # beat a flat colour clearly (see studio.engine.preview).
        vae = AutoencoderKLWan(
            base_dim=4,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=0,
            temperal_downsample=[False, True, True],
        ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return pipeline_cls(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
        **(components or {}),
    )


# What a finished save contains; used to tell a usable folder from a hand-made or partial one.
_REQUIRED_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/tokenizer.json",
    "text_encoder/config.json",
    "transformer/config.json",
    "vae/config.json",
)
_REQUIRED_WEIGHT_DIRS = ("text_encoder", "transformer", "vae")
# ... and of a pipeline with an image encoder (Animate, I2V).
_IMAGE_MODEL_FILES = _REQUIRED_FILES + ("image_encoder/config.json", "image_processor/preprocessor_config.json")

_lock = threading.Lock()


def _complete(folder: Path, files: tuple[str, ...] = _REQUIRED_FILES,
              weight_dirs: tuple[str, ...] = _REQUIRED_WEIGHT_DIRS) -> bool:
    if not all((folder / rel).is_file() for rel in files):
        return False
    return all(any((folder / sub).glob("*.safetensors")) for sub in weight_dirs)


def _remove_stale_temp_dirs(models_dir: Path, dirname: str, older_than_s: float = 600.0) -> None:
    # Leftovers of a process killed mid-save. A build takes well under a second, so a temp
    # folder this old cannot belong to a builder that is still running.
    now = time.time()
    leftovers = [*models_dir.glob(f".{dirname}-tmp-*"), *models_dir.glob(f".{dirname}-stale-*")]
    for leftover in leftovers:
        try:
            if leftover.is_dir() and now - leftover.stat().st_mtime > older_than_s:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass  # raced with another cleaner


def ensure_tiny_model(models_dir: Path) -> Path:
    """Make sure ``models_dir/tiny`` holds a complete saved tiny pipeline; return that folder.

    The model is saved into a temporary folder next to the target and renamed into place,
    so a crash never leaves a half-written model behind and concurrent callers (threads or
    processes) either see nothing or a complete model. Load it with
    ``WanPipeline.from_pretrained(folder)``.
    """
    return ensure_saved(models_dir, TINY_MODEL_DIRNAME, build_tiny_pipeline)


def ensure_tiny_vace_model(models_dir: Path) -> Path:
    """Like :func:`ensure_tiny_model` for ``models_dir/tiny-vace``; load it with
    ``WanVACEPipeline.from_pretrained(folder)``."""
    return ensure_saved(models_dir, TINY_VACE_MODEL_DIRNAME, build_tiny_vace_pipeline)


def ensure_tiny_animate_model(models_dir: Path) -> Path:
    """Like :func:`ensure_tiny_model` for ``models_dir/tiny-animate``; load it with
    ``WanAnimatePipeline.from_pretrained(folder)``."""
    return ensure_saved(models_dir, TINY_ANIMATE_MODEL_DIRNAME, build_tiny_animate_pipeline, _IMAGE_MODEL_FILES,
                        _REQUIRED_WEIGHT_DIRS + ("image_encoder",))


def ensure_tiny_i2v_model(models_dir: Path) -> Path:
    """Like :func:`ensure_tiny_model` for ``models_dir/tiny-i2v``; load it with
    ``WanImageToVideoPipeline.from_pretrained(folder)``."""
    return ensure_saved(models_dir, TINY_I2V_MODEL_DIRNAME, build_tiny_i2v_pipeline, _IMAGE_MODEL_FILES,
                        _REQUIRED_WEIGHT_DIRS + ("image_encoder",))


def ensure_tiny_ti2v_model(models_dir: Path) -> Path:
    """Like :func:`ensure_tiny_model` for ``models_dir/tiny-ti2v``."""
    return ensure_saved(models_dir, TINY_TI2V_MODEL_DIRNAME, build_tiny_ti2v_pipeline)


def ensure_tiny_i2v_first_model(models_dir: Path) -> Path:
    """Like :func:`ensure_tiny_model` for ``models_dir/tiny-i2v-first``; load it with
    ``WanImageToVideoPipeline.from_pretrained(folder)``."""
    return ensure_saved(models_dir, TINY_I2V_FIRST_MODEL_DIRNAME, build_tiny_i2v_first_pipeline, _IMAGE_MODEL_FILES,
                        _REQUIRED_WEIGHT_DIRS + ("image_encoder",))


def ensure_tiny_helios_model(models_dir: Path) -> Path:
    """Like :func:`ensure_tiny_model` for ``models_dir/tiny-helios``; load it with
    ``HeliosPipeline.from_pretrained(folder)``."""
    return ensure_saved(models_dir, TINY_HELIOS_MODEL_DIRNAME, build_tiny_helios_pipeline)


def ensure_tiny_helios_distilled_model(models_dir: Path) -> Path:
    """Like :func:`ensure_tiny_model` for ``models_dir/tiny-helios-distilled``; load it with
    ``HeliosPyramidPipeline.from_pretrained(folder)``."""
    return ensure_saved(models_dir, TINY_HELIOS_DISTILLED_MODEL_DIRNAME, build_tiny_helios_distilled_pipeline)


def ensure_saved(models_dir: Path, dirname: str, build: Callable[[], Any], files: tuple[str, ...] = _REQUIRED_FILES,
                 weight_dirs: tuple[str, ...] = _REQUIRED_WEIGHT_DIRS) -> Path:
    """Make sure ``models_dir/dirname`` holds a complete save of ``build()`` (an object with
    ``save_pretrained``: a pipeline or a transformers model); return that folder.

    Complete means every path in ``files`` exists and every folder in ``weight_dirs`` ("" for
    the folder itself) holds a ``.safetensors`` file. The model is saved into a temporary
    folder next to the target and renamed into place, so a crash never leaves a half-written
    model behind and concurrent callers (threads or processes) see nothing or a complete model.
    """
    models_dir = Path(models_dir)
    target = models_dir / dirname
    if _complete(target, files, weight_dirs):
        return target
    with _lock:  # one builder per process; other processes are handled by the atomic rename
        if _complete(target, files, weight_dirs):
            return target
        models_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_dirs(models_dir, dirname)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dirname}-tmp-", dir=models_dir))
        try:
            build().save_pretrained(tmp, safe_serialization=True)
            if target.exists() and not _complete(target, files, weight_dirs):
                # Something incomplete that we did not write atomically (e.g. a manual copy):
                # move it aside first, because rename cannot replace a non-empty directory.
                stale = Path(tempfile.mkdtemp(prefix=f".{dirname}-stale-", dir=models_dir))
                os.replace(target, stale / "old")
                shutil.rmtree(stale, ignore_errors=True)
            try:
                os.rename(tmp, target)
            except OSError:
                # Another process won the race; its copy is as good as ours.
                if not _complete(target, files, weight_dirs):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny_fast_lora() -> dict:
    """The tiny model's fast-mode LoRA (``studio.models.catalog.TINY_FAST_LORA``): random
    weights from a fixed seed. It distils nothing; it lets the few-step path (adapters loaded,
    4 steps, no guidance) run offline."""
    return tiny_attention_lora(_SEED + 7, 0.2)


def tiny_attention_lora(seed: int, std: float, rank: int = 4) -> dict:
    """A LoRA of every attention projection of the tiny transformer (both blocks, self and cross
    attention), random A and B (``std``), in the diffusers file convention (keys under ``transformer.``)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    config = tiny_transformer_config()
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    tensors = {}
    for block in range(config["num_layers"]):
        for attention in ("attn1", "attn2"):
            for layer in ("to_q", "to_k", "to_v", "to_out.0"):
                key = f"transformer.blocks.{block}.{attention}.{layer}"
                tensors[f"{key}.lora_A.weight"] = torch.randn(rank, dim, generator=generator) * std
                tensors[f"{key}.lora_B.weight"] = torch.randn(dim, rank, generator=generator) * std
    return tensors


def ensure_tiny_fast_lora(models_dir: Path) -> Path:
    """``models_dir/tiny-fast-lora.safetensors``, written once (atomically) and reused."""
    from safetensors.torch import save_file

    from studio.models.catalog import TINY_FAST_LORA

    target = Path(models_dir) / TINY_FAST_LORA
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.part")
        save_file(build_tiny_fast_lora(), part)
        os.replace(part, target)
    return target
