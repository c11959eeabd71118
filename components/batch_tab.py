"""The Batch tab: many prompts in, a gallery of results as they finish, per-task status, totals.

A thin adapter over ``studio.genius.batch.submit`` (api name ``/batch_submit``).

It polls the batch's aggregate (``batch_status``: counts, every task's row, the similarity
cache's savings) rather than using ``components.follow``, which follows ONE task and cancels
it when the page goes away: a batch is many tasks whose results outlive the page (they are
listed by batch id), so leaving the page does not cancel them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr

from components import examples
from components.edit_common import ends_truthfully
from components.follow import SERVER_RESTARTING
from components.session import admitted, owner_of, ui_file, user_error
from components.widgets import bounds, choices
from studio.core import Studio
from studio.engine.request import GenerationSettings, parse_model
from studio.errors import StudioError
from studio.genius.batch.schema import PRIORITIES, BatchRequest
from studio.genius.batch.submit import batch_status, submit_batch

POLL_SECONDS = 0.5
# Where the tab starts (the handler's defaults, which the Gradio API documents): a short, cheap
# batch rather than GenerationSettings' single-video defaults. Ranges and choices come from the models.
START = {"duration_seconds": 2, "fps": 12, "resolution": "480p", "num_inference_steps": 20}


@dataclass
class BatchTab:
    inputs: list[gr.components.Component]
    submit_button: gr.Button
    outputs: list[gr.components.Component]  # the last: the gallery's task ids (a State, not in the API)
    gallery: gr.Gallery
    video: gr.Video


def create_ui(studio: Studio) -> BatchTab:
    """Lay out the tab (call inside a ``gr.Tab``)."""
    with gr.Row():
        with gr.Column(scale=1):
            prompts = gr.Textbox(label="Prompts (one per line)", lines=6, elem_id="batch-prompts",
                                 placeholder="Sunset over ocean waves\nCity skyline at night\nForest in autumn colors")
            priority = gr.Radio(list(PRIORITIES)[::-1], value="normal", label="Priority")
            caching = gr.Checkbox(value=True, label="Similarity caching (equal prompts share text encodings; "
                                                    "near-identical ones skip early steps)")
            max_concurrent = gr.Slider(**bounds(BatchRequest, "max_concurrent"), step=1,
                                       label="Max concurrent (tasks per pipeline call)")
            with gr.Row():
                duration = gr.Slider(**bounds(GenerationSettings, "duration_seconds", START["duration_seconds"]), step=0.5,
                                     label="Duration (s)")
                fps = gr.Slider(**bounds(GenerationSettings, "fps", START["fps"]), step=1, label="FPS")
            with gr.Row():
                resolution = gr.Dropdown(choices(GenerationSettings, "resolution"), value=START["resolution"],
                                         label="Resolution")
                steps = gr.Slider(**bounds(GenerationSettings, "num_inference_steps", START["num_inference_steps"]),
                                  step=1, label="Steps")
            submit_button = gr.Button("Submit batch", variant="primary", elem_id="batch-run")
            gr.Examples([["a paper crane in the wind\na glass whale at night"],
                         ["Sunset over ocean waves\nSunset over ocean waves, golden light\nCity skyline at night"]],
                        inputs=[prompts], label=examples.LABEL + " (the second shares work between similar prompts)")
        with gr.Column(scale=1):
            totals = gr.Markdown("No batch yet.", elem_id="batch-totals")
            gallery = gr.Gallery(label="Results (pick one to play it)", columns=3, height=320, allow_preview=False,
                                 elem_id="batch-gallery")
            video = gr.Video(label="Picked result", interactive=False, buttons=["download"], elem_id="batch-video")
            table = gr.Dataframe(headers=["#", "prompt", "status", "progress", "step"], label="Tasks",
                                 interactive=False, elem_id="batch-table")
            batch_id = gr.Textbox(label="Batch id", interactive=False)
    inputs = [prompts, priority, caching, max_concurrent, duration, fps, resolution, steps]
    shown = gr.State([])
    return BatchTab(inputs, submit_button, [batch_id, totals, gallery, table, shown], gallery, video)


def make_handler(studio: Studio):
    def batch_submit(prompts: str, priority: str = "normal", enable_similarity_caching: bool = True,
                     max_concurrent: int = 4, duration_seconds: float = 2.0, fps: int = 12,
                     resolution: str = "480p", num_inference_steps: int = 20,
                     request: gr.Request = None) -> Iterator[tuple]:
        """Submit one task per prompt line and follow them until all have finished.

        Args:
            prompts: prompts, one per line (blank lines are ignored).
            priority: high, normal or low.
            enable_similarity_caching: reuse text encodings of equal prompts.
            max_concurrent: most tasks run together in one pipeline call.
            duration_seconds: video length of every task.
            fps: frames per second.
            resolution: 480p ... 8k.
            num_inference_steps: denoising steps.

        Returns:
            Per update: batch id, totals, gallery of finished thumbnails (pick one in the page to play it), task
            table.
        """
        lines = [line.strip() for line in prompts.splitlines() if line.strip()]
        try:
            batch = parse_model(BatchRequest, {
                "prompts": lines or [""], "priority": priority, "enable_similarity_caching": enable_similarity_caching,
                "max_concurrent": int(max_concurrent),
                "settings": {"duration_seconds": duration_seconds, "fps": int(fps), "resolution": resolution,
                             "num_inference_steps": int(num_inference_steps)}})
            with admitted(studio, request, new_tasks=len(lines) or 1) as owner:  # every prompt is a task
                submitted = submit_batch(studio.services, batch, owner=owner)
        except StudioError as error:  # the core's InvalidRequest names the field and its bound
            raise user_error(error.detail, title=error.title) from None
        thumbnails: dict[str, str] = {}  # task id -> its thumbnail as handed to Gradio (once per task)
        while True:
            status = batch_status(studio.services, submitted.batch_id, owner)
            done = sum(status.counts.get(s, 0) for s in ("completed", "failed", "cancelled"))
            for t in status.tasks:
                if t.status == "completed" and t.task_id not in thumbnails:
                    thumbnails[t.task_id] = ui_file(studio.paths.fetch("thumbnails", t.task_id))
            finished = [(i, t) for i, t in enumerate(status.tasks) if t.task_id in thumbnails]
            gallery = [(thumbnails[t.task_id], lines[i]) for i, t in finished]
            rows = [[i + 1, lines[i][:60], t.status, f"{t.progress:.0%}", t.current_step]
                    for i, t in enumerate(status.tasks)]
            counts = ", ".join(f"{n} {s}" for s, n in status.counts.items())
            saved = status.similarity_cache
            totals = (f"**{done}/{status.total} finished** ({counts}) — {status.progress:.0%} overall · "
                      f"similarity caching: {saved.text_encodings_reused} text encodings and "
                      f"{saved.denoising_states_reused} denoising states reused, {saved.steps_skipped} steps skipped")
            yield submitted.batch_id, totals, gallery, rows, [t.task_id for _, t in finished]
            if done == status.total:
                return
            if studio.shutting_down:  # its tasks are requeued and run after the restart: say so, stop polling
                yield submitted.batch_id, SERVER_RESTARTING, gr.skip(), gr.skip(), gr.skip()
                return
            time.sleep(POLL_SECONDS)

    return batch_submit


def create_event_handlers(tab: BatchTab, studio: Studio) -> None:
    tab.submit_button.click(ends_truthfully(make_handler(studio), status=1, outputs=5), tab.inputs, tab.outputs,
                            api_name="batch_submit", concurrency_limit=None)

    def play(shown: list[str], event: gr.SelectData, request: gr.Request) -> str | None:
        """The picked result's video (the visitor's own task; a copy Gradio may serve)."""
        if not 0 <= event.index < len(shown):
            return None
        try:
            return ui_file(studio.media_file("videos", shown[event.index], owner_of(studio, request)))
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None

    tab.gallery.select(play, tab.outputs[-1], tab.video, api_visibility="private")
