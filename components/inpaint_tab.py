"""The Inpaint tab: remove, blend, replace the background of, or extend a video; replace an
object (and prompt-driven background / extend) with Wan VACE.

A thin adapter over ``studio.genius.inpaint.submit`` (api name ``/inpaint``): which image field a
mode reads, and what a mode needs, are the request's rules (``studio.genius.inpaint.schema``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import numpy as np

from components import examples
from components.edit_common import SourcePicker, ends_truthfully, or_skip, source_of, source_picker, submit_and_follow
from components.region_picker import RegionPicker
from components.region_picker import attach as region_picker_events
from components.region_picker import region_picker
from components.widgets import bounds, choices, default
from studio.core import Studio
from studio.engine.request import parse_model
from studio.genius.inpaint.schema import InpaintRequest
from studio.genius.inpaint.submit import submit
from studio.media.inputs import encode_png_base64
from studio.models.catalog import VACE_CATALOG
from studio.models.loader import default_model, unavailable_reason


@dataclass
class InpaintTab:
    inputs: list
    run_button: gr.Button
    outputs: list
    source: SourcePicker  # where the Library sends a video
    region: RegionPicker  # the box drawn on a frame instead of typed


def _vace_choices() -> list[tuple[str, str]]:
    return [(spec.label + ("" if unavailable_reason(spec) is None else " — unavailable here"), spec.id)
            for spec in VACE_CATALOG.values()]


def create_ui(studio: Studio) -> InpaintTab:
    """Lay out the tab (call inside a ``gr.Tab``)."""
    with gr.Row():
        with gr.Column(scale=1):
            source = source_picker("inpaint")
            mode = gr.Radio(choices(InpaintRequest, "mode"), value="remove", label="Mode",
                            info="replace (and background / extend with a prompt) run Wan VACE")
            with gr.Row(equal_height=True):  # min_width keeps the four boxes on one row
                x1 = gr.Number(20, precision=0, label="x1", min_width=60, elem_id="inpaint-x1")
                y1 = gr.Number(20, precision=0, label="y1", min_width=60, elem_id="inpaint-y1")
                x2 = gr.Number(80, precision=0, label="x2", min_width=60, elem_id="inpaint-x2")
                y2 = gr.Number(80, precision=0, label="y2", min_width=60, elem_id="inpaint-y2")
            region = region_picker("inpaint", "object (remove / blend / replace: the box)")
            feather = gr.Slider(**bounds(InpaintRequest, "feather_radius"), step=1, label="Feather radius (px)")
            image = gr.Image(label="Overlay (blend), new background (background) or reference (replace)",
                             type="numpy")
            blend_method = gr.Radio(choices(InpaintRequest, "blend_method"),
                                    value=default(InpaintRequest, "blend_method"), label="Blend method")
            aspect = gr.Dropdown(choices(InpaintRequest, "target_aspect_ratio"), value="1:1",
                                 label="Extend to aspect ratio")
            prompt = gr.Textbox(label="Prompt (model modes)", lines=2)
            model = gr.Dropdown(_vace_choices(), value=default_model("vace"), label="VACE model")
            use_model = gr.Checkbox(False, label="Use the model for remove / extend without a prompt")
            run_button = gr.Button("Inpaint", variant="primary", elem_id="inpaint-run")
            gr.Examples([[examples.CLIP, "remove", *examples.BOX]], inputs=[source.upload, mode, x1, y1, x2, y2],
                        label=examples.LABEL + " (removes the blue box)")
        with gr.Column(scale=1):
            status = gr.Markdown("Ready.", elem_id="inpaint-status")
            video = gr.Video(label="Result", interactive=False, elem_id="inpaint-video")
            details = gr.JSON(label="Result metadata")
    inputs = [source.upload, source.task_id, mode, x1, y1, x2, y2, feather, image, blend_method, aspect, prompt,
              model, use_model]
    return InpaintTab(inputs, run_button, [status, video, details], source, region)


def make_handler(studio: Studio):
    def inpaint(video: str | None, task_id: str = "", mode: str = "remove", x1: int = 0, y1: int = 0,
                x2: int = 0, y2: int = 0, feather_radius: int = 10, image: np.ndarray | None = None,
                blend_method: str = "feather", target_aspect_ratio: str = "1:1",
                prompt: str = "", model: str | None = None, use_model: bool = False,
                request: gr.Request = None) -> Iterator[tuple]:
        """Inpaint a video: remove an object, blend an overlay, replace the background, extend.

        Args:
            video: input video file (or leave empty and give task_id).
            task_id: a finished task whose video is edited.
            mode: remove, blend, background, extend or replace (replace runs Wan VACE).
            x1: box left edge (px, first frame); the box is tracked over time.
            y1: box top edge.
            x2: box right edge (exclusive).
            y2: box bottom edge (exclusive).
            feather_radius: soft mask edge in pixels.
            image: the overlay (blend), new background (background) or reference image (replace).
            blend_method: feather or poisson (blend).
            target_aspect_ratio: extend grows the canvas to this aspect.
            prompt: for the model modes.
            model: the Wan VACE model (tiny-vace, wan2.1-vace-1.3b, wan2.1-vace-14b).
            use_model: run remove / extend without a prompt through the model.

        Returns:
            Per update: status text, result video, result metadata.
        """
        source_task, upload = source_of(task_id, video)
        # Every widget's value goes in; the mode's rules (extend reads the aspect, the others
        # the box) are the core's. The one image goes where the mode reads it.
        corners = (x1, y1, x2, y2)
        body = {"task_id": source_task, "mode": mode,
                "bbox": None if None in corners else [int(v) for v in corners],
                "target_aspect_ratio": target_aspect_ratio or None, "feather_radius": int(feather_radius),
                "blend_method": blend_method, "prompt": (prompt or "").strip() or None,
                "model": model or None, "use_model": bool(use_model)}
        image_field = InpaintRequest.image_field_for(mode)
        if image is not None and image_field:
            body[f"{image_field}_image_base64"] = encode_png_base64(image[:, :, :3])
        for update in submit_and_follow(studio, request, lambda owner: submit(
                studio.services, parse_model(InpaintRequest, body), owner, upload=upload)):
            yield or_skip(*update)

    return inpaint


def create_event_handlers(tab: InpaintTab, studio: Studio) -> None:
    box = tab.inputs[3:7]  # x1, y1, x2, y2
    region_picker_events(tab.region, studio, tab.source, fill=lambda box, frame: list(box), outputs=box)
    tab.run_button.click(ends_truthfully(make_handler(studio), status=0, outputs=3), tab.inputs, tab.outputs,
                         api_name="inpaint", concurrency_limit=None)
