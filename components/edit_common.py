"""Widgets and handler plumbing shared by the video-side feature tabs (inpaint, V2V, lip-sync,
consistency, scenes): where the input video comes from, and following the queued task."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from components.session import admitted, ui_file, user_error
from studio.core import Studio
from studio.errors import StudioError
from studio.jobs import events as ev
from studio.views import SubmitResponse


@dataclass
class SourcePicker:
    task_id: gr.Textbox
    upload: gr.Video


def source_picker(prefix: str) -> SourcePicker:
    """An uploaded video, or the id of a finished task from the Generate tab."""
    with gr.Group():
        upload = gr.Video(label="Input video (upload)", sources=["upload"], elem_id=f"{prefix}-upload")
        task_id = gr.Textbox(label="…or the task id of a finished video", elem_id=f"{prefix}-task-id",
                             placeholder="e.g. the Task id shown on the Generate tab")
    return SourcePicker(task_id, upload)


def source_of(task_id: str | None, upload: str | None) -> tuple[str | None, Path | None]:
    """(task id, upload path) for a feature's ``submit``; an upload wins over a task id."""
    if upload:
        return None, Path(upload)
    return (task_id or "").strip() or None, None


def gr_error(error: StudioError) -> gr.Error:
    return user_error(error.detail, title=error.title)


def submit_and_follow(studio: Studio, request: gr.Request | None, submit: Callable[[str], SubmitResponse],
                      new_tasks: int = 1) -> Iterator[tuple[str, str | None, dict | None]]:
    """Queue a task through the feature's core ``submit(owner)`` for the caller's own owner,
    within its anonymous limits (refusals and the feature's errors shown as ``gr.Error``), and
    follow it: (status text, video path, result), None where an update has nothing new."""
    try:
        with admitted(studio, request, new_tasks) as owner:
            submitted = submit(owner)
    except StudioError as error:
        raise gr_error(error) from None
    yield f"Queued (position {submitted.queue_position}).", None, None
    yield from follow(studio, submitted.task_id, owner)


def ends_truthfully(handler: Callable[..., Iterator[tuple]], status: int, outputs: int
                    ) -> Callable[..., Iterator[tuple]]:
    """Wrap a tab's generator handler so that whatever error ends it (a refused input before
    anything was queued, a failed task, an unexpected fault) first puts "Failed: ..." in the
    status line (output ``status`` of ``outputs``), then raises for the toast: the line never
    keeps a running step or an earlier run's "Done" after an error.

    ``functools.wraps`` keeps the signature, type hints and docstring Gradio reads for the API.
    """
    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        last = None
        try:
            for update in handler(*args, **kwargs):
                if isinstance(update[status], str):
                    last = update[status]
                yield update
        except Exception as error:
            if not (last or "").startswith("Failed"):
                if isinstance(error, gr.Error):
                    line = f"Failed ({error.title}): {error.message}" if error.title else f"Failed: {error.message}"
                else:
                    line = "Failed (InternalError): the server could not finish this request"
                update = [gr.skip()] * outputs
                update[status] = line
                yield tuple(update)
            raise
    return wrapper


def or_skip(*values) -> tuple:
    """Outputs for a Gradio update: None (nothing new) leaves the component as it is."""
    return tuple(gr.skip() if value is None else value for value in values)


SERVER_RESTARTING = ("Server restarting: your task is queued again and runs after the restart; "
                     "reload the page then.")


def end_state(data: dict, cancelled: bool) -> str:
    """The status line of a task that ended without a result: it always names the end state,
    so the page never keeps showing a running step or an earlier run's "Done"."""
    if cancelled:
        return "Cancelled."
    message = data.get("detail") or data.get("error") or "the task failed"
    return f"Failed ({data['error_type']}): {message}" if data.get("error_type") else f"Failed: {message}"


def follow(studio: Studio, task_id: str, owner: str) -> Iterator[tuple[str, str | None, dict | None]]:
    """Yield (status text, video path, result) as the task runs; cancel it if the UI goes away.

    The last update always states how the task ended: "Done: ...", "Cancelled." or "Failed: ..."
    (a failure then also raises ``gr.Error`` for the toast)."""
    finished = False
    try:
        for event in studio.follow(task_id, owner=owner):
            data = event.data
            if event.type == ev.PROGRESS:
                yield f"{data.get('step', '')} ({data.get('progress', 0.0):.0%})", None, None
            elif event.type == ev.COMPLETE:
                finished = True
                result = studio.result(task_id, owner=owner)
                yield (f"Done: {result.metadata.frames} frames, {result.metadata.width}x{result.metadata.height}, "
                       f"{result.generation_time_seconds:.1f} s.", ui_file(studio.paths.video(task_id)),
                       result.model_dump())
            elif event.type == ev.CANCELLED:
                finished = True
                yield end_state(data, cancelled=True), None, None
            elif event.type == ev.ERROR:
                finished = True
                yield end_state(data, cancelled=False), None, None
                raise user_error(str(data.get("detail") or data.get("error")), title=str(data.get("error")))
        if not finished and studio.shutting_down:  # the server stops: the task waits for it, uncancelled
            finished = True
            yield SERVER_RESTARTING, None, None
    finally:
        if not finished:
            studio.cancel(task_id, owner=owner)
