"""The Generate tab: text-to-video with a live frame strip, progress, Stop, and the finished video.

Its handlers are thin adapters over ``Studio``: ``generate`` submits a task to the one queue and
yields the task's events; ``get_status`` and ``cancel_task`` expose the same core calls to
``gradio_client`` users (api names ``/generate``, ``/status``, ``/cancel``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

# Called through the module, so there is one follower to patch (tests/test_ui_follow.py).
import components.follow as task_follower
from components.edit_common import ends_truthfully
from components.orchestrator_tab import AUTO_CHOICE, attach_auto_hint
from components.session import admitted, owner_of, ui_file, ui_files, user_error
from components.widgets import bounds, choices
from studio.core import Studio
from studio.engine.request import MAX_LORAS, GenerationRequest, LoraChoice, parse_request
from studio.errors import StudioError
from studio.media.inputs import encode_png_base64
from studio.genius.generate.submit import forecast
from studio.genius.stream.schema import StreamStartRequest
from studio.genius.stream.start import start_stream
from studio.jobs import events as ev
from studio.models.catalog import CATALOG, GENERATION_CATALOG

FIELDS = GenerationRequest.model_fields


def _default(name: str) -> Any:
    return FIELDS[name].default


#: One click to a run's size: Standard is the API's own defaults; Draft is quick to look at;
#: Quality is longer, upscaled to 1080p. Checked against the request model at import.
PRESETS: dict[str, dict[str, Any]] = {
    "Draft": {"duration_seconds": 2.0, "fps": 12, "resolution": "480p", "num_inference_steps": 20},
    "Standard": {name: _default(name) for name in ("duration_seconds", "fps", "resolution", "num_inference_steps")},
    "Quality": {"duration_seconds": 5.0, "fps": 24, "resolution": "1080p", "num_inference_steps": 50},
}
for _preset in PRESETS.values():
    GenerationRequest(prompt="a preset check", **_preset)
EXAMPLE_PROMPTS = [["A majestic dragon soaring over misty mountains at sunrise"],
                   ["A paper boat drifting down a rain-soaked city street, reflections of neon signs"],
                   ["Slow dolly shot of a cozy cabin in a snowy forest at dusk, warm light in the windows"],
                   ["A hummingbird hovering at a red flower, macro, shallow depth of field"]]


@dataclass
class GenerateTab:
    """The tab's components, for wiring and for tests."""

    inputs: list[gr.components.Component]
    generate_button: gr.Button
    stop_button: gr.Button
    task_id: gr.Textbox
    preview: gr.Gallery
    status: gr.Markdown
    video: gr.Video
    thumbnail: gr.Image
    metadata: gr.JSON
    auto_hint: gr.Markdown
    lora_file: gr.File
    lora_name: gr.Textbox
    lora_add: gr.Button
    lora_status: gr.Markdown
    preset: gr.Radio
    estimate: gr.Markdown
    images: gr.Accordion  # "Start from an image" (the Library's Continue video opens it)
    first_image: gr.Image


def _model_choices(studio: Studio) -> list[tuple[str, str]]:
    """Text-to-video models, then those that start from an image (they need the image section)."""
    models = [m for m in studio.list_models() if m.id in GENERATION_CATALOG]
    return [(f"{m.label}" + ("" if m.available else " — unavailable here"), m.id)
            for m in sorted(models, key=lambda m: m.task != "t2v")]


