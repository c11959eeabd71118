"""What the core returns about tasks: the seed's response bodies, as pydantic models.

The REST routes use them as response models, the UI and Gradio API render them; they are the
same objects everywhere, so the three ways in can never report different things.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class SubmitResponse(BaseModel):
    """Reply to a generate request: the task is stored and queued."""

    task_id: str
    status: str = Field(description="Always 'pending' right after submission")
    message: str
    estimated_time_seconds: float = Field(description="Queue wait plus this task's own run, from the one cost model "
                                                      "(studio.engine.estimate): rates measured on this server, or "
                                                      "documented priors until measured; the task's status says which "
                                                      "(estimate_basis, estimate_samples)")
    queue_position: int = Field(description="1 = next to start; counts only tasks that start before this one")


class TaskStatus(BaseModel):
    """Live state of a task."""

    task_id: str
    status: str = Field(description="pending, loading_model, generating_base, encoding, completed, failed or cancelled")
    progress: float = Field(ge=0, le=1)
    current_step: str
    elapsed_seconds: float = Field(description="Since the task started running (0 while pending)")
    eta_seconds: float | None = Field(description="Remaining seconds from measured step times; null when unknown")
    preview_url: str | None = Field(description="Latest preview of the denoised estimate (JPEG)")
    queue_position: int = Field(description="0 once started")
    error: str | None = None
    error_type: str | None = None
    estimate_basis: str | None = Field(None, description="What the task's time estimate rests on: 'prior' (documented "
                                                         "anchors, nothing measured on this server yet) or 'measured' "
                                                         "(this server's moving averages); null once the task ended. "
                                                         "While it runs, eta_seconds comes from its own step times")
    estimate_samples: int | None = Field(None, description="Finished runs the measured rate averages (0 for a prior)")


class DecoderRunStats(BaseModel):
    """One task's step-cache ("speculative decoder") figures; definitions in studio.genius.decoder.stats."""

    level: str = Field(description="acceleration: off, balanced or fast")
    method: str | None = Field(description="first_block_cache, or null when off")
    threshold: float | None = Field(description="FirstBlockCache threshold on the relative first-block residual change")
    steps: int
    passes: int = Field(description="Transformer forward passes (steps x CFG branches)")
    passes_reused: int = Field(description="Passes whose remaining blocks were skipped (cached residual reused)")
    steps_fully_computed: int
    steps_fully_reused: int
    tokens_per_pass: int = Field(description="Latent tokens per transformer pass")
    total_tokens: int = Field(description="passes x tokens_per_pass")
    accepted_tokens: int = Field(description="passes_reused x tokens_per_pass")
    acceptance_rate: float
    speedup_factor: float = Field(description="Measured A/B speedup (uncached_measured_seconds / denoise_seconds) "
                                              "when an acceleration=off run of the same shape was measured here, "
                                              "else estimated_speedup_factor; speedup_basis says which")
    average_draft_time_ms: float = Field(description="Mean first-block (draft) time per cached pass")
    average_verify_time_ms: float = Field(description="Mean residual comparison (verify) time per compared pass")
    draft_passes: int
    verify_passes: int
    full_step_seconds: float = Field(description="Mean fully computed step after the first, comparison time removed")
    full_step_samples: int = Field(description="Steps full_step_seconds was measured over")
    uncached_estimate_seconds: float = Field(description="first step + full_step_seconds x (steps - 1): an "
                                                         "in-run extrapolation, not a measurement")
    denoise_seconds: float = Field(description="Sum of the engine's measured step times")
    speedup_basis: str | None = Field(None, description="'measured: A/B ...', 'estimate: ...' (with what it rests "
                                                        "on) or 'off: ...'")
    estimated_speedup_factor: float | None = Field(None, description="uncached_estimate_seconds / denoise_seconds")
    uncached_measured_seconds: float | None = Field(None, description="Median denoising time of the last "
                                                                      "acceleration=off runs of the same shape on "
                                                                      "this server; null when none was measured")
    baseline_runs: int = Field(0, description="acceleration=off runs uncached_measured_seconds is the median of")


