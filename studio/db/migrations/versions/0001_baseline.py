"""Baseline: the schema as the stores created it themselves before the studio used Alembic.

Revision ID: 0001_baseline
Revises: (none)

Works on an empty database (creates everything) and on one an earlier version made (tables
exist, no ``alembic_version``): it only adds what is missing. That includes the columns later
versions added to ``tasks`` (``owner``, ``webhook_url``, ``batch_id``), which a task table of
the oldest versions lacks, and any index an older version did not create yet.

The tables below are a frozen copy of ``studio.db.schema`` as of this revision: a later schema
change is a new revision, never an edit here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import (Column, Float, Index, Integer, LargeBinary, MetaData, PrimaryKeyConstraint, Table, Text,
                        UniqueConstraint, text)
from sqlalchemy.dialects.sqlite import REAL

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

# Columns later versions added to an existing task table (what TaskStore._migrate did).
LEGACY_TASK_COLUMNS = (
    ("owner", lambda: Column("owner", Text, nullable=False, server_default=text("''"))),
    ("webhook_url", lambda: Column("webhook_url", Text)),
    ("batch_id", lambda: Column("batch_id", Text)),
)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    if "tasks" in existing:
        columns = {column["name"] for column in inspector.get_columns("tasks")}
        for name, column in LEGACY_TASK_COLUMNS:
            if name not in columns:
                op.add_column("tasks", column())
    frozen = baseline_metadata()
    for table in frozen.sorted_tables:
        if table.name not in existing:
            table.create(bind)  # with its indexes
            continue
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)


def downgrade() -> None:
    baseline_metadata().drop_all(op.get_bind())


def baseline_metadata() -> MetaData:
    """The tables of this revision (a frozen copy of ``studio.db.schema`` at the time)."""
    frozen = MetaData()
    Seconds = Float().with_variant(REAL(), "sqlite")

    # -- the task queue (studio.jobs.store) ------------------------------------------------------------

    tasks = Table(
        "tasks", frozen,
        # seq: the claim order among equal priorities (AUTOINCREMENT: never reused after a delete).
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("id", Text, nullable=False, unique=True),
        Column("kind", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("priority", Integer, nullable=False, server_default=text("0")),
        Column("request", Text, nullable=False),
        Column("created_at", Seconds, nullable=False),
        Column("started_at", Seconds),
        Column("finished_at", Seconds),
        Column("progress", Seconds, nullable=False, server_default=text("0")),
        Column("current_step", Text, nullable=False, server_default=text("''")),
        Column("eta_seconds", Seconds),
        Column("estimated_seconds", Seconds),
        Column("preview_path", Text),
        Column("cancel_requested", Integer, nullable=False, server_default=text("0")),
        Column("attempt", Integer, nullable=False, server_default=text("0")),
        Column("error", Text),
        Column("error_type", Text),
        Column("result", Text),
        Column("owner", Text, nullable=False, server_default=text("''")),
        Column("webhook_url", Text),
        Column("batch_id", Text),
        sqlite_autoincrement=True,
    )
    Index("tasks_queue", tasks.c.status, tasks.c.priority.desc(), tasks.c.seq)
    Index("tasks_owner", tasks.c.owner)
    Index("tasks_batch", tasks.c.batch_id)

    Table(
        "batches", frozen,
        Column("id", Text, primary_key=True),
        Column("owner", Text, nullable=False),
        Column("request", Text, nullable=False),
        Column("created_at", Seconds, nullable=False),
    )

    events = Table(
        "events", frozen,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("task_id", Text, nullable=False),
        Column("type", Text, nullable=False),
        Column("data", Text, nullable=False),
        Column("created_at", Seconds, nullable=False),
        sqlite_autoincrement=True,
    )
    Index("events_task", events.c.task_id, events.c.id)

    Table(
        "idempotency", frozen,
        Column("owner", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("request_hash", Text, nullable=False),
        Column("task_id", Text, nullable=False),  # or a batch id
        Column("created_at", Seconds, nullable=False),
        PrimaryKeyConstraint("owner", "key"),
    )

    webhook_outbox = Table(
        "webhook_outbox", frozen,
        Column("id", Text, primary_key=True),
        Column("task_id", Text, nullable=False),
        Column("owner", Text, nullable=False),
        Column("url", Text, nullable=False),
        Column("event", Text, nullable=False),
        Column("payload", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("max_attempts", Integer, nullable=False),
        Column("next_attempt_at", Seconds, nullable=False),
        Column("last_error", Text),
        Column("created_at", Seconds, nullable=False),
        Column("finished_at", Seconds),
    )
    Index("outbox_due", webhook_outbox.c.status, webhook_outbox.c.next_attempt_at)
    Index("outbox_task", webhook_outbox.c.task_id, webhook_outbox.c.url)

    # depends_on must complete before task_id may be claimed; both directions are looked up.
    task_dependencies = Table(
        "task_dependencies", frozen,
        Column("task_id", Text, nullable=False),
        Column("depends_on", Text, nullable=False),
        PrimaryKeyConstraint("task_id", "depends_on"),
    )
    Index("task_dependencies_reverse", task_dependencies.c.depends_on, task_dependencies.c.task_id)

    # Moving averages of measured run times (studio.jobs.estimates).
    Table(
        "timings", frozen,
        Column("model", Text, nullable=False),
        Column("name", Text, nullable=False),
        Column("value", Seconds, nullable=False),
        Column("samples", Integer, nullable=False),
        PrimaryKeyConstraint("model", "name"),
    )

    # -- API keys (studio.keys): only hashes of the keys themselves --------------------------------------

    Table(
        "api_keys", frozen,
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("key_hash", Text, nullable=False, unique=True),
        Column("prefix", Text, nullable=False),
        Column("webhook_secret", Text, nullable=False),
        Column("created_at", Seconds, nullable=False),
        Column("revoked_at", Seconds),
    )

    # -- the SLA monitor's history (studio.genius.sla) ---------------------------------------------------

    Table(
        "sla_uptime", frozen,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("started_at", Seconds, nullable=False),
        Column("last_seen", Seconds, nullable=False),
        Column("clean_stop", Integer, nullable=False, server_default=text("0")),
        sqlite_autoincrement=True,
    )

    sla_violations = Table(
        "sla_violations", frozen,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", Seconds, nullable=False),
        Column("level", Text, nullable=False),
        Column("metric", Text, nullable=False),
        Column("value", Seconds, nullable=False),
        Column("threshold", Seconds, nullable=False),
        sqlite_autoincrement=True,
    )
    Index("sla_violations_level", sla_violations.c.level, sla_violations.c.at)

    # -- registered entities (studio.genius.consistency) --------------------------------------------------

    Table(
        "entities", frozen,
        Column("id", Text, primary_key=True),
        Column("owner", Text, nullable=False),
        Column("name", Text, nullable=False),
        Column("entity_type", Text, nullable=False),
        Column("width", Integer, nullable=False),
        Column("height", Integer, nullable=False),
        Column("image", LargeBinary, nullable=False),  # the reference PNG
        Column("created_at", Seconds, nullable=False),
        UniqueConstraint("owner", "name"),
    )
    return frozen
