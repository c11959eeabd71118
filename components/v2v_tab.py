"""The V2V tab: interpolate, upscale, enhance, colourise, restyle or re-animate a video.

A thin adapter over ``studio.genius.v2v_task`` (api name ``/v2v``). A prompt with style transfer
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

from components.edit_common import ends_truthfully, or_skip, source_of, source_picker, submit_and_follow
from studio.core import Studio
from studio.engine.request import parse_model
from studio.genius.v2v_task import ANIMATE_MODELS, MODEL_MODES, V2V_MODELS, VACE_MODELS, V2VRequest, submit
from studio.media.inputs import encode_png_base64

MODES = ["interpolation", "upscale", "enhancement", "colorization", "style_transfer", "motion_transfer"]


@dataclass
class V2VTab:
    inputs: list
    run_button: gr.Button
    outputs: list


def create_ui(studio: Studio) -> V2VTab:
    """Lay out the tab (call inside a ``gr.Tab``)."""
    with gr.Row():
        with gr.Column(scale=1):
            source = source_picker("v2v")
            mode = gr.Radio(MODES, value="interpolation", label="Mode",
                            info="colorization, style_transfer and motion_transfer need a reference; a prompt "
                                 "runs style_transfer / colorization through a model (with the reference: Wan VACE)")
            strength = gr.Slider(0, 1, value=0.7, step=0.05, label="Strength (style transfer, enhancement)")
            reference = gr.Image(label="Reference image (colorization, style transfer; motion transfer appearance)",
                                 type="numpy")
            with gr.Row():
                preserve_motion = gr.Checkbox(True, label="Preserve motion (smooth along the source's flow)")
                temporal = gr.Slider(0, 1, value=0.8, step=0.05, label="Temporal consistency")
            with gr.Row():
                scale = gr.Number(2, label="Upscale factor (1-4)")
                factor = gr.Radio([2, 4], value=2, label="Interpolation factor")
                target_fps = gr.Number(0, label="…or target fps (0: use the factor)")
            motion_video = gr.Video(label="Motion reference video (motion transfer, instead of an image)",
                                    sources=["upload"], elem_id="v2v-motion-upload")
            with gr.Accordion("Model paths (WanVideoToVideo, Wan VACE, Wan Animate)", open=False):
                prompt = gr.Textbox("", label="Prompt (style transfer, colorization: WanVideoToVideo, or Wan VACE "
                                              "with the reference image; motion transfer: the scene)", lines=2,
                                    elem_id="v2v-prompt")
                use_model = gr.Checkbox(False, label="Motion transfer: animate the reference with Wan Animate "
                                                     "(pose and face of the source drive it)")
                with gr.Row():
                    model = gr.Dropdown(list(V2V_MODELS + VACE_MODELS + ANIMATE_MODELS), value=None,
                                        label="Model (empty: the server default for the mode)")
                    steps = gr.Slider(10, 150, value=30, step=1, label="Denoising steps (strength x steps run)")
            run_button = gr.Button("Transform", variant="primary", elem_id="v2v-run")
        with gr.Column(scale=1):
            status = gr.Markdown("Ready.", elem_id="v2v-status")
            video = gr.Video(label="Result", interactive=False, elem_id="v2v-video")
            details = gr.JSON(label="Result metadata")
    inputs = [source.upload, source.task_id, mode, strength, reference, preserve_motion, temporal, scale, factor,
              target_fps, motion_video, prompt, model, steps, use_model]
    return V2VTab(inputs, run_button, [status, video, details])


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
        if mode == "upscale":
            body["scale"] = float(scale)
        elif mode == "interpolation":
            if target_fps:
                body["target_fps"] = float(target_fps)
            else:
                body["factor"] = int(factor)
        animate = mode == "motion_transfer" and bool(use_model)
        if animate:
            body["use_model"] = True
        if ((prompt or "").strip() and mode in MODEL_MODES) or animate:
            body["num_inference_steps"] = int(num_inference_steps)
            if (prompt or "").strip():
                body["prompt"] = prompt
            if model:
                body["model"] = model
        motion_upload = Path(motion_video) if motion_video and mode == "motion_transfer" else None
        if reference is not None and mode in ("colorization", "style_transfer", "motion_transfer") \
                and motion_upload is None:
            body["style_reference_base64"] = encode_png_base64(reference[:, :, :3])
        for update in submit_and_follow(studio, request, lambda owner: submit(
                studio, parse_model(V2VRequest, body), owner, upload=upload, reference_upload=motion_upload)):
            yield or_skip(*update)

    return v2v


def create_event_handlers(tab: V2VTab, studio: Studio) -> None:
    tab.run_button.click(ends_truthfully(make_handler(studio), status=0, outputs=3), tab.inputs, tab.outputs,
                         api_name="v2v", concurrency_limit=None)
