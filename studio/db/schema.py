"""Every table of the studio's database, as SQLAlchemy Core ``Table`` objects on one ``MetaData``.

The one description of the schema: the stores build their queries from these tables, and
``studio.db.migrations`` checks against them (``alembic revision --autogenerate`` diffs them with
the database). The columns, types and indexes are those the stores created themselves before
this layer existed, so a database file made by an earlier version keeps working unchanged.

Timestamps are seconds since the epoch (``REAL``); JSON documents are ``TEXT``.
"""

from __future__ import annotations

from sqlalchemy import (Column, Float, Index, Integer, LargeBinary, MetaData, PrimaryKeyConstraint, Table, Text,
                        UniqueConstraint, text)
from sqlalchemy.dialects.sqlite import REAL

__all__ = ["metadata", "tasks", "batches", "events", "idempotency", "webhook_outbox", "task_dependencies",
           "timings", "api_keys", "sla_uptime", "sla_violations", "entities", "loras"]

metadata = MetaData()

# REAL on SQLite (what the tables always declared), a double precision float elsewhere.
Seconds = Float().with_variant(REAL(), "sqlite")

# -- the task queue (studio.jobs.store) ------------------------------------------------------------

tasks = Table(
    "tasks", metadata,
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
    # The Celery queue the task is announced on (studio.jobs.routing): workers serving a model
    # listen on its queue, so their weights stay loaded. Unused by the in-process worker.
    Column("queue", Text, nullable=False, server_default=text("'studio'")),
    # The worker (studio.jobs.workers) running it now; with ``attempt``, who may end the run.
    Column("worker_id", Text),
    sqlite_autoincrement=True,
)
Index("tasks_queue", tasks.c.status, tasks.c.priority.desc(), tasks.c.seq)
Index("tasks_owner", tasks.c.owner)
Index("tasks_owner_seq", tasks.c.owner, tasks.c.seq)  # the Library: an owner's tasks, newest first
Index("tasks_batch", tasks.c.batch_id)
Index("tasks_queue_name", tasks.c.queue, tasks.c.status)

batches = Table(
    "batches", metadata,
    Column("id", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("request", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
    sqlite_autoincrement=True,
)
Index("events_task", events.c.task_id, events.c.id)

idempotency = Table(
    "idempotency", metadata,
    Column("owner", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("task_id", Text, nullable=False),  # or a batch id
    Column("created_at", Seconds, nullable=False),
    PrimaryKeyConstraint("owner", "key"),
)

webhook_outbox = Table(
    "webhook_outbox", metadata,
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
    # The delivery's place among its task's deliveries (0, 1, ...): their order when timestamps tie.
    Column("seq", Integer, nullable=False, server_default=text("0")),
)
Index("outbox_due", webhook_outbox.c.status, webhook_outbox.c.next_attempt_at)
Index("outbox_task", webhook_outbox.c.task_id, webhook_outbox.c.url)

# depends_on must complete before task_id may be claimed; both directions are looked up.
task_dependencies = Table(
    "task_dependencies", metadata,
    Column("task_id", Text, nullable=False),
    Column("depends_on", Text, nullable=False),
    Column("position", Integer, nullable=False, server_default=text("0")),  # the order they were given
    PrimaryKeyConstraint("task_id", "depends_on"),
)
Index("task_dependencies_reverse", task_dependencies.c.depends_on, task_dependencies.c.task_id)

# The Celery worker processes (studio.jobs.workers): what each serves, what it runs, when it was
# last heard of. A worker silent for longer than the heartbeat timeout is dead: its task runs again.
workers = Table(
    "workers", metadata,
    Column("id", Text, primary_key=True),
    Column("hostname", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queues", Text, nullable=False),  # JSON list
    Column("models", Text, nullable=False),  # JSON list of model ids
    Column("device", Text, nullable=False),
    Column("memory_total_gb", Seconds),
    Column("memory_used_gb", Seconds),
    Column("loaded_model", Text),
    Column("current_task", Text),
    Column("tasks_done", Integer, nullable=False, server_default=text("0")),
    Column("busy_seconds", Seconds, nullable=False, server_default=text("0")),
    Column("started_at", Seconds, nullable=False),
    Column("last_seen", Seconds, nullable=False),
    Column("stopped_at", Seconds),
)

# Named values every process must agree on (studio.db.state): the UI cookie secret, maintenance.
studio_state = Table(
    "studio_state", metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# Moving averages of measured run times (studio.jobs.estimates).
timings = Table(
    "timings", metadata,
    Column("model", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("value", Seconds, nullable=False),
    Column("samples", Integer, nullable=False),
    PrimaryKeyConstraint("model", "name"),
)

# -- API keys (studio.keys): only hashes of the keys themselves --------------------------------------

api_keys = Table(
    "api_keys", metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("prefix", Text, nullable=False),
    Column("webhook_secret", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
    Column("revoked_at", Seconds),
)

# -- the SLA monitor's history (studio.genius.sla) ---------------------------------------------------

sla_uptime = Table(
    "sla_uptime", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", Seconds, nullable=False),
    Column("last_seen", Seconds, nullable=False),
    Column("clean_stop", Integer, nullable=False, server_default=text("0")),
    sqlite_autoincrement=True,
)

sla_violations = Table(
    "sla_violations", metadata,
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

entities = Table(
    "entities", metadata,
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

# -- LoRA adapters registered per owner (studio.db.loras; files: data_dir/loras/lora-<id>/) -----------

loras = Table(
    "loras", metadata,
    Column("id", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("model", Text, nullable=False),  # the model it was checked against at registration
    Column("source", Text, nullable=False),  # "upload" or "hub"
    Column("hub_id", Text),
    Column("hub_filename", Text),
    Column("rank", Integer),
    Column("size_bytes", Integer),
    Column("targets", Text, nullable=False),  # JSON {module: [in, out]}; {} for a hub file not fetched yet
    Column("created_at", Seconds, nullable=False),
    UniqueConstraint("owner", "name"),
)
