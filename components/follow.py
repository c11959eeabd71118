"""The one task follower of the UI: every tab that queues a task (Generate, and the video tabs
through ``edit_common.submit_and_follow``) turns the task's events into status-line updates
here, so they all end the same way.

Rules it keeps for every tab:
- the last update names how the task really ended: "Done…", "Cancelled.", "Failed (type): …",
  or ``SERVER_RESTARTING`` when the server stops under it;
- a page that goes away (Stop, closed tab, lost connection: the generator is closed early)
  cancels its task, except when the server is stopping (the task is then requeued and runs
  after the restart, so cancelling it would lose the visitor's work);
- a failed task raises ``user_error`` after its "Failed" line, for the toast.

What differs between tabs is passed in as hooks (the running line, the done line, a progress
callback); a tab's own extras (Generate's frame strip) read ``TaskUpdate.event``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from components.session import ui_file, user_error
from studio.core import Studio
from studio.jobs import events as ev

SERVER_RESTARTING = ("Server restarting: your task is queued again and runs after the restart; "
                     "reload the page then.")


@dataclass(frozen=True)
class TaskUpdate:
    """One step of a followed task, as the UI shows it.

    ``event`` is the event type that caused it (None for the server-restarting line, which no
    event carries); ``status_line``, ``video`` and ``result`` are None where the update has
    nothing new for them; ``finished`` marks the last update."""

    event: str | None
    status_line: str | None = None
    video: str | None = None
    result: dict | None = None
    finished: bool = False
    data: dict[str, Any] = field(default_factory=dict)


def end_state(data: dict, cancelled: bool) -> str:
    """The status line of a task that ended without a result: it always names the end state,
    so the page never keeps showing a running step or an earlier run's "Done"."""
    if cancelled:
        return "Cancelled."
    message = data.get("detail") or data.get("error") or "the task failed"
    return f"Failed ({data['error_type']}): {message}" if data.get("error_type") else f"Failed: {message}"


def step_line(data: dict) -> str:
    """The default running line: the task's step and its progress."""
    return f"{data.get('step', '')} ({data.get('progress', 0.0):.0%})"


def done_line(result) -> str:
    """The default "Done" line of a finished task's result."""
    meta = result.metadata
    return f"Done: {meta.frames} frames, {meta.width}x{meta.height}, {result.generation_time_seconds:.1f} s."


def follow_task(studio: Studio, task_id: str, owner: str, *,
                running_line: Callable[[dict], str] = step_line,
                finished_line: Callable[[Any], str] = done_line,
                on_progress: Callable[[float, str], None] | None = None) -> Iterator[TaskUpdate]:
    """Yield a ``TaskUpdate`` for every event of ``owner``'s task ``task_id`` until it ends.

    Hooks: ``running_line(event data)`` words a progress event; ``finished_line(result)`` words
    the completed task's result; ``on_progress(fraction, step)`` is called for every progress
    event (Generate feeds Gradio's progress with it). Close the generator early (Gradio does
    when the page goes away) and the task is cancelled, unless the server is stopping."""
    finished = False
    try:
        for event in studio.follow(task_id, owner):
            data = event.data
            if event.type == ev.PROGRESS:
                if on_progress is not None:
                    on_progress(data.get("progress", 0.0), data.get("step", ""))
                yield TaskUpdate(event.type, running_line(data), data=data)
            elif event.type == ev.COMPLETE:
                finished = True
                result = studio.result(task_id, owner)
                yield TaskUpdate(event.type, finished_line(result), ui_file(studio.paths.video(task_id)),
                                 result.model_dump(), finished=True, data=data)
            elif event.type in (ev.CANCELLED, ev.ERROR):
                finished = True
                cancelled = event.type == ev.CANCELLED
                yield TaskUpdate(event.type, end_state(data, cancelled=cancelled), finished=True, data=data)
                if not cancelled:  # the line names the failure first, then the toast
                    raise user_error(str(data.get("detail") or data.get("error")), title=str(data.get("error")))
            else:  # e.g. frame_available: nothing for the status line, but a tab may show it
                yield TaskUpdate(event.type, data=data)
        if not finished and studio.shutting_down:  # the server stops: the task waits for it, uncancelled
            finished = True
            yield TaskUpdate(None, SERVER_RESTARTING, finished=True)
    finally:
        if not finished:  # Stop button, closed tab or lost connection: stop the run too
            studio.cancel(task_id, owner)
