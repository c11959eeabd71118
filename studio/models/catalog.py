"""The catalog of models the studio can run: the real Wan variants, Helios, and the offline ``tiny`` models.

Native sizes, frame rates and frame limits are the ones the Wan authors trained and published
(Wan2.1 / Wan2.2 READMEs and ``wan/configs``); ``vram_gb`` is the published single-GPU peak
for the model's native setting with the authors' offload flags, where they gave one.
A request beyond a model's native size, frame rate or length is generated natively and then
resized / resampled; the result metadata says so (see ``studio.engine.plan``).

Helios (``HeliosPipeline`` / ``HeliosPyramidPipeline``, PKU-YuanGroup's autoregressive fine-tune
of Wan2.1-14B) is a ``t2v`` model with ``chunked`` set: it makes clips of up to ``max_frames``
in one pass, 33 frames at a time (native size and fps from the authors' pipeline defaults and
examples: 640x384 at 24 fps).

Each model has a ``task``: ``t2v`` models (``WanPipeline``) generate from text and are what
:data:`CATALOG` lists (the ``model`` of a generation request, the Generate tab, ``/v1/models``,
the orchestrator); ``vace`` models (``WanVACEPipeline``: masked video-to-video, used by Video
Inpainting) are in :data:`VACE_CATALOG`; ``animate`` models (``WanAnimatePipeline``: a character
image animated by pose and face videos, used by V2V motion transfer and Lip-Sync's model paths)
are in :data:`ANIMATE_CATALOG`; ``i2v`` models (``WanImageToVideoPipeline`` with a first and a
last frame, Wan2.1 FLF2V: the Scene Orchestrator's morph transitions) are in :data:`I2V_CATALOG`;
``i2v`` models with one image (Wan2.1-I2V, Wan2.2-I2V) and with two are also generation models
(``image`` / ``last_image`` on generate): :data:`GENERATION_CATALOG`.
:func:`get_spec` finds any kind.
"""

from __future__ import annotations

from dataclasses import dataclass

TINY = "tiny"
TINY_VACE = "tiny-vace"
TINY_ANIMATE = "tiny-animate"
TINY_I2V = "tiny-i2v"
TINY_I2V_FIRST = "tiny-i2v-first"
TINY_TI2V = "tiny-ti2v"
TINY_HELIOS = "tiny-helios"
TINY_HELIOS_DISTILLED = "tiny-helios-distilled"
TASKS = ("t2v", "vace", "animate", "i2v")
#: What each task's models are, in words (for messages).
TASK_LABELS = {"t2v": "Wan text-to-video", "vace": "Wan VACE (masked video generation)",
               "animate": "Wan Animate (pose- and face-driven character video)",
               "i2v": "Wan image-to-video (I2V from a first frame, first-last-frame FLF2V)"}


@dataclass(frozen=True)
class FastMode:
    """A model's few-step mode (generate's ``mode: "fast"``): distillation LoRAs with which it
    samples in ``steps`` steps without classifier-free guidance.

    Attributes:
        label: what it is, in words (result notes).
        steps: denoising steps it was distilled for.
        hub_id: the Hugging Face repository of the LoRA files; None: built offline (``tiny``).
        files: (filename, expert) pairs: expert 0 is the (high-noise) ``transformer``, 1 the
            low-noise ``transformer_2`` of Wan2.2-A14B, None every transformer.
        guidance: the guidance it runs at (1.0: one transformer pass per step).
    """

    label: str
    steps: int
    hub_id: str | None
    files: tuple[tuple[str, int | None], ...]
    guidance: float = 1.0