class DenoisingStateReuse(BaseModel):
    """Approximate caching: which earlier task's early state this one started from."""

    source_task_id: str
    cosine: float = Field(description="Cosine of the two prompts' pooled text embeddings")
    skipped_steps: int = Field(description="Denoising steps not run (the source's first steps)")


class BatchRunInfo(BaseModel):
    """How a batch task ran: tasks denoised in the same pipeline call, text-encoding reuse."""

    batch_id: str
    group_size: int = Field(description="Tasks denoised together in one batched pipeline call")
    group: list[str] = Field(default_factory=list, description="The ids of those tasks (this one included)")
    text_encoding: str = Field(description="'reused' (an equal prompt was encoded before) or 'computed'")
    denoising_state: DenoisingStateReuse | None = Field(
        None, description="Set when the task started from a near-identical prompt's cached state")


class ResultMetadata(BaseModel):
    """How the video was made. ``notes`` lists every way the output differs from the request."""

    model_config = {"protected_namespaces": ()}

    prompt: str
    model: str
    seed: int
    negative_prompt: str
    genre: str
    model_trained: bool
    fps: int
    frames: int
    width: int
    height: int
    generated_width: int
    generated_height: int
    generated_frames: int
    num_inference_steps: int
    guidance_scale: float
    memory_profile: str
    frame_rate_method: str = Field("nearest", description="How output frames were made from the generated ones: "
                                   "'nearest' (at most as many as generated: frames dropped, none repeated) or "
                                   "'optical_flow' (more: interpolated, no frame shown twice) or 'learned' (more, "
                                   "made by the server's RIFE network, named in interpolator)")
    scaling_method: str = Field("resize", description="How the output size was reached: 'resize' (not larger "
                                "than generated), 'upscale' (bicubic with edge-aware sharpening) or 'learned' "
                                "(the server's ESRGAN-family network, named in upscaler)")
    upscaler: dict | None = Field(None, description="The learned upscaler that ran: model file, architecture, scale, "
                                                    "features, blocks, its output size and the resize after it")
    interpolator: dict | None = Field(None, description="The learned frame interpolator that ran: model file, "
                                                        "architecture, block widths")
    timings: dict[str, float]
    notes: list[str]
    decoder: DecoderRunStats | None = Field(None, description="Step-cache stats of this task (acceleration)")
    batch: BatchRunInfo | None = Field(None, description="For batch tasks: how it was run")
    windows: list[dict] | None = Field(
        None, description="A clip longer than one model pass: each window generated, in order (index, model, seed, "
                          "generated_frames, new_frames, context_frames, clip_frames [start, end) at the native fps, "
                          "conditioning, colour_correction, seconds)")
    continuation_model: str | None = Field(None, description="The model that generated the windows after the first")
    chunks: list[dict] | None = Field(
        None, description="An autoregressive model's clip (Helios): each chunk generated, in order (index, frames, "
                          "clip_frames [start, end) at the native fps, seconds)")
    loras: list[dict] | None = Field(None, description="LoRA adapters applied: [{id, name, scale}]")
    speed: dict | None = Field(None, description="How the model ran (studio.models.speed): regional compile, "
                                                 "attention backend, VAE dtype and tiling, and notes on what was "
                                                 "not used and why")
    conditioning: str = Field("text", description="What the video was conditioned on besides the prompt: 'text' "
                                                  "alone, the given 'first frame', or 'first and last frame'")
    mode: str = Field("standard", description="'fast': the model's few-step distillation ran (num_inference_steps "
                                              "is its step count; the notes name the LoRA)")


