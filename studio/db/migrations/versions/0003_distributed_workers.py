"""Columns and a table for running tasks on Celery workers in other processes.

Revision ID: 0003_distributed_workers
Revises: 0002_scene_dependencies

- ``tasks.queue``: the Celery queue a task is announced on (per model, so a worker keeps its
  weights loaded); ``tasks.worker_id``: the worker running it now.
- ``workers``: every Celery worker process, its queues and models, its heartbeat.
- ``studio_state``: values every process must agree on (the UI cookie secret, maintenance),
  which lived in the data folder of the one process.
- ``task_dependencies.position`` and ``webhook_outbox.seq``: insertion order as data. SQLite had
  it as ``rowid``; PostgreSQL has no such thing, so a scene's shots and a task's webhooks kept
  their order only by chance there. Existing rows get their SQLite rowid order.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_distributed_workers"
down_revision = "0002_scene_dependencies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    op.add_column("tasks", sa.Column("queue", sa.Text, nullable=False, server_default=sa.text("'studio'")))
    op.add_column("tasks", sa.Column("worker_id", sa.Text))
    op.add_column("task_dependencies", sa.Column("position", sa.Integer, nullable=False,
                                                 server_default=sa.text("0")))
    op.add_column("webhook_outbox", sa.Column("seq", sa.Integer, nullable=False, server_default=sa.text("0")))
    if sqlite:  # the order rows were inserted in, which readers used until now
        bind.exec_driver_sql("UPDATE task_dependencies SET position = rowid")
        bind.exec_driver_sql("UPDATE webhook_outbox SET seq = rowid")
    seconds = sa.Float().with_variant(sa.dialects.sqlite.REAL(), "sqlite")
    op.create_table(
        "workers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("queues", sa.Text, nullable=False),
        sa.Column("models", sa.Text, nullable=False),
        sa.Column("device", sa.Text, nullable=False),
        sa.Column("memory_total_gb", seconds),
        sa.Column("memory_used_gb", seconds),
        sa.Column("loaded_model", sa.Text),
        sa.Column("current_task", sa.Text),
        sa.Column("tasks_done", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("busy_seconds", seconds, nullable=False, server_default=sa.text("0")),
        sa.Column("started_at", seconds, nullable=False),
        sa.Column("last_seen", seconds, nullable=False),
        sa.Column("stopped_at", seconds),
    )
    op.create_index("tasks_queue_name", "tasks", ["queue", "status"])
    op.create_table(
        "studio_state",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("studio_state")
    op.drop_index("tasks_queue_name", "tasks")
    op.drop_table("workers")
    with op.batch_alter_table("webhook_outbox") as batch:
        batch.drop_column("seq")
    with op.batch_alter_table("task_dependencies") as batch:
        batch.drop_column("position")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("worker_id")
        batch.drop_column("queue")
