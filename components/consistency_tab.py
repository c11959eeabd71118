"""The Consistency tab: register entities from reference images, then track them in a video.

A thin adapter over ``studio.genius.consistency.entities`` and ``.submit`` (api names
``/register_entity``, ``/list_entities``, ``/track``). Each UI visitor's entities are its own (``components.session``),
apart from every other visitor's and every API key's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import numpy as np

from components import examples
from components.edit_common import (
    SourcePicker,
    ends_truthfully,
    gr_error,
    or_skip,
    source_of,
    source_picker,
    submit_and_follow,
)
from components.region_picker import RegionPicker
from components.region_picker import attach as region_picker_events
from components.region_picker import region_picker
from components.session import owner_of, user_error
from components.widgets import bounds, choices, default
from studio.core import Studio
from studio.engine.request import parse_model
from studio.errors import StudioError
from studio.genius.consistency.entities import list_entities, register_entity
from studio.genius.consistency.schema import APPEARANCE_MODELS, RegisterEntityRequest, TrackRequest
from studio.genius.consistency.scoring import HISTOGRAM
from studio.genius.consistency.submit import submit
from studio.media.inputs import encode_png_base64
from studio.models.appearance import EMBEDDERS


@dataclass
class ConsistencyTab:
    register_inputs: list
    register_button: gr.Button
    register_outputs: list
    refresh_button: gr.Button
    entities: gr.JSON
    track_inputs: list
    track_button: gr.Button
    track_outputs: list
    source: SourcePicker  # where the Library sends a video
    region: RegionPicker  # the reference cut from a frame of that video


def create_ui(studio: Studio) -> ConsistencyTab:
    """Lay out the tab (call inside a ``gr.Tab``)."""
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("### 1. Register entities")
            reference = gr.Image(label="Reference image (16-2048 px per side)", type="numpy",
                                 elem_id="consistency-reference")
            region = region_picker("consistency", "entity in a frame of the video (step 2's), to cut it out as the "
                                   "reference")
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="e.g. hero", elem_id="consistency-name")
                entity_type = gr.Dropdown(choices(RegisterEntityRequest, "entity_type"),
                                          value=default(RegisterEntityRequest, "entity_type"), label="Type")
            register_button = gr.Button("Register entity", elem_id="consistency-register")
            gr.Examples([[examples.BALL, "ball", "object"]], inputs=[reference, name, entity_type],
                        label=examples.LABEL + " (the red ball)")
            registered = gr.Markdown("", elem_id="consistency-registered")
            with gr.Row():
                refresh_button = gr.Button("Refresh list", size="sm")
            entities = gr.JSON(label="Registered entities", value=[])  # filled per visitor on page load
        with gr.Column(scale=1):
            gr.Markdown("### 2. Track them in a video")
            source = source_picker("consistency")
            names = gr.Textbox(label="Entities to track (comma-separated names; empty = all)")
            detect_every = gr.Slider(**bounds(TrackRequest, "detect_every"), step=1,
                                     label="Detect every N frames (track in between)")
            appearance_model = gr.Dropdown(
                [(_appearance_label(m), m) for m in APPEARANCE_MODELS], value=HISTOGRAM,
                label="Appearance similarity (classical histogram, or a CLIP model)", elem_id="consistency-appearance")
            track_button = gr.Button("Track", variant="primary", elem_id="consistency-run")
            gr.Examples([[examples.CLIP, "ball"]], inputs=[source.upload, names], label=examples.LABEL)
            status = gr.Markdown("Ready.", elem_id="consistency-status")
            video = gr.Video(label="Annotated video", interactive=False, elem_id="consistency-video")
            timelines = gr.JSON(label="Consistency score and timelines")
    return ConsistencyTab([reference, name, entity_type], register_button, [registered, entities], refresh_button,
                          entities, [source.upload, source.task_id, names, detect_every, appearance_model],
                          track_button,
                          [status, video, timelines], source, region)


def _appearance_label(model_id: str) -> str:
    if model_id == HISTOGRAM:
        return "histogram: colour + structure (classical)"
    return f"{model_id}: {EMBEDDERS[model_id].label}"


def _entities(studio: Studio, owner: str) -> list[dict]:
    return [e.model_dump() for e in list_entities(studio.entities, owner).entities]


def make_register_handler(studio: Studio):
    def register(image: np.ndarray | None, name: str = "", entity_type: str = "object",
                 request: gr.Request = None) -> tuple[str, list[dict]]:
        """Register an entity to track: a reference image, a unique name and a type.

        Args:
            image: the reference image (16-2048 px on each side, not flat).
            name: unique among your entities; the key of its timeline.
            entity_type: character, object, animal, vehicle or prop (a character also gets a face model).

        Returns:
            A confirmation, and the list of registered entities.
        """
        if image is None:
            raise user_error("Upload a reference image first.", title="Validation error")
        body = {"name": (name or "").strip(), "entity_type": entity_type,
                "reference_image_base64": encode_png_base64(np.ascontiguousarray(image[:, :, :3]))}
        owner = owner_of(studio, request)
        try:
            info = register_entity(studio.entities, parse_model(RegisterEntityRequest, body), owner)
        except StudioError as error:
            raise gr_error(error) from None
        return (f"Registered **{info.name}** ({info.entity_type}, {info.width}x{info.height}).",
                _entities(studio, owner))

    return register


def make_list_handler(studio: Studio):
    def list_all(request: gr.Request = None) -> list[dict]:
        """Your registered entities (id, name, type, reference size, creation time).

        Returns:
            The entities, oldest first.
        """
        return _entities(studio, owner_of(studio, request))

    return list_all


def make_track_handler(studio: Studio):
    def track(video: str | None, task_id: str = "", entity_names: str = "", detect_every: int = 5,
              appearance_model: str = HISTOGRAM, request: gr.Request = None) -> Iterator[tuple]:
        """Track registered entities through a video and score how consistently they look.

        Args:
            video: input video file (or leave empty and give task_id).
            task_id: a finished task whose video is tracked.
            entity_names: comma-separated entity names; empty tracks all of them.
            detect_every: detect on every N-th frame, track in between.
            appearance_model: the score's appearance term: "histogram" (classical) or a CLIP encoder
                ("tiny-clip": offline, untrained, meaningless scores; "clip-vit-base-patch32": from the Hub).

        Returns:
            Per update: status text, the annotated video, the result (consistency_score, entity_timelines with
            [x1, y1, x2, y2] boxes, entity_scores).
        """
        source_task, upload = source_of(task_id, video)
        names = [n.strip() for n in (entity_names or "").split(",") if n.strip()]
        body = {"entity_names": names or None, "detect_every": int(detect_every),
                "appearance_model": appearance_model or HISTOGRAM}
        updates = submit_and_follow(studio, request, lambda owner: submit(
            studio.services, studio.entities, parse_model(TrackRequest, body), owner, task_id=source_task,
            upload=upload))
        for status, path, result in updates:
            if result:
                meta = result["metadata"]
                details = meta["details"]
                score = details["consistency_score"]
                status += f" Consistency score: {'n/a (no entity found)' if score is None else f'{score:.3f}'}"
                status += f" ({details.get('appearance_model', HISTOGRAM)}, {meta['path']} path)."
                status += "".join(f" Note: {note}." for note in meta.get("notes") or [])
                result = {"task_id": result["task_id"], "path": meta["path"], "notes": meta.get("notes") or [],
                          **details}
            yield or_skip(status, path, result)

    return track


def create_event_handlers(tab: ConsistencyTab, studio: Studio, demo: gr.Blocks | None = None) -> None:
    """Wire the tab; with ``demo``, the visitor's own entities are listed when the page loads."""
    if demo is not None:
        demo.load(make_list_handler(studio), None, tab.entities, api_visibility="private")
    region_picker_events(tab.region, studio, tab.source, outputs=[tab.register_inputs[0]],
                         fill=lambda box, frame: [frame[box[1]:box[3], box[0]:box[2]]])  # the reference image
    tab.register_button.click(make_register_handler(studio), tab.register_inputs, tab.register_outputs,
                              api_name="register_entity")
    tab.refresh_button.click(make_list_handler(studio), None, tab.entities, api_name="list_entities")
    tab.track_button.click(ends_truthfully(make_track_handler(studio), status=0, outputs=3), tab.track_inputs,
                           tab.track_outputs, api_name="track", concurrency_limit=None)