class EditMetadata(BaseModel):
    """How a video-side genius task (lip-sync, inpaint, V2V, consistency, scene) made its video."""

    feature: str = Field(description="lipsync, inpaint, v2v, consistency, scene or scene_shot")
    path: str = Field(description="'classical' (no model) or 'model'")
    method: str = Field(description="The algorithm or pipeline that ran")
    source: dict | None = Field(description="The input video: {task_id} or {upload}, with its size, fps, frames")
    fps: float
    frames: int
    width: int
    height: int
    has_audio: bool
    timings: dict[str, float]
    notes: list[str]
    details: dict = Field(description="The feature's own figures (see the feature's docs)")


class TaskResult(BaseModel):
    """A finished video."""

    task_id: str
    status: str
    video_url: str
    thumbnail_url: str
    duration_seconds: float
    resolution: str
    file_size_mb: float
    generation_time_seconds: float
    partial: bool = Field(False, description="True for a cancelled long video that kept its finished windows "
                                             "(status 'cancelled'; the notes say how much)")
    metadata: ResultMetadata | EditMetadata


class TaskSummary(BaseModel):
    """One entry of the Library: a task of yours, and its video when it has one."""

    task_id: str
    kind: str = Field(description="t2v (Generate), scene, inpaint, lipsync, v2v, consistency, or scene_shot")
    feature: str = Field(description="The feature that made it, in words (the UI tab's name)")
    status: str
    title: str = Field(description="The prompt of a generation; what an edit did otherwise")
    model: str | None = None
    seed: int | None = None
    batch_id: str | None = None
    created_at: float
    finished_at: float | None = None
    progress: float
    duration_seconds: float | None = Field(None, description="The video's length, once there is one")
    video_url: str | None = Field(None, description="Set when the task has a video (completed, or a kept partial)")
    thumbnail_url: str | None = None
    error: str | None = Field(None, description="Why a failed or cancelled task ended")


class TaskPage(BaseModel):
    """A page of the Library, newest first."""

    tasks: list[TaskSummary]
    next_cursor: str | None = Field(None, description="Pass as cursor for the next (older) page; null: no more")


class ModelInfo(BaseModel):
    """One entry of the model catalog."""

    model_config = {"protected_namespaces": ()}

    id: str
    task: str = Field(description="t2v: a generation model; vace: masked video generation (Video Inpainting, "
                                   "Scenes); animate: pose- and face-driven character video (V2V motion transfer, "
                                   "Lip-Sync); i2v: video between a first and a last frame (Scene morphs)")
    label: str
    repo_id: str | None
    trained: bool
    native_width: int
    native_height: int
    native_fps: int
    max_frames: int
    continuation: str | None = Field(None, description="t2v: the model that continues a clip past max_frames "
                                                       "(window by window); null: an autoregressive model "
                                                       "(chunk_frames) makes long clips itself, any other makes one "
                                                       "pass interpolated over the duration")
    chunk_frames: int | None = Field(None, description="t2v, autoregressive models (Helios): frames per chunk; one "
                                                       "pass makes a clip of up to max_frames chunk by chunk, each "
                                                       "streamed as it finishes; null: not autoregressive")
    images: int = Field(0, description="i2v: the frames it starts from: 1 (generate's image) or 2 (image and "
                                       "last_image); 0: text only")
    fast_steps: int | None = Field(None, description="t2v: the step count of its fast mode (generate's mode 'fast'); "
                                                     "null: it has none")
    vram_gb: float | None
    available: bool = Field(description="Whether this server can run it now")
    availability: str = Field(description="Why it is or is not available")
    loaded: bool
    default: bool


class GenreInfo(BaseModel):
    name: str
    description: str
    prompt_suffix: str
    negative_suffix: str


class Health(BaseModel):
    """Service state."""

    status: str = Field(description="'ok'; 'maintenance' while new work is refused (flag file, shutdown); "
                                    "'degraded' while something below is wrong (see problems)")
    default_model: str
    loaded_model: str | None
    cuda: bool
    running_task: bool
    worker_running: bool = Field(description="whether the worker that starts queued tasks is alive")
    free_disk_mb: int = Field(description="free space on the data folder's disk, MiB")
    problems: list[str] = Field(default_factory=list, description="what makes the status 'degraded'")