def create_ui(studio: Studio) -> GenerateTab:
    """Lay out the tab (call inside a ``gr.Tab``)."""
    default_spec = CATALOG[studio.default_model]
    if not default_spec.trained:
        gr.Markdown(
            f"**Offline mode:** the default model `{default_spec.id}` is an untrained model built "
            "locally so the studio runs without a GPU or network. Its videos are noise-like; "
            "pick a Wan model on a GPU server for real output.",
            elem_id="offline-banner",
        )
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(label="Prompt", lines=3, max_length=2000, elem_id="gen-prompt",
                                placeholder="A majestic dragon soaring over misty mountains at sunrise")
            negative = gr.Textbox(label="Negative prompt", value=_default("negative_prompt"), max_length=2000)
            gr.Examples(EXAMPLE_PROMPTS, inputs=[prompt], label="Try a prompt")
            preset = gr.Radio(list(PRESETS), value="Standard", label="Preset (duration, fps, resolution, steps)",
                              elem_id="gen-preset")
            with gr.Row():
                duration = gr.Slider(**bounds(GenerationRequest, "duration_seconds"), step=0.5,
                                     label="Duration (seconds)", elem_id="gen-duration")
                fps = gr.Slider(**bounds(GenerationRequest, "fps"), step=1, label="FPS", elem_id="gen-fps")
            with gr.Row():
                resolution = gr.Dropdown(choices(GenerationRequest, "resolution"), value=_default("resolution"),
                                         label="Resolution", elem_id="gen-resolution")
                aspect = gr.Dropdown(choices(GenerationRequest, "aspect_ratio"), value=_default("aspect_ratio"),
                                     label="Aspect ratio")
                genre = gr.Dropdown(choices(GenerationRequest, "genre"), value=_default("genre"), label="Genre")
            with gr.Accordion("Start from an image", open=False, elem_id="gen-images") as images:
                with gr.Row():
                    first_image = gr.Image(label="First frame", type="numpy", elem_id="gen-first-image")
                    last_image = gr.Image(label="Last frame (first-and-last-frame models)", type="numpy",
                                          elem_id="gen-last-image")
            model = gr.Dropdown([AUTO_CHOICE, *_model_choices(studio)], value=studio.default_model, label="Model")
            auto_hint = gr.Markdown(visible=False, elem_id="gen-auto-hint")
            estimate = gr.Markdown(elem_id="gen-estimate")
            mode = gr.Radio([("Standard", "standard"), ("Fast (few-step distillation, no guidance)", "fast")],
                            value=_default("mode"), label="Mode", elem_id="gen-mode")
            with gr.Accordion("Sampling (standard mode)", open=False):
                seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)")
                guidance = gr.Slider(**bounds(GenerationRequest, "guidance_scale"), step=0.5, label="Guidance scale")
                steps = gr.Slider(**bounds(GenerationRequest, "num_inference_steps"), step=1,
                                  label="Inference steps", elem_id="gen-steps")
                preview_every = gr.Slider(**bounds(GenerationRequest, "preview_every_n_steps"), step=1,
                                          label="Preview every N steps", elem_id="gen-preview-every")
                acceleration = gr.Radio(choices(GenerationRequest, "acceleration"), value=_default("acceleration"),
                                        label="Step cache (skips work when steps change little; 'off' computes all)",
                                        elem_id="gen-acceleration")
            with gr.Accordion("Frames and size beyond the model's", open=False, elem_id="gen-output"):
                interpolator = gr.Radio(choices(GenerationRequest, "interpolator"), value=_default("interpolator"),
                                        label="More frames than generated: classical optical flow, or the server's "
                                              "learned interpolator (RIFE)", elem_id="gen-interpolator")
                upscaler = gr.Radio(choices(GenerationRequest, "upscaler"), value=_default("upscaler"),
                                    label="Larger than generated: classical upscaling, or the server's learned "
                                          "upscaler (ESRGAN)", elem_id="gen-upscaler")
            with gr.Accordion("LoRAs", open=False, elem_id="gen-loras"):
                loras = gr.Dropdown([], value=[], multiselect=True, max_choices=MAX_LORAS, label="Use LoRAs",
                                    elem_id="gen-lora-pick")
                lora_scale = gr.Slider(**bounds(LoraChoice, "scale"), step=0.05, label="LoRA scale (each)",
                                       elem_id="gen-lora-scale")
                with gr.Row():
                    lora_file = gr.File(label="Add a LoRA (.safetensors)", file_types=[".safetensors"], type="filepath",
                                        elem_id="gen-lora-file")
                    with gr.Column():
                        lora_name = gr.Textbox(label="Its name", max_length=100, elem_id="gen-lora-name")
                        lora_add = gr.Button("Add LoRA for the chosen model", elem_id="gen-lora-add")
                lora_status = gr.Markdown(elem_id="gen-lora-status")
            with gr.Row():
                generate_button = gr.Button("Generate", variant="primary", elem_id="gen-run")
                stop_button = gr.Button("Stop", variant="stop", elem_id="gen-stop")
        with gr.Column(scale=1):
            status = gr.Markdown("Ready.", elem_id="gen-status")
            preview = gr.Gallery(label="Frames as they arrive: denoising previews, then final frames",
                                 columns=6, height=240, object_fit="contain", interactive=False,
                                 allow_preview=True, elem_id="gen-strip")
            video = gr.Video(label="Video", interactive=False, autoplay=True, loop=True, buttons=["download"],
                             elem_id="gen-video")
            with gr.Row():
                thumbnail = gr.Image(label="Thumbnail", interactive=False, format="jpeg", elem_id="gen-thumb",
                                     height=120)
                task_id = gr.Textbox(label="Task id", interactive=False, elem_id="gen-task-id")
            with gr.Accordion("Details (metadata)", open=False, elem_id="gen-details"):
                metadata = gr.JSON(label="Metadata", elem_id="gen-metadata")
    inputs = [prompt, negative, duration, fps, resolution, aspect, genre, seed, guidance, steps, model, preview_every,
              loras, lora_scale, mode, first_image, last_image, upscaler, interpolator, acceleration]
    return GenerateTab(inputs, generate_button, stop_button, task_id, preview, status, video, thumbnail, metadata,
                       auto_hint, lora_file, lora_name, lora_add, lora_status, preset, estimate, images, first_image)


