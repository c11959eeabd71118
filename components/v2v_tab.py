"""The V2V tab: interpolate, upscale, enhance, colourise, restyle or re-animate a video.

A thin adapter over ``studio.genius.v2v.submit`` (api name ``/v2v``). A prompt with style transfer
or colorization runs a model path (WanVideoToVideo; Wan VACE when a reference image is given
too); motion transfer with "use the model" (or a prompt) animates the reference image with Wan
Animate.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from components import examples
from components.edit_common import SourcePicker, ends_truthfully, or_skip, source_of, source_picker, submit_and_follow
from components.widgets import bounds, choices
from studio.core import Studio
from studio.engine.request import parse_model
from studio.genius.v2v.modes import MODES
from studio.genius.v2v.schema import MODE_FIELDS, V2VRequest
from studio.genius.v2v.submit import submit
from studio.media.inputs import encode_png_base64

# Starting values the tab shows where the request has none (or none fit for a widget); they
# match the handler's defaults, which the Gradio API documents.
START = {"mode": "interpolation", "scale": 2, "factor": 2, "target_fps": 0, "num_inference_steps": 30}


@dataclass
class V2VTab:
    inputs: list
    run_button: gr.Button
    outputs: list
    source: SourcePicker  # where the Library sends a video


def create_ui(studio: Studio) -> V2VTab:
    """Lay out the tab (call inside a ``gr.Tab``)."""
    with gr.Row():
        with gr.Column(scale=1):
            source = source_picker("v2v")
            mode = gr.Radio(choices(V2VRequest, "mode"), value=START["mode"], label="Mode",
                            info="colorization, style_transfer and motion_transfer need a reference; a prompt "
                                 "runs style_transfer / colorization through a model (with the reference: Wan VACE)")
            strength = gr.Slider(**bounds(V2VRequest, "strength"), step=0.05,
                                 label="Strength (style transfer, enhancement)")
            reference = gr.Image(label="Reference image (colorization, style transfer; motion transfer appearance)",
                                 type="numpy")
            with gr.Row():
                preserve_motion = gr.Checkbox(True, label="Preserve motion (smooth along the source's flow)")
                temporal = gr.Slider(**bounds(V2VRequest, "temporal_consistency"), step=0.05,
                                     label="Temporal consistency")
            with gr.Row():
                scale = gr.Number(**bounds(V2VRequest, "scale", START["scale"]), label="Upscale factor (1-4)")
                factor = gr.Radio(choices(V2VRequest, "factor"), value=START["factor"], label="Interpolation factor")
                target_fps = gr.Number(**bounds(V2VRequest, "target_fps", START["target_fps"]),
                                       label="…or target fps (0: use the factor)")
            motion_video = gr.Video(label="Motion reference video (motion transfer, instead of an image)",
                                    sources=["upload"], elem_id="v2v-motion-upload")
            with gr.Accordion("Model paths (WanVideoToVideo, Wan VACE, Wan Animate)", open=False):
                prompt = gr.Textbox("", label="Prompt (style transfer, colorization: WanVideoToVideo, or Wan VACE "
                                              "with the reference image; motion transfer: the scene)", lines=2,
                                    elem_id="v2v-prompt")
                use_model = gr.Checkbox(False, label="Motion transfer: animate the reference with Wan Animate "
                                                     "(pose and face of the source drive it)")
                with gr.Row():
                    model = gr.Dropdown(choices(V2VRequest, "model"), value=None,
                                        label="Model (empty: the server default for the mode)")
                    steps = gr.Slider(**bounds(V2VRequest, "num_inference_steps", START["num_inference_steps"]),
                                      step=1, label="Denoising steps (strength x steps run)")
            run_button = gr.Button("Transform", variant="primary", elem_id="v2v-run")
            gr.Examples([[examples.CLIP, "interpolation"], [examples.CLIP, "enhancement"]], inputs=[source.upload, mode],
                        label=examples.LABEL)
        with gr.Column(scale=1):
            status = gr.Markdown("Ready.", elem_id="v2v-status")
            video = gr.Video(label="Result", interactive=False, elem_id="v2v-video")
            details = gr.JSON(label="Result metadata")
    inputs = [source.upload, source.task_id, mode, strength, reference, preserve_motion, temporal, scale, factor,
              target_fps, motion_video, prompt, model, steps, use_model]
    return V2VTab(inputs, run_button, [status, video, details], source)


def make_handler(studio: Studio):
    def v2v(video: str | None, task_id: str = "", mode: str = "interpolation", strength: float = 0.7,
            reference: np.ndarray | None = None, preserve_motion: bool = True, temporal_consistency: float = 0.8,
            scale: float = 2.0, factor: int = 2, target_fps: float = 0.0,
            motion_video: str | None = None, prompt: str = "", model: str | None = None,
            num_inference_steps: int = 30, use_model: bool = False, request: gr.Request = None) -> Iterator[tuple]:
        """Transform a video: interpolate frames, upscale, enhance, colourise, restyle or transfer motion.

        Args:
            video: input video file (or leave empty and give task_id).
            task_id: a finished task whose video is transformed.
            mode: interpolation, upscale, enhancement, colorization, style_transfer or motion_transfer.
            strength: 0-1, how far style_transfer / enhancement go.
            reference: reference image (colorization, style_transfer; motion_transfer's appearance).
            preserve_motion: temporal smoothing follows the source's optical flow.
            temporal_consistency: 0-1 flicker smoothing (colorization, style_transfer).
            scale: upscale factor (above 1, at most 4).
            factor: interpolation frame-rate multiplier (2 or 4).
            target_fps: interpolation output fps instead of the factor (0: use the factor).
            motion_video: motion_transfer: a video whose motion animates the input's first frame.
            prompt: style_transfer (or colorization without a reference): run the model path.
            model: the model path's model (empty: the server default for the mode).
            num_inference_steps: the model path's schedule (10-150; strength x steps are run by
                WanVideoToVideo, all of them by Wan Animate).
            use_model: motion_transfer: animate the reference image with Wan Animate.

        Returns:
            Per update: status text, result video, result metadata.
        """
        source_task, upload = source_of(task_id, video)
        body = {"source_task_id": source_task, "mode": mode, "strength": float(strength),
                "preserve_motion": bool(preserve_motion), "temporal_consistency": float(temporal_consistency)}
        # The form shows every mode's fields at once; the request carries those the chosen mode
        # reads, as the feature's own tables say (MODE_FIELDS, MODES[mode].reference, model_path).
        # The core refuses a field sent to a mode that does not read it, and validates the rest.
        mode_reads = MODE_FIELDS.get(mode, ())
        form = {"scale": float(scale), "target_fps": float(target_fps or 0) or None,
                "factor": None if target_fps else int(factor)}  # target fps 0: use the factor
        body.update({name: value for name, value in form.items() if name in mode_reads and value is not None})
        motion_upload = Path(motion_video) if motion_video and "motion_reference_task_id" in mode_reads else None
        takes_image = getattr(MODES.get(mode), "reference", None) is not None  # unknown mode: the core says
        if reference is not None and takes_image and motion_upload is None:
            body["style_reference_base64"] = encode_png_base64(reference[:, :, :3])
        # Whether a model path runs is the core's decision; its fields go only with one.
        wanted = V2VRequest.model_construct(mode=mode, prompt=(prompt or "").strip() or None,
                                            use_model=bool(use_model))
        path = wanted.model_path("style_reference_base64" in body)
        if path is not None:
            body["num_inference_steps"] = int(num_inference_steps)
            if wanted.prompt:
                body["prompt"] = prompt
            if model:
                body["model"] = model
            if path == "animate" and wanted.use_model:
                body["use_model"] = True
        for update in submit_and_follow(studio, request, lambda owner: submit(
                studio.services, parse_model(V2VRequest, body), owner, upload=upload, reference_upload=motion_upload)):
            yield or_skip(*update)

    return v2v


def create_event_handlers(tab: V2VTab, studio: Studio) -> None:
    tab.run_button.click(ends_truthfully(make_handler(studio), status=0, outputs=3), tab.inputs, tab.outputs,
                         api_name="v2v", concurrency_limit=None)
