"""The Scenes tab: a multi-shot edit from several prompts, stitched with transitions.

A thin adapter over ``studio.genius.scene.submit`` (api names ``/scene_edit``, ``/scene_transitions``).
The model paths (model morphs and their model, a character reference image) are the last three
inputs, with defaults, so calls that leave them out keep the classical behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import gradio as gr

# Called through the module, so there is one follower to patch (tests/test_ui_follow.py).
import components.follow as task_follower
from components import examples
from components.edit_common import ends_truthfully, gr_error, or_skip
from components.scene_timeline import finished_shots, shot_gallery, timeline_html
from components.session import admitted
from components.widgets import bounds, choices
from studio.core import Studio
from studio.engine.request import GenerationSettings, parse_model
from studio.errors import StudioError
from studio.genius.scene.schema import SceneEditRequest, Transition
from studio.genius.scene.submit import submit, transitions_catalog
from studio.media.inputs import encode_png_base64

POLL_SECONDS = 0.5
TRANSITION_CHOICES = choices(Transition, "type")
# Where the tab starts (the handler's defaults, which the Gradio API documents): short, cheap
# shots. Ranges and choices come from the request models.
START = {"fps": 12, "resolution": "480p", "num_inference_steps": 20}
EXAMPLE = [["Establishing shot: medieval castle at dawn", 2], ["Close-up: knight preparing armor", 2],
           ["Action: knight rides through forest", 2]]
SEASONS = [["A tree in spring blossom", 1.5], ["The same tree in summer sun", 1.5], ["The tree in autumn leaves", 1.5],
           ["The tree in winter snow", 1.5]]


@dataclass
class SceneTab:
    inputs: list
    run_button: gr.Button
    outputs: list
    picked: gr.Number
    shot_buttons: dict[str, gr.Button]  # add, remove, up, down
    shot_hint: gr.Markdown
    timeline: gr.HTML


def create_ui(studio: Studio) -> SceneTab:
    """Lay out the tab (call inside a ``gr.Tab``)."""
    with gr.Row():
        with gr.Column(scale=1):
            scenes = gr.Dataframe(value=EXAMPLE, headers=["prompt", "duration (s)"], datatype=["str", "number"],
                                  column_count=(2, "fixed"), interactive=True, label="Scenes", elem_id="scene-table")
            picked = gr.Number(value=None, visible=False, precision=0)  # the shot (row) last clicked
            with gr.Row():
                add_shot = gr.Button("Add shot", size="sm", elem_id="scene-add")
                remove_shot = gr.Button("Remove shot", size="sm", elem_id="scene-remove")
                move_up = gr.Button("Move up", size="sm", elem_id="scene-up")
                move_down = gr.Button("Move down", size="sm", elem_id="scene-down")
            shot_hint = gr.Markdown("Click a shot, then remove or move it; new shots go at the end.",
                                    elem_id="scene-shot-hint")
            timeline = gr.HTML(timeline_html(EXAMPLE, "auto"), elem_id="scene-timeline")
            gr.Examples([[EXAMPLE], [SEASONS]], inputs=[scenes], label=examples.LABEL)
            with gr.Row():
                transition = gr.Dropdown(TRANSITION_CHOICES, value="auto", label="Transitions",
                                         info="auto: chosen per boundary from measured colour and motion")
                transition_seconds = gr.Slider(**bounds(SceneEditRequest, "transition_duration_seconds"), step=0.1,
                                               label="Transition length (s)")
            consistency = gr.Checkbox(value=False, label="Character consistency (same seed and description)")
            character = gr.Textbox(label="Character description", placeholder="a knight in silver armor")
            with gr.Row():
                fps = gr.Slider(**bounds(GenerationSettings, "fps", START["fps"]), step=1, label="FPS")
                resolution = gr.Dropdown(choices(GenerationSettings, "resolution"), value=START["resolution"],
                                         label="Resolution")
                steps = gr.Slider(**bounds(GenerationSettings, "num_inference_steps", START["num_inference_steps"]),
                                  step=1, label="Steps")
            with gr.Accordion("Model paths (Wan VACE, FLF2V)", open=False):
                morph_with_model = gr.Checkbox(value=False, label="Generate morph transitions with a model",
                                               info="first/last-frame generation instead of the optical-flow morph")
                morph_model = gr.Dropdown(choices(SceneEditRequest, "morph_model"), value=None,
                                          label="Morph model (empty: the Wan VACE default)")
                reference = gr.Image(label="Character reference (with character consistency)", type="numpy",
                                     sources=["upload", "clipboard"], elem_id="scene-reference")
            run_button = gr.Button("Create edit", variant="primary", elem_id="scene-run")
            with gr.Accordion("Transition types", open=False):
                gr.Markdown("\n".join(f"- **{t['type']}**: {t['description']}" for t in transitions_catalog()))
        with gr.Column(scale=1):
            status = gr.Markdown("Ready.", elem_id="scene-status")
            video = gr.Video(label="Edit", interactive=False, elem_id="scene-video")
            shots = gr.Gallery(label="Shots (first frames, as each finishes)", columns=4, height="auto",
                               interactive=False, elem_id="scene-shots")
            with gr.Accordion("Details", open=False):
                details = gr.JSON(label="Timeline and transitions")
    inputs = [scenes, transition, transition_seconds, consistency, character, fps, resolution, steps,
              morph_with_model, reference, morph_model]
    return SceneTab(inputs, run_button, [status, video, details, shots], picked,
                    {"add": add_shot, "remove": remove_shot, "up": move_up, "down": move_down}, shot_hint, timeline)


def _scenes(table) -> list[dict]:
    rows = table.values.tolist() if hasattr(table, "values") else list(table or [])
    return [{"prompt": str(prompt).strip(), "duration": float(duration)}
            for prompt, duration in rows if str(prompt).strip()]


def make_handler(studio: Studio):
    def scene_edit(scenes, transition: str = "auto", transition_duration_seconds: float = 0.5,
                   enable_character_consistency: bool = False, character_description: str = "",
                   fps: int = 12, resolution: str = "480p", num_inference_steps: int = 20,
                   morph_with_model: bool = False, character_reference=None,
                   morph_model: str | None = None, request: gr.Request = None) -> Iterator[tuple]:
        """Generate every scene as a shot and stitch them with transitions into one video.

        Args:
            scenes: rows of [prompt, duration in seconds].
            transition: auto (chosen per boundary), or one type for every boundary.
            transition_duration_seconds: overlap of each transition.
            enable_character_consistency: same seed and character description for every shot.
            character_description: appended to every prompt when consistency is on.
            fps: frames per second of every shot.
            resolution: 480p, 720p, ...
            num_inference_steps: denoising steps per shot.
            morph_with_model: generate morph transitions with a model (first/last-frame generation).
            character_reference: an image of the character; with consistency on, every shot is
                generated by Wan VACE conditioned on it.
            morph_model: the morphs' model: a Wan VACE or FLF2V (i2v) model; empty: the VACE default.

        Returns:
            Per update: status text, the edit video, timeline and transitions, and the finished
            shots' first frames with captions.
        """
        rows = _scenes(scenes)
        body = {"scenes": rows, "transition_duration_seconds": float(transition_duration_seconds),
                "enable_character_consistency": bool(enable_character_consistency),
                "character_description": character_description.strip() or None,
                "settings": {"fps": int(fps), "resolution": resolution,
                             "num_inference_steps": int(num_inference_steps)},
                "morph_with_model": bool(morph_with_model)}
        if morph_with_model and morph_model:
            body["morph_model"] = morph_model
        if character_reference is not None:
            body["character_reference_image_base64"] = encode_png_base64(character_reference)
        if transition == "auto":
            body["enable_auto_transitions"] = True
        else:
            body["transitions"] = [{"type": transition}] * max(len(rows) - 1, 0)
        try:  # one task per shot and one stitch task, all within the visitor's limits
            with admitted(studio, request, new_tasks=len(rows) + 1) as owner:
                reply = submit(studio.services, parse_model(SceneEditRequest, body), owner)
        except StudioError as error:
            raise gr_error(error) from None
        planned = ", ".join(t.type for t in reply.transitions) or "none"

        def running(data: dict) -> str:
            return (f"{data['step']} ({data['progress']:.0%}) — {reply.total_scenes} scenes, "
                    f"{reply.total_duration_seconds:.1f} s planned, transitions: {planned}")

        def done(result) -> str:
            return f"Done: {result.duration_seconds:.2f} s, {result.metadata.frames} frames."

        # Polled, not event-driven: while the shots run, the stitch's progress is theirs (see
        # Studio.status), which no event of the stitch task carries.
        updates = task_follower.follow_task(studio, reply.task_id, owner, running_line=running,
                                            finished_line=done, poll_seconds=POLL_SECONDS)
        prompts, shown = [row["prompt"] for row in rows], -1
        with closing(updates):  # closed early (the page went away): the follower cancels the edit
            for update in updates:
                if update.status_line is not None:
                    details = update.result["metadata"]["details"] if update.result else None
                    finished = finished_shots(studio, reply.shot_task_ids)
                    gallery = None  # sent when a shot finished, and in the last update (an API caller's result)
                    if len(finished) != shown or update.finished:
                        gallery = shot_gallery(studio, reply.shot_task_ids, prompts, finished)
                    shown = len(finished)
                    yield or_skip(update.status_line, update.video, details, gallery)

    return scene_edit


def _rows(table) -> list[list]:
    """The shots as [prompt, seconds] rows (Gradio hands a DataFrame, a list or a dict)."""
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):
        return [list(row) for row in table.values.tolist()]
    if isinstance(table, dict):
        return [list(row) for row in table.get("data", [])]
    return [list(row) for row in table]


def append_shot(table, prompt: str, seconds: float) -> list[list]:
    """The shots with [prompt, seconds] at the end; the untouched example shots make way for it."""
    rows = _rows(table)
    if rows == [list(row) for row in EXAMPLE]:
        rows = []
    return rows + [[prompt, seconds]]


def add_shot(table) -> tuple[list[list], int]:
    """The shots with an empty one at the end (the length of the last, or 2 s), and its row."""
    rows = _rows(table)
    seconds = rows[-1][1] if rows else 2
    return rows + [["", seconds]], len(rows)


def remove_shot(table, row: int | None) -> tuple[list[list], int | None]:
    """The shots without ``row`` (nothing picked: the last one); at least one shot stays."""
    rows = _rows(table)
    if len(rows) <= 1:
        return rows, row
    index = len(rows) - 1 if row is None or not 0 <= int(row) < len(rows) else int(row)
    return rows[:index] + rows[index + 1:], min(index, len(rows) - 2)


def move_shot(table, row: int | None, step: int) -> tuple[list[list], int | None]:
    """The shots with ``row`` moved ``step`` places (-1 up, +1 down), and where it went."""
    rows = _rows(table)
    if row is None or not 0 <= int(row) < len(rows):
        return rows, row
    index, target = int(row), min(max(int(row) + step, 0), len(rows) - 1)
    rows.insert(target, rows.pop(index))
    return rows, target


def create_event_handlers(tab: SceneTab, studio: Studio) -> None:
    scenes = tab.inputs[0]

    def picked(event: gr.SelectData) -> int:
        return event.index[0] if isinstance(event.index, (list, tuple)) else event.index

    private = {"api_visibility": "private", "show_progress": "hidden"}
    scenes.select(picked, None, tab.picked, **private)
    tab.shot_buttons["add"].click(add_shot, scenes, [scenes, tab.picked], **private)
    tab.shot_buttons["remove"].click(remove_shot, [scenes, tab.picked], [scenes, tab.picked], **private)
    tab.shot_buttons["up"].click(lambda table, row: move_shot(table, row, -1), [scenes, tab.picked],
                                 [scenes, tab.picked], **private)
    tab.shot_buttons["down"].click(lambda table, row: move_shot(table, row, 1), [scenes, tab.picked],
                                   [scenes, tab.picked], **private)
    gr.on([scenes.change, tab.inputs[1].change], lambda table, transition: timeline_html(_rows(table), transition),
          [scenes, tab.inputs[1]], tab.timeline, **private)
    tab.run_button.click(ends_truthfully(make_handler(studio), status=0, outputs=4), tab.inputs, tab.outputs,
                         api_name="scene_edit", concurrency_limit=None)
    gr.api(transitions_catalog, api_name="scene_transitions")