@dataclass(frozen=True)
class Chunked:
    """An autoregressive model's chunks (Helios): it generates ``frames`` frames at a time, each
    chunk conditioned on a compressed history of every chunk before it, so ONE pass makes a whole
    long clip (up to the model's ``max_frames``) with no windows to stitch. The engine streams each
    chunk's frames as it finishes (``studio.engine.chunked``).

    Attributes:
        frames: frames per chunk (9 latent frames: 33 for Helios).
        pyramid_steps: ``HeliosPyramidPipeline`` models: the denoising steps at each resolution stage
            (coarse to full); their step count and guidance are the model's own. Empty: the plain
            ``HeliosPipeline`` at the request's steps and guidance.
        amplify_first_chunk: the first chunk runs twice the pyramid's steps (Helios-Distilled).
    """

    frames: int = 33
    pyramid_steps: tuple[int, ...] = ()
    amplify_first_chunk: bool = False

    def steps(self, chunks: int, steps_per_chunk: int) -> int:
        """Denoising steps of a clip of ``chunks`` chunks."""
        return steps_per_chunk * (chunks + (1 if self.amplify_first_chunk else 0))


#: The offline tiny model's fast-mode LoRA file (built by ``studio.models.tiny``).
TINY_FAST_LORA = "tiny-fast-lora.safetensors"


@dataclass(frozen=True)
class ModelSpec:
    """One model the studio can load.

    Attributes:
        id: the name users pass as ``model``.
        label: human-readable name for the UI.
        repo_id: diffusers-format repository on the Hugging Face Hub (``None`` for ``tiny``).
        native_width, native_height: the landscape size the model was trained at; portrait and
            square requests keep this pixel area.
        native_fps: frame rate of the training clips.
        max_frames: longest clip (frames) the model generates in one pass; counts are 4k+1.
        size_multiple: width/height must be multiples of this (VAE stride x patch size).
        vram_gb: published peak GPU memory at the native setting (None: not published).
        params_b: transformer parameters in billions.
        trained: False only for the offline tiny model, whose output is noise-like.
        default_steps, default_guidance: the authors' recommended sampling settings.
        task: ``t2v`` (text-to-video), ``vace`` (masked video generation: inpaint/outpaint) or
            ``animate`` (character animation / replacement driven by pose and face videos) or
            ``i2v`` (video between a given first and last frame).
        pipeline: the diffusers pipeline class that loads and runs it.
        architecture: the ``studio.models.cost.architectures.ARCHITECTURES`` entry its memory estimate
            starts from (default: its own id); parameters beyond it are added as weights.
        continuation: the model that continues this model's clips past one pass (``max_frames``):
            a longer request is generated as a chain of windows, the first by this model and each
            later one by the continuation model, conditioned on the window before it
            (``studio.engine.long_video``): a ``vace`` sibling on its last 5 frames (known
            frames), or an image-to-video model (the model itself for I2V and TI2V) on its last
            frame. ``None``: no continuation path; a longer request is one pass interpolated
            over the duration.
        fast: the model's few-step mode (``FastMode``), None where the studio knows of none.
        images: the frames an ``i2v`` model is conditioned on: 1 a first frame (image-to-video),
            2 a first and a last frame (FLF2V); 0 for the other tasks.
        optional_image: a text-to-video model that can also start from a first frame (Wan2.2
            TI2V-5B: its first latent frame is the image's, ``expand_timesteps``).
        chunked: an autoregressive model's chunks (Helios, ``Chunked``); None for the Wan models,
            whose one pass is one clip of at most ``max_frames``.
        similarity_skip_levels: batch similarity caching's (minimum pooled-text cosine, share of
            steps skipped) levels, calibrated on THIS model's text encoder
            (``studio.engine.state_cache``); ``None``: not calibrated, so a batch on this model
            reuses nothing (cosines of different encoders are not comparable: the real UMT5
            scores unrelated prompts as high as the tiny encoder scores rewordings).
    """

    id: str
    label: str
    repo_id: str | None
    native_width: int
    native_height: int
    native_fps: int
    max_frames: int
    size_multiple: int = 16
    vram_gb: float | None = None
    params_b: float = 0.0
    trained: bool = True
    default_steps: int = 50
    default_guidance: float = 5.0
    notes: str = ""
    task: str = "t2v"
    pipeline: str = "WanPipeline"
    architecture: str | None = None
    continuation: str | None = None
    fast: FastMode | None = None
    images: int = 0
    optional_image: bool = False
    chunked: Chunked | None = None
    similarity_skip_levels: tuple[tuple[float, float], ...] | None = None

    @property
    def similarity_calibrated(self) -> bool:
        """Whether batch similarity caching may run on this model (its levels were calibrated)."""
        return bool(self.similarity_skip_levels)

    @property
    def native_area(self) -> int:
        return self.native_width * self.native_height

    @property
    def max_seconds(self) -> float:
        return (self.max_frames - 1) / self.native_fps

    @property
    def pass_frames(self) -> int:
        """Frames one transformer pass denoises at once: a chunk, or the whole clip (memory)."""
        return self.chunked.frames if self.chunked else self.max_frames


MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id=TINY,
            label="tiny (offline, untrained — output is noise-like, for testing the studio)",
            repo_id=None,
            native_width=160,
            native_height=96,
            native_fps=8,
            max_frames=33,
            vram_gb=None,
            params_b=0.00002,
            trained=False,
            notes="Built locally from the real Wan classes with random weights; needs no network.",
            continuation=TINY_VACE,
            fast=FastMode("tiny's offline 4-step LoRA (random weights: it runs the fast path and distils nothing)", 4,
                          None, ((TINY_FAST_LORA, None),)),
            # Measured on its own (random) encoder: rewordings of one prompt score 0.84-0.93,
            # unrelated prompts 0.50-0.81 (studio.engine.state_cache).
            similarity_skip_levels=((0.97, 0.40), (0.93, 0.30), (0.90, 0.20)),
        ),
        ModelSpec(
            id="wan2.1-t2v-1.3b",
            label="Wan2.1 T2V 1.3B (480p)",
            repo_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            native_width=832,
            native_height=480,
            native_fps=16,
            max_frames=81,
            vram_gb=8.19,
            params_b=1.3,
            notes="Wan2.1 README: 8.19 GB VRAM with offload, ~4 min for 5 s 480p on an RTX 4090.",
            continuation="wan2.1-vace-1.3b",
        ),
        ModelSpec(
            id="wan2.1-t2v-14b",
            label="Wan2.1 T2V 14B (720p)",
            repo_id="Wan-AI/Wan2.1-T2V-14B-Diffusers",
            native_width=1280,
            native_height=720,
            native_fps=16,
            max_frames=81,
            vram_gb=69.1,
            params_b=14.0,
            notes="Wan2.1 README: 720p, 50 steps, 69.1 GB peak on one H800 with offload.",
            continuation="wan2.1-vace-14b",
            fast=FastMode("lightx2v's 4-step step- and CFG-distillation LoRA, rank 64", 4, "lightx2v/Wan2.1-Distill-Loras",
                          (("wan2.1_t2v_14b_lora_rank64_lightx2v_4step.safetensors", None),)),
        ),
        ModelSpec(
            id="wan2.2-ti2v-5b",
            label="Wan2.2 TI2V 5B (720p, 24 fps)",
            repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
            native_width=1280,
            native_height=704,
            native_fps=24,
            max_frames=121,
            size_multiple=32,
            vram_gb=24.0,
            params_b=5.0,
            notes="Wan2.2 README: 720p/121 frames runs on a 24 GB GPU with offload.",
            optional_image=True,
            continuation="wan2.2-ti2v-5b",
        ),
        ModelSpec(
            id="wan2.2-t2v-a14b",
            label="Wan2.2 T2V A14B (MoE, two experts)",
            repo_id="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
            native_width=1280,
            native_height=720,
            native_fps=16,
            max_frames=81,
            vram_gb=80.0,
            params_b=27.0,
            default_steps=40,
            default_guidance=4.0,
            notes="Wan2.2 README: needs at least 80 GB for single-GPU 720p; 2 x 14B experts.",
            fast=FastMode("lightx2v's 4-step distillation LoRAs, one per expert, rank 64", 4,
                          "lightx2v/Wan2.2-Distill-Loras",
                          (("wan2.2_t2v_A14b_high_noise_lora_rank64_lightx2v_4step_1217.safetensors", 0),
                           ("wan2.2_t2v_A14b_low_noise_lora_rank64_lightx2v_4step_1217.safetensors", 1))),
            continuation="wan2.2-i2v-a14b",
        ),
        ModelSpec(
            id="helios-base",
            label="Helios Base 14B (384p, 24 fps, minute-long, autoregressive)",
            repo_id="BestWishYsh/Helios-Base",
            native_width=640,
            native_height=384,
            native_fps=24,
            max_frames=44 * 33,  # 60 s at 24 fps in 33-frame chunks (HeliosBench runs up to 1440 frames)
            params_b=14.0,
            default_steps=50,
            default_guidance=5.0,
            notes="Helios (PKU-YuanGroup, on Wan2.1-14B): an autoregressive model that generates 33-frame chunks, "
                  "each conditioned on a compressed history of the whole clip so far; minute-long clips in one pass. "
                  "Base: best quality, 50 steps with guidance. The authors publish no single-GPU VRAM figure.",
            pipeline="HeliosPipeline",
            architecture="wan2.1-t2v-14b",
            optional_image=True,
            chunked=Chunked(33),
        ),
        ModelSpec(
            id="helios-distilled",
            label="Helios Distilled 14B (384p, 24 fps, real-time, 3 pyramid stages)",
            repo_id="BestWishYsh/Helios-Distilled",
            native_width=640,
            native_height=384,
            native_fps=24,
            max_frames=44 * 33,
            size_multiple=64,  # three pyramid stages halve the latent twice, then 2x2 patches
            params_b=14.0,
            default_steps=6,
            default_guidance=1.0,
            notes="Helios-Distilled: the authors' 19.5 FPS on one H100; 2 steps at each of 3 resolution stages per "
                  "chunk (the first chunk twice), no classifier-free guidance (the authors' settings).",
            pipeline="HeliosPyramidPipeline",
            architecture="wan2.1-t2v-14b",
            optional_image=True,
            chunked=Chunked(33, pyramid_steps=(2, 2, 2), amplify_first_chunk=True),
        ),
        ModelSpec(
            id=TINY_HELIOS,
            label="tiny Helios (offline, untrained — output is noise-like, for testing the studio)",
            repo_id=None,
            native_width=160,
            native_height=96,
            native_fps=8,
            max_frames=15 * 33,  # 60 s at 8 fps
            params_b=0.00002,
            trained=False,
            notes="Built locally from the real Helios classes with random weights (33-frame chunks with history); "
                  "needs no network.",
            pipeline="HeliosPipeline",
            architecture=TINY,
            optional_image=True,
            chunked=Chunked(33),
        ),
        ModelSpec(
            id=TINY_HELIOS_DISTILLED,
            label="tiny Helios Distilled (offline, untrained — output is noise-like, for testing the studio)",
            repo_id=None,
            native_width=192,
            native_height=64,
            native_fps=8,
            max_frames=15 * 33,
            size_multiple=64,
            params_b=0.00002,
            trained=False,
            default_steps=3,
            default_guidance=1.0,
            notes="Built locally from the real Helios pyramid classes with random weights (1 step at each of 3 "
                  "stages, the first chunk twice); needs no network.",
            pipeline="HeliosPyramidPipeline",
            architecture=TINY,
            optional_image=True,
            chunked=Chunked(33, pyramid_steps=(1, 1, 1), amplify_first_chunk=True),
        ),
        ModelSpec(
            id=TINY_TI2V,
            label="tiny TI2V (offline, untrained — output is noise-like, for testing the studio)",
            repo_id=None,
            native_width=160,
            native_height=96,
            native_fps=8,
            max_frames=33,
            params_b=0.00002,
            trained=False,
            notes="Built locally like tiny, with Wan2.2 TI2V-5B's per-token timesteps (expand_timesteps): text "
                  "alone, or a first frame that becomes the first latent frame; needs no network.",
            architecture=TINY,
            optional_image=True,
            continuation=TINY_TI2V,
        ),
        ModelSpec(
            id=TINY_VACE,
            label="tiny VACE (offline, untrained — output is noise-like, for testing the studio)",
            repo_id=None,
            native_width=160,
            native_height=96,
            native_fps=8,
            max_frames=33,
            params_b=0.00004,
            trained=False,
            notes="Built locally from the real Wan VACE classes with random weights; needs no network.",
            task="vace",
            pipeline="WanVACEPipeline",
            architecture=TINY,
        ),
        ModelSpec(
            id="wan2.1-vace-1.3b",
            label="Wan2.1 VACE 1.3B (480p, inpaint/outpaint)",
            repo_id="Wan-AI/Wan2.1-VACE-1.3B-diffusers",
            native_width=832,
            native_height=480,
            native_fps=16,
            max_frames=81,
            params_b=2.15,  # 1.42 B Wan2.1-1.3B transformer + 15 VACE blocks (0.73 B), counted from the config
            notes="Wan2.1 VACE: 480p, 81 frames at 16 fps; the authors publish no VRAM figure.",
            task="vace",
            pipeline="WanVACEPipeline",
            architecture="wan2.1-t2v-1.3b",
        ),
        ModelSpec(
            id="wan2.1-vace-14b",
            label="Wan2.1 VACE 14B (720p, inpaint/outpaint)",
            repo_id="Wan-AI/Wan2.1-VACE-14B-diffusers",
            native_width=1280,
            native_height=720,
            native_fps=16,
            max_frames=81,
            params_b=17.34,  # 14.29 B Wan2.1-14B transformer + 8 VACE blocks (3.05 B), counted from the config
            notes="Wan2.1 VACE: 480p and 720p, 81 frames at 16 fps; the authors publish no VRAM figure.",
            task="vace",
            pipeline="WanVACEPipeline",
            architecture="wan2.1-t2v-14b",
        ),
        ModelSpec(
            id=TINY_ANIMATE,
            label="tiny Animate (offline, untrained — output is noise-like, for testing the studio)",
            repo_id=None,
            native_width=160,
            native_height=96,
            native_fps=8,
            max_frames=33,
            params_b=0.00004,
            trained=False,
            default_steps=20,
            default_guidance=1.0,
            notes="Built locally from the real Wan Animate classes with random weights; needs no network.",
            task="animate",
            pipeline="WanAnimatePipeline",
            architecture=TINY,
        ),
        ModelSpec(
            id="wan2.2-animate-14b",
            label="Wan2.2 Animate 14B (720p, character animation / replacement)",
            repo_id="Wan-AI/Wan2.2-Animate-14B-Diffusers",
            native_width=1280,
            native_height=720,
            native_fps=30,
            max_frames=77,
            params_b=14.0,
            default_steps=20,
            default_guidance=1.0,
            notes="Wan2.2 Animate: 720p, segments of 77 frames, 30 fps driving videos (the authors' "
                  "preprocessing default), 20 steps without CFG; the authors publish no VRAM figure. "
                  "params_b counts the 14B transformer; its motion and face encoders are not counted.",
            task="animate",
            pipeline="WanAnimatePipeline",
            architecture="wan2.1-t2v-14b",
        ),
        ModelSpec(
            id=TINY_I2V,
            label="tiny I2V (offline, untrained — output is noise-like, for testing the studio)",
            repo_id=None,
            native_width=160,
            native_height=96,
            native_fps=8,
            max_frames=33,
            params_b=0.00003,
            trained=False,
            notes="Built locally from the real Wan image-to-video classes with random weights (first and last "
                  "frame conditioning, as FLF2V); needs no network.",
            task="i2v",
            pipeline="WanImageToVideoPipeline",
            architecture=TINY,
            images=2,
        ),
        ModelSpec(
            id=TINY_I2V_FIRST,
            label="tiny image-to-video (offline, untrained — output is noise-like, for testing the studio)",
            repo_id=None,
            native_width=160,
            native_height=96,
            native_fps=8,
            max_frames=33,
            params_b=0.00003,
            trained=False,
            notes="Built locally from the real Wan image-to-video classes with random weights (a first frame, as "
                  "Wan2.1-I2V); needs no network.",
            task="i2v",
            pipeline="WanImageToVideoPipeline",
            architecture=TINY,
            images=1,
            continuation=TINY_I2V_FIRST,
        ),
        ModelSpec(
            id="wan2.1-i2v-14b-480p",
            label="Wan2.1 I2V 14B (480p, from a first frame)",
            repo_id="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
            native_width=832,
            native_height=480,
            native_fps=16,
            max_frames=81,
            params_b=14.0,
            notes="Wan2.1 I2V: 480p, 81 frames at 16 fps from a first frame (CLIP image tokens and the frame's "
                  "latents); the authors publish no single-GPU VRAM figure for it.",
            task="i2v",
            pipeline="WanImageToVideoPipeline",
            architecture="wan2.1-t2v-14b",
            images=1,
            continuation="wan2.1-i2v-14b-480p",
        ),
        ModelSpec(
            id="wan2.1-i2v-14b-720p",
            label="Wan2.1 I2V 14B (720p, from a first frame)",
            repo_id="Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
            native_width=1280,
            native_height=720,
            native_fps=16,
            max_frames=81,
            params_b=14.0,
            notes="Wan2.1 I2V: 720p, 81 frames at 16 fps from a first frame.",
            task="i2v",
            pipeline="WanImageToVideoPipeline",
            architecture="wan2.1-t2v-14b",
            images=1,
            continuation="wan2.1-i2v-14b-720p",
        ),
        ModelSpec(
            id="wan2.2-i2v-a14b",
            label="Wan2.2 I2V A14B (MoE, from a first frame)",
            repo_id="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
            native_width=1280,
            native_height=720,
            native_fps=16,
            max_frames=81,
            params_b=27.0,
            default_steps=40,
            default_guidance=3.5,
            notes="Wan2.2 I2V A14B: 480p and 720p, 81 frames at 16 fps from a first frame; two 14B experts.",
            task="i2v",
            pipeline="WanImageToVideoPipeline",
            architecture="wan2.2-t2v-a14b",
            images=1,
            continuation="wan2.2-i2v-a14b",
        ),
        ModelSpec(
            id="wan2.1-flf2v-14b",
            label="Wan2.1 FLF2V 14B (720p, first and last frame)",
            repo_id="Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
            native_width=1280,
            native_height=720,
            native_fps=16,
            max_frames=81,
            params_b=14.0,
            notes="Wan2.1 FLF2V: 720p, 81 frames at 16 fps between a given first and last frame; the authors "
                  "publish no single-GPU VRAM figure for it.",
            task="i2v",
            pipeline="WanImageToVideoPipeline",
            architecture="wan2.1-t2v-14b",
            images=2,
        ),
    )
}