class _FrameStrip:
    """The Generate tab's frame strip: a Progressive Streaming session of the task, shown as a
    gallery of its newest frames, refreshed at most every ``INTERVAL`` seconds."""

    INTERVAL = 0.4
    FRAMES = 24

    def __init__(self, studio: Studio, task_id: str, owner: str):
        session = start_stream(studio.services, StreamStartRequest(task_id=task_id), owner=owner)
        _, self.board = studio.streams.session(session.session_id, owner)
        self.shown_version = 0
        self.shown_at = 0.0

    def due(self) -> bool:
        """Whether new frames arrived and the last refresh is old enough."""
        return self.board.version > self.shown_version and time.monotonic() - self.shown_at >= self.INTERVAL

    def frames(self) -> list[tuple[str, str]]:
        self.shown_version, self.shown_at = self.board.version, time.monotonic()
        strip = self.board.strip(self.FRAMES)
        staged = ui_files([path for _, _, path in strip])  # Gradio never serves the media folder itself
        return [(path, f"#{index} {quality}") for (index, quality, _), path in zip(strip, staged)]


def make_handlers(studio: Studio):
    """The tab's functions, bound to ``studio``. Their docstrings become the API docs."""

    def generate(
        prompt: str,
        negative_prompt: str = _default("negative_prompt"),
        duration_seconds: float = _default("duration_seconds"),
        fps: int = _default("fps"),
        resolution: str = _default("resolution"),
        aspect_ratio: str = _default("aspect_ratio"),
        genre: str = _default("genre"),
        seed: int = -1,
        guidance_scale: float = _default("guidance_scale"),
        num_inference_steps: int = _default("num_inference_steps"),
        model: str = "",
        preview_every_n_steps: int = _default("preview_every_n_steps"),
        loras: list[str] | None = None,
        lora_scale: float = LoraChoice.model_fields["scale"].default,
        mode: str = _default("mode"),
        image: np.ndarray | None = None,
        last_image: np.ndarray | None = None,
        upscaler: str = _default("upscaler"),
        interpolator: str = _default("interpolator"),
        acceleration: str = _default("acceleration"),
        progress: gr.Progress = gr.Progress(),
        request: gr.Request = None,
    ) -> Iterator[tuple]:
        """Generate a video from text, streaming previews while it denoises.

        Args:
            prompt: text description (1-2000 characters).
            negative_prompt: what to avoid.
            duration_seconds: video length, 1-60 s (longer than one model pass: generated window by window).
            fps: frames per second, 12-60.
            resolution: 480p, 720p, 1080p, 1440p, 4k or 8k.
            aspect_ratio: 16:9, 9:16, 1:1 or 4:3.
            genre: style preset (see the genres list).
            seed: reproducibility seed; -1 picks a random one (recorded in the metadata).
            guidance_scale: prompt adherence, 1-20.
            num_inference_steps: denoising steps, 10-150.
            model: model id, 'auto' for the Model Orchestrator's pick, or empty for the server default.
            preview_every_n_steps: a live preview every N denoising steps, 1-50 (first and last always).
            loras: ids of your LoRAs to apply (see /loras; at most 4); empty for none.
            lora_scale: the strength of each of them, 0-2.
            mode: 'standard', or 'fast': the model's few-step distillation (own steps, no guidance).
            image: a first frame to start from (image-to-video; the model defaults to one that takes it).
            last_image: a last frame to end on (first-and-last-frame models), with image.
            upscaler: a size above the model's: 'classical', or 'learned' (the server's ESRGAN network).
            interpolator: an fps above the model's: 'classical' (optical flow), or 'learned' (the server's RIFE).
            acceleration: the step cache: 'off' (every pass computed), 'balanced' or 'fast' (skips more).

        Returns:
            Per update: task id, frame strip (gallery of the newest frames: denoising previews,
            then final frames as the video decodes), status text, video file, thumbnail, metadata.
        """
        try:
            generation = parse_request({
                "prompt": prompt, "negative_prompt": negative_prompt, "duration_seconds": duration_seconds,
                "fps": int(fps), "resolution": resolution, "aspect_ratio": aspect_ratio, "genre": genre,
                "seed": None if seed is None or int(seed) < 0 else int(seed),
                "guidance_scale": guidance_scale, "num_inference_steps": int(num_inference_steps),
                "model": model or None, "preview_every_n_steps": int(preview_every_n_steps),
                "loras": [{"id": lora_id, "scale": lora_scale} for lora_id in loras or []], "mode": mode,
                "upscaler": upscaler, "interpolator": interpolator, "acceleration": acceleration,
                **_frames(image, last_image, model),
            })
            with admitted(studio, request) as owner:
                submitted = studio.submit(generation, owner=owner)
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None
        task_id = submitted.task_id
        skip = gr.skip()
        strip = _FrameStrip(studio, task_id, owner)
        # A fresh run clears the last run's video, thumbnail and metadata, so nothing on the
        # page describes another task.
        yield task_id, [], _queued_line(studio, submitted, owner), None, None, None
        updates = task_follower.follow_task(
            studio, task_id, owner, running_line=lambda data: _running_line(studio, task_id, owner, data),
            finished_line=_summary, on_progress=lambda fraction, step: progress(fraction, desc=step))
        with closing(updates):  # closed early (Stop, closed tab): the follower cancels the task
            for update in updates:
                if update.video is not None:  # completed, or cancelled keeping a long video's finished windows
                    yield (task_id, strip.frames(), update.status_line, update.video,
                           ui_file(studio.paths.fetch("thumbnails", task_id)), update.result)
                    continue
                if update.status_line is not None:
                    yield task_id, skip, update.status_line, skip, skip, skip
                if update.event in (ev.PROGRESS, ev.FRAME_AVAILABLE) and strip.due():
                    yield task_id, strip.frames(), skip, skip, skip, skip

    def get_status(task_id: str, request: gr.Request = None) -> dict:
        """Status of one of your tasks: progress, current step, elapsed seconds, ETA, preview URL.

        Args:
            task_id: the id returned by generate.
        """
        try:
            return studio.status(task_id.strip(), owner_of(studio, request)).model_dump()
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None

    def cancel_task(task_id: str, request: gr.Request = None) -> dict:
        """Cancel one of your tasks (pending: at once; running: at its next denoising step).

        Args:
            task_id: the id returned by generate.
        """
        if not task_id:
            return {}
        try:
            return studio.cancel(task_id.strip(), owner_of(studio, request)).model_dump()
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None

    def stop(task_id: str, request: gr.Request = None) -> None:
        """The Stop button: cancel the task. The run's own stream then ends its status line with
        how the task ended ("Cancelled.", or "Done" if it finished first): one stream writes the
        line, so no update of the run can arrive after it and overwrite it."""
        if not task_id:
            return
        try:
            studio.cancel(task_id.strip(), owner_of(studio, request))
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None

    return generate, get_status, cancel_task, stop


