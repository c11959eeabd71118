"""Scene edits queued before task dependencies existed get their dependency rows.

Revision ID: 0002_scene_dependencies
Revises: 0001_baseline

A scene edit's stitch task stores the ids of its shot tasks (``shots``). Before the
``task_dependencies`` table, a stitch waited for its shots only because the queue happened to run
them first, which stops being true as soon as two workers claim tasks. This adds the rows such a
stitch lacks for every scene task that has not ended, so it waits on ``depends_on`` like one
submitted today. Rows that exist are kept, so the revision is safe to run on any database.

The stored request is read as the JSON it is at this revision (a migration works on the rows'
historical shape, not on today's spec classes).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002_scene_dependencies"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

_TERMINAL = ("completed", "failed", "cancelled")
_tasks = sa.table("tasks", sa.column("id", sa.Text), sa.column("kind", sa.Text), sa.column("status", sa.Text),
                  sa.column("request", sa.Text))
_dependencies = sa.table("task_dependencies", sa.column("task_id", sa.Text), sa.column("depends_on", sa.Text))


def upgrade() -> None:
    bind = op.get_bind()
    scenes = bind.execute(sa.select(_tasks.c.id, _tasks.c.request)
                          .where(_tasks.c.kind == "scene", _tasks.c.status.not_in(_TERMINAL))).all()
    for task_id, request in scenes:
        shots = json.loads(request).get("shots") or []
        have = set(bind.execute(sa.select(_dependencies.c.depends_on)
                                .where(_dependencies.c.task_id == task_id)).scalars())
        missing = [shot for shot in dict.fromkeys(shots) if shot not in have]
        if missing:
            bind.execute(_dependencies.insert(), [{"task_id": task_id, "depends_on": shot} for shot in missing])


def downgrade() -> None:
    """Nothing to undo: the rows say what the stitch always needed."""