#: Text-to-video models: what generation requests, the Generate tab and ``/v1/models`` offer.
CATALOG: dict[str, ModelSpec] = {k: v for k, v in MODELS.items() if v.task == "t2v"}
#: Wan VACE models (masked video generation), used by Video Inpainting's model path.
VACE_CATALOG: dict[str, ModelSpec] = {k: v for k, v in MODELS.items() if v.task == "vace"}
#: Wan Animate models (pose- and face-driven character video): motion transfer and lip-sync.
ANIMATE_CATALOG: dict[str, ModelSpec] = {k: v for k, v in MODELS.items() if v.task == "animate"}
#: Wan first-last-frame-to-video models: the Scene Orchestrator's morph transitions.
I2V_CATALOG: dict[str, ModelSpec] = {k: v for k, v in MODELS.items() if v.task == "i2v" and v.images == 2}
#: Models a generation request may name: text-to-video, and image-to-video (with ``image``, and
#: ``last_image`` for the first-last-frame ones).
GENERATION_CATALOG: dict[str, ModelSpec] = {k: v for k, v in MODELS.items() if v.task in ("t2v", "i2v")}


def get_spec(model_id: str) -> ModelSpec:
    """The catalog entry for ``model_id`` (any task); raises ``KeyError`` for unknown ids."""
    return MODELS[model_id]