def _frames(image: np.ndarray | None, last_image: np.ndarray | None, model: str) -> dict:
    """The request's ``image`` / ``last_image`` (base64 PNG) from the tab's pictures. With a
    picture and the text default still chosen, the model is left for the server to pick."""
    if image is None:
        return {"last_image": encode_png_base64(last_image)} if last_image is not None else {}
    frames = {"image": encode_png_base64(image)}
    if last_image is not None:
        frames["last_image"] = encode_png_base64(last_image)
    if model in CATALOG:  # a text-only model chosen (the dropdown's default): the image decides
        frames["model"] = None
    return frames


def make_lora_handlers(studio: Studio):
    """The LoRA picker's functions: list yours, add one (their docstrings become API docs)."""

    def list_loras(request: gr.Request = None) -> dict:
        """Your LoRAs (as GET /v1/loras): id, name, model, rank, layers, size."""
        return studio.loras.owned(owner_of(studio, request)).model_dump()

    def add_lora(file: str | None, name: str, model: str, request: gr.Request = None) -> tuple[Any, str]:
        """Register a LoRA from a .safetensors file for ``model`` (as POST /v1/loras).

        Args:
            file: the .safetensors file.
            name: your name for it (unique among your LoRAs).
            model: the text-to-video model it is for.

        Returns:
            The LoRA picker (with the new one chosen) and a status line.
        """
        if not file:
            raise user_error("Choose a .safetensors file first", title="No file")
        owner = owner_of(studio, request)
        try:
            with open(file, "rb") as handle:
                data = handle.read(studio.loras.max_bytes + 1)
            model = model if model and model != AUTO_CHOICE[1] else studio.default_model
            info = studio.loras.register_upload(owner, name, model, data)
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None
        return (gr.Dropdown(choices=_lora_choices(studio, owner), value=[info.id]),
                f"Added **{info.name}** for {info.model}: rank {info.rank}, {info.layers} layers.")

    def lora_picker(request: gr.Request = None) -> Any:
        return gr.Dropdown(choices=_lora_choices(studio, owner_of(studio, request)))

    return list_loras, add_lora, lora_picker


