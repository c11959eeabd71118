"""Pick a region by drawing on a frame of the source video, instead of typing pixel coordinates.

A video tab shows one frame of its source (the upload, or the finished task it was given) in an
image editor; the user paints over the object or face; the painted pixels' bounding box, in the
source video's own pixels, fills the tab's typed fields (which stay: they are the API's form).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

import gradio as gr
import numpy as np

from components.edit_common import SourcePicker, source_of
from components.session import owner_of, user_error
from studio.core import Studio
from studio.errors import StudioError
from studio.media.video import probe_video, read_frames


@dataclass
class RegionPicker:
    position: gr.Slider  # where in the clip the frame is taken (0: first, 1: last)
    show: gr.Button
    editor: gr.ImageEditor


def region_picker(prefix: str, what: str) -> RegionPicker:
    """The widgets (call inside the tab's layout); ``what``: what to paint over, in words."""
    with gr.Accordion(f"Draw the {what} on a frame", open=False, elem_id=f"{prefix}-draw"):
        with gr.Row():
            position = gr.Slider(0, 1, value=0, step=0.01, label="Frame (0 = first, 1 = last)",
                                 elem_id=f"{prefix}-draw-position")
            show = gr.Button("Show the frame", size="sm", elem_id=f"{prefix}-draw-show")
        editor = gr.ImageEditor(label=f"Paint over the {what}; its box fills the fields", type="numpy",
                                sources=(), transforms=(), layers=False, elem_id=f"{prefix}-draw-editor",
                                brush=gr.Brush(default_size=12, colors=["#ff3366"], color_mode="fixed"))
    return RegionPicker(position, show, editor)


def source_frame(studio: Studio, owner: str, upload: str | None, task_id: str | None, position: float) -> np.ndarray:
    """The frame at ``position`` (0-1) of the source a tab was given: its upload, else ``owner``'s
    finished task (``TaskNotFound`` when it is not one; a ``gr.Error`` when the tab has neither)."""
    source_task, upload_path = source_of(task_id, upload)
    if upload_path is not None:
        path = upload_path
    elif source_task is not None:
        path = studio.media_file("videos", source_task, owner)
    else:
        raise user_error("Give the tab a video first (an upload, or a task sent from the Library).")
    frames = probe_video(path).frames
    index = min(frames - 1, max(0, round(float(position) * (frames - 1))))
    return next(islice(read_frames(path), index, None))


def drawn_box(value: dict | None) -> tuple[int, int, int, int] | None:
    """The bounding box (x1, y1, x2, y2; x2 and y2 exclusive) of what was painted in an image
    editor's value, in the background image's pixels; None when nothing was painted."""
    if not value or not value.get("layers"):
        return None
    painted = np.zeros(np.asarray(value["layers"][0]).shape[:2], bool)
    for layer in value["layers"]:
        layer = np.asarray(layer)
        if layer.ndim == 3 and layer.shape[2] == 4:
            painted |= layer[..., 3] > 0
    ys, xs = np.nonzero(painted)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def attach(picker: RegionPicker, studio: Studio, source: SourcePicker, fill: Callable[[tuple, np.ndarray], list],
           outputs: list) -> None:
    """Wire ``picker``: *Show the frame* loads the source's frame into the editor; each stroke
    calls ``fill(box, frame)`` for the values of ``outputs``. Private UI plumbing: not API endpoints."""
    def show(upload: str | None, task_id: str, position: float, request: gr.Request) -> dict:
        try:
            frame = source_frame(studio, owner_of(studio, request), upload, task_id, position)
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None
        return {"background": frame, "layers": [], "composite": frame}

    def drawn(value: dict | None):
        box = drawn_box(value)
        return fill(box, np.asarray(value["background"])) if box is not None else [gr.skip()] * len(outputs)

    picker.show.click(show, [source.upload, source.task_id, picker.position], picker.editor, api_visibility="private")
    picker.editor.change(drawn, picker.editor, outputs, api_visibility="private", show_progress="hidden")
