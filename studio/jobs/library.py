"""What one owner made: their tasks newest first, a page at a time, and forgetting one.

The Library (``GET /v1/tasks``, the UI's Library tab) reads the same ``tasks`` rows as the
queue, so it lists exactly what ``/v1/status`` and ``/v1/result`` answer for. Pages are keyset
pages on the insertion order (``seq``): a task added while someone pages does not shift the
pages they have not read. A scene's shots are parts of the scene, not works of their own: they
are left out unless asked for by kind.

Forgetting a task deletes its row, events, pending webhooks, idempotency keys and dependency
rows in one transaction; only a finished task (completed, failed, cancelled) that no unfinished
task waits on can go.
"""

from __future__ import annotations

from sqlalchemy import delete, or_, select

from studio.db import Database
from studio.db.schema import events, idempotency, task_dependencies, tasks, webhook_outbox
from studio.engine.request import GenerationSpec
from studio.engine.spec import EditSpec, TaskSpec
from studio.jobs.events import completion
from studio.jobs.task_row import CANCELLED, COMPLETED, TERMINAL_STATUSES, Task, row_to_task
from studio.views import TaskSummary

#: Kinds that are parts of another task (a scene's shots), listed only when asked for by kind.
PART_KINDS = ("scene_shot",)
#: The feature behind each kind, in the words of the UI's tabs.
FEATURES = {"t2v": "Generate", "scene": "Scenes", "scene_shot": "Scene shot", "inpaint": "Inpaint",
            "lipsync": "Lip-Sync", "v2v": "V2V", "consistency": "Consistency"}


def summary(task: Task, spec: TaskSpec | None) -> TaskSummary:
    """The Library's entry for ``task`` (``spec``: its typed spec, None when unreadable)."""
    feature = FEATURES.get(task.kind, task.kind)
    model = seed = None
    if isinstance(spec, GenerationSpec):
        title, model, seed = spec.prompt, spec.model, spec.seed
    elif isinstance(spec, EditSpec) and spec.source is not None:
        title = (f"{feature} of task {spec.source.task_id}" if spec.source.task_id
                 else f"{feature} of an uploaded video")
    else:
        title = feature
    has_video = bool(task.result) and task.status in (COMPLETED, CANCELLED)  # a cancel may keep a partial video
    urls = completion(task.id, None) if has_video else {}
    return TaskSummary(
        task_id=task.id, kind=task.kind, feature=feature, status=task.status, title=title, model=model, seed=seed,
        batch_id=task.batch_id, created_at=task.created_at, finished_at=task.finished_at, progress=task.progress,
        duration_seconds=task.result.get("duration_seconds") if has_video else None,
        video_url=urls.get("video_url"), thumbnail_url=urls.get("thumbnail_url"),
        error=task.error if task.status in TERMINAL_STATUSES and task.status != COMPLETED else None)


class TaskLibrary:
    """Reads and deletes of an owner's tasks on ``database``."""

    def __init__(self, database: Database):
        self.database = database

    def page(self, owner: str, *, limit: int, before: int | None = None, status: str | None = None,
             kind: str | None = None) -> tuple[list[Task], int | None]:
        """``owner``'s tasks newest first: at most ``limit``, added before the cursor ``before``
        (None: from the newest). Returns them and the cursor of the next page (None: no more)."""
        query = select(tasks).where(tasks.c.owner == owner)
        if before is not None:
            query = query.where(tasks.c.seq < before)
        if status is not None:
            query = query.where(tasks.c.status == status)
        query = query.where(tasks.c.kind == kind) if kind is not None else query.where(tasks.c.kind.not_in(PART_KINDS))
        with self.database.connect() as db:
            rows = db.execute(query.order_by(tasks.c.seq.desc()).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return [row_to_task(row) for row in rows], (rows[-1].seq if more else None)

    def forget(self, task_id: str) -> str | None:
        """Delete a finished task and everything recorded about it. Returns None when it went, or
        why it cannot (it is not finished; an unfinished task waits on it)."""
        with self.database.transaction() as db:
            status = db.execute(select(tasks.c.status).where(tasks.c.id == task_id)).scalar()
            if status not in TERMINAL_STATUSES:
                return f"it is {status}: cancel it first"
            waiting = db.execute(
                select(tasks.c.id).join(task_dependencies, task_dependencies.c.task_id == tasks.c.id)
                .where(task_dependencies.c.depends_on == task_id, tasks.c.status.not_in(TERMINAL_STATUSES))
            ).scalar()
            if waiting is not None:
                return f"task {waiting} still waits on it"
            db.execute(delete(events).where(events.c.task_id == task_id))
            db.execute(delete(webhook_outbox).where(webhook_outbox.c.task_id == task_id))
            db.execute(delete(idempotency).where(idempotency.c.task_id == task_id))
            db.execute(delete(task_dependencies).where(or_(task_dependencies.c.task_id == task_id,
                                                           task_dependencies.c.depends_on == task_id)))
            db.execute(delete(tasks).where(tasks.c.id == task_id))
        return None