def _lora_choices(studio: Studio, owner: str) -> list[tuple[str, str]]:
    return [(f"{lora.name} ({lora.model})", lora.id) for lora in studio.loras.owned(owner).loras]


def _running_line(studio: Studio, task_id: str, owner: str, data: dict) -> str:
    """The status line while a task runs: its step, the time it has really been running (from
    the task's own start, not from this page's last update) and the time left as this run's
    own step times predict it."""
    step = data.get("step", "")
    try:
        status = studio.status(task_id, owner)
    except StudioError:
        return step
    parts = [step]
    if status.elapsed_seconds >= 0.1:
        parts.append(f"{status.elapsed_seconds:.1f} s elapsed")
    if status.eta_seconds is not None and status.status != "pending":
        parts.append(f"about {status.eta_seconds:.0f} s left")
    return " · ".join(part for part in parts if part)


def _queued_line(studio: Studio, submitted, owner: str) -> str:
    """The status line right after submit: queue position and the estimate, saying whether the
    estimate rests on runs measured here or on priors."""
    line = f"Queued (position {submitted.queue_position}, about {submitted.estimated_time_seconds:.0f} s"
    try:
        status = studio.status(submitted.task_id, owner)
    except StudioError:
        return line + ")"
    if status.estimate_basis == "prior":
        return line + "; a rough estimate: nothing like it has run here yet)"
    if status.estimate_basis == "measured":
        return line + f", from {status.estimate_samples} measured run(s))"
    return line + ")"


