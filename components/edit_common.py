"""Widgets and handler plumbing shared by the video-side feature tabs (inpaint, V2V, lip-sync,
consistency, scenes): where the input video comes from, and following the queued task."""

from __future__ import annotations

import functools
from contextlib import closing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

# Called through the module, so there is one follower to patch (tests/test_ui_follow.py).
import components.follow as task_follower
from components.follow import SERVER_RESTARTING, end_state  # noqa: F401  (re-exported for callers and tests)
from components.session import admitted, user_error
from studio.core import Studio
from studio.errors import StudioError
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


def follow(studio: Studio, task_id: str, owner: str) -> Iterator[tuple[str, str | None, dict | None]]:
    """Yield (status text, video path, result) as the task runs, through the one follower
    (``components.follow.follow_task``: real end state, cancel when the page goes away, toast
    on failure); updates with nothing new for these three outputs are left out."""
    # Closed early (the page went away), the follower is closed at once: it cancels the task now.
    with closing(task_follower.follow_task(studio, task_id, owner)) as updates:
        for update in updates:
            if update.status_line is not None or update.video is not None or update.result is not None:
                yield update.status_line, update.video, update.result
