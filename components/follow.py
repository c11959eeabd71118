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
callback); a tab's own extras (Generate's frame strip) read ``TaskUpdate.event``. A task whose
progress is other tasks' (a scene's stitch: its shots' mean, which no event of its own carries)
is followed by polling its status (``poll_seconds``), under the same rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from components.session import ui_file, user_error
from studio.core import Studio
from studio.jobs import events as ev
from studio.jobs import store as st

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


def partial_line(result) -> str:
    """The status line of a cancelled task that kept a partial result."""
    meta = result.metadata
    return f"Cancelled: kept the finished part ({meta.frames} frames, {result.duration_seconds:g} s)."


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
                on_progress: Callable[[float, str], None] | None = None,
                poll_seconds: float | None = None) -> Iterator[TaskUpdate]:
    """Yield a ``TaskUpdate`` for every event of ``owner``'s task ``task_id`` until it ends.

    Hooks: ``running_line(event data)`` words a progress event; ``finished_line(result)`` words
    the completed task's result; ``on_progress(fraction, step)`` is called for every progress
    event (Generate feeds Gradio's progress with it). With ``poll_seconds`` the task's status is
    read that often instead of waiting for its events. Close the generator early (Gradio does
    when the page goes away) and the task is cancelled, unless the server is stopping."""
    finished = False
    events = studio.follow(task_id, owner) if poll_seconds is None else _polled(studio, task_id, owner, poll_seconds)
    try:
        for event in events:
            data = event.data
            if event.type == ev.PROGRESS:
                if _cancel_requested(studio, task_id):  # Stop's "Cancelled." must stay the last word
                    continue
                if on_progress is not None:
                    on_progress(data.get("progress", 0.0), data.get("step", ""))
                yield TaskUpdate(event.type, running_line(data), data=data)
            elif event.type == ev.COMPLETE:
                finished = True
                result = studio.result(task_id, owner)
                video = ui_file(studio.paths.fetch("videos", task_id))  # a local copy wherever it was made
                yield TaskUpdate(event.type, finished_line(result), video, result.model_dump(), finished=True,
                                 data=data)
            elif event.type == ev.CANCELLED and data.get("partial"):  # a long video kept its finished windows
                finished = True
                result = studio.result(task_id, owner)
                video = ui_file(studio.paths.fetch("videos", task_id))
                yield TaskUpdate(event.type, partial_line(result), video, result.model_dump(), finished=True,
                                 data=data)
            elif event.type in (ev.CANCELLED, ev.ERROR):
                finished = True
                cancelled = event.type == ev.CANCELLED
                yield TaskUpdate(event.type, end_state(data, cancelled=cancelled), finished=True, data=data)
                if not cancelled:  # the line names the failure first, then the toast
                    raise _toast(data)
            else:  # e.g. frame_available: nothing for the status line, but a tab may show it
                yield TaskUpdate(event.type, data=data)
        if not finished and studio.shutting_down:  # the server stops: the task waits for it, uncancelled
            finished = True
            yield TaskUpdate(None, SERVER_RESTARTING, finished=True)
    finally:
        # Stop button, closed tab or lost connection: stop the run too. Not while the server
        # stops: the task is requeued then and runs after the restart.
        if not finished and not studio.shutting_down:
            studio.cancel(task_id, owner)


def _cancel_requested(studio: Studio, task_id: str) -> bool:
    """Whether the task's cancel was asked for (its row keeps the flag after the run ended): a
    progress event still buffered then is stale, and the Stop button has said how it ended."""
    task = studio.store.get(task_id)
    return task is None or task.cancel_requested or task.is_terminal


def _toast(data: dict):
    """The ``gr.Error`` of a failed task. A live error event carries a title (``error``) and a
    message (``detail``); one rebuilt from the task's row (it ended before the page followed it)
    has only the message in ``error``, so its type is the title."""
    if data.get("detail"):
        return user_error(str(data["detail"]), title=str(data.get("error") or "Task failed"))
    return user_error(str(data.get("error") or "the task failed"), title=str(data.get("error_type") or "Task failed"))


def _polled(studio: Studio, task_id: str, owner: str, poll_seconds: float) -> Iterator[ev.Event]:
    """The task's status every ``poll_seconds`` as progress events, then its final event (as
    ``Studio.follow`` would end); nothing more once the server stops."""
    while not studio.shutting_down:
        state = studio.status(task_id, owner)
        if state.status in st.TERMINAL_STATUSES:
            yield studio.final_event(studio.task(task_id, owner))
            return
        yield ev.Event(task_id, ev.PROGRESS, {"status": state.status, "progress": state.progress,
                                              "step": state.current_step or state.status})
        time.sleep(poll_seconds)