def _summary(result) -> str:
    meta = result.metadata
    return (f"Done: {meta.frames} frames, {meta.width}x{meta.height} at {meta.fps} fps, "
            f"{result.file_size_mb:.2f} MB, {result.generation_time_seconds:.1f} s "
            f"(model `{meta.model}`, seed {meta.seed}).")


def create_event_handlers(tab: GenerateTab, studio: Studio, demo: gr.Blocks | None = None) -> None:
    """Wire the tab: Generate streams, Stop cancels; both exposed through the Gradio API. With
    ``demo``, the visitor's own LoRAs fill the picker when the page loads."""
    generate, get_status, cancel_task, stop = make_handlers(studio)
    prompt, _negative, duration, fps, resolution, _aspect, _genre, _seed, guidance, steps, model, _every, \
        lora_pick, _lora_scale, mode, _first, _last, _upscaler, _interpolator, _acceleration = tab.inputs
    list_loras, add_lora, lora_picker = make_lora_handlers(studio)
    tab.lora_add.click(add_lora, [tab.lora_file, tab.lora_name, model], [lora_pick, tab.lora_status],
                       api_name="add_lora")
    gr.api(list_loras, api_name="loras")
    if demo is not None:
        demo.load(lora_picker, None, lora_pick, api_visibility="private")
    attach_auto_hint(studio, model=model, prompt=prompt, duration=duration, resolution=resolution,
                     guidance=guidance, steps=steps, output=tab.auto_hint)
    attach_presets(studio, tab, demo, duration=duration, fps=fps, resolution=resolution, steps=steps, model=model,
                   mode=mode)
    outputs = [tab.task_id, tab.preview, tab.status, tab.video, tab.thumbnail, tab.metadata]
    # Gradio's own progress timer restarts with every streamed update (it showed "0.0s"): hidden,
    # the status line carries the step and the task's real elapsed time instead.
    tab.generate_button.click(ends_truthfully(generate, status=2, outputs=6), tab.inputs, outputs,
                              api_name="generate", concurrency_limit=None, show_progress="hidden")
    # No ``cancels=[run]``: the run ends by itself at the task's next step and says so last.
    tab.stop_button.click(stop, [tab.task_id], None, api_visibility="private", concurrency_limit=None)
    # API-only twins of the REST status/cancel routes, for gradio_client users.
    gr.api(get_status, api_name="status")
    gr.api(cancel_task, api_name="cancel")


def estimate_line(studio: Studio, model: str, duration: float, fps: int, resolution: str, steps: int,
                  mode: str) -> str:
    """How long the form's run would take here, before it is submitted (the cost model's estimate,
    for the model the submit would pick)."""
    try:
        request = parse_request({"prompt": "an estimate", "duration_seconds": duration, "fps": int(fps),
                                 "resolution": resolution, "num_inference_steps": int(steps), "model": model or None,
                                 "mode": mode})
        found = forecast(studio.services, request)
    except StudioError as error:
        return f"Not runnable as set: {error.detail}"
    basis = "measured here" if found.basis == "measured" else "a rough estimate: nothing like it ran here yet"
    return f"Estimated time: about {_duration(found.seconds)} on `{found.model}` ({basis})."


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def attach_presets(studio: Studio, tab: GenerateTab, demo: gr.Blocks | None, *, duration: gr.Slider, fps: gr.Slider,
                   resolution: gr.Dropdown, steps: gr.Slider, model: gr.Dropdown, mode: gr.Radio) -> None:
    """The preset radio sets the run's size; the estimate line follows every input it depends on.
    Private UI plumbing: not API endpoints."""
    def apply(name: str) -> tuple:
        preset = PRESETS[name]
        return (preset["duration_seconds"], preset["fps"], preset["resolution"], preset["num_inference_steps"])

    tab.preset.input(apply, tab.preset, [duration, fps, resolution, steps], api_visibility="private")
    sized = [model, duration, fps, resolution, steps, mode]
    triggers = [model.change, duration.change, fps.change, resolution.change, steps.change, mode.change]
    if demo is not None:
        triggers.append(demo.load)
    gr.on(triggers, lambda *values: estimate_line(studio, *values), sized, tab.estimate, api_visibility="private",
          show_progress="hidden", concurrency_limit=None)
