"""The durable task store: one SQLite file (WAL) holding tasks, their lifecycle events and results.

The task table *is* the queue: a task is a row committed before any reply, the worker claims the
highest-priority oldest ``pending`` row, and ``/status`` and ``/result`` read the same rows, so
the queue and what the API reports can never disagree.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

PENDING = "pending"
LOADING_MODEL = "loading_model"
GENERATING = "generating_base"
ENCODING = "encoding"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"

RUNNING_STATUSES = (LOADING_MODEL, GENERATING, ENCODING)
TERMINAL_STATUSES = (COMPLETED, FAILED, CANCELLED)
ALL_STATUSES = (PENDING, *RUNNING_STATUSES, *TERMINAL_STATUSES)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    request          TEXT NOT NULL,
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    progress         REAL NOT NULL DEFAULT 0,
    current_step     TEXT NOT NULL DEFAULT '',
    eta_seconds      REAL,
    estimated_seconds REAL,
    preview_path     TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    error_type       TEXT,
    result           TEXT
);
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (status, priority DESC, seq);
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_task ON events (task_id, id);
CREATE TABLE IF NOT EXISTS timings (
    model   TEXT NOT NULL,
    name    TEXT NOT NULL,
    value   REAL NOT NULL,
    samples INTEGER NOT NULL,
    PRIMARY KEY (model, name)
);
"""


@dataclass
class Task:
    """One row of the task table, decoded."""

    id: str
    kind: str
    status: str
    priority: int
    request: dict[str, Any]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress: float = 0.0
    current_step: str = ""
    eta_seconds: float | None = None
    estimated_seconds: float | None = None
    preview_path: str | None = None
    cancel_requested: bool = False
    attempt: int = 0
    error: str | None = None
    error_type: str | None = None
    result: dict[str, Any] | None = field(default=None)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_running(self) -> bool:
        return self.status in RUNNING_STATUSES


def _row_to_task(row: sqlite3.Row) -> Task:
    data = dict(row)
    data.pop("seq")
    data["request"] = json.loads(data["request"])
    data["result"] = json.loads(data["result"]) if data["result"] else None
    data["cancel_requested"] = bool(data["cancel_requested"])
    return Task(**data)


class TaskStore:
    """Thread-safe access to the SQLite file. One connection, serialised by a lock: the app has
    one writer process, and SQLite serialises writers anyway."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a task acknowledged to a client survives a power cut, not only a crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes -----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), holding the connection's lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _add_event(db: sqlite3.Connection, task_id: str, type_: str, data: dict[str, Any]) -> None:
        db.execute(
            "INSERT INTO events (task_id, type, data, created_at) VALUES (?, ?, ?, ?)",
            (task_id, type_, json.dumps(data), time.time()),
        )

    def create_task(self, kind: str, request: dict[str, Any], priority: int = 0,
                    estimated_seconds: float | None = None) -> Task:
        """Insert a pending task (and its ``task.created`` event) and commit it."""
        task_id = str(uuid.uuid4())
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO tasks (id, kind, status, priority, request, created_at, estimated_seconds,"
                " current_step) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, kind, PENDING, priority, json.dumps(request), now, estimated_seconds,
                 "Queued"),
            )
            self._add_event(db, task_id, "task.created", {"status": PENDING})
        return self.get(task_id)

    def claim_next(self) -> Task | None:
        """Move the next pending task (highest priority, then oldest) to ``loading_model``."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id FROM tasks WHERE status = ? ORDER BY priority DESC, seq LIMIT 1", (PENDING,)
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE tasks SET status = ?, started_at = ?, attempt = attempt + 1,"
                " current_step = 'Loading model' WHERE id = ?",
                (LOADING_MODEL, time.time(), row["id"]),
            )
            self._add_event(db, row["id"], "task.started", {"status": LOADING_MODEL})
        return self.get(row["id"])

    def set_status(self, task_id: str, status: str, current_step: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE tasks SET status = ?, current_step = ? WHERE id = ? AND status NOT IN (?, ?, ?)",
                       (status, current_step, task_id, *TERMINAL_STATUSES))

    def update_progress(self, task_id: str, progress: float, current_step: str,
                        eta_seconds: float | None, preview_path: str | None = None) -> None:
        """Per-step progress: a plain row update, no event row (live events go through the bus)."""
        with self._lock:
            self._db.execute(
                "UPDATE tasks SET progress = ?, current_step = ?, eta_seconds = ?,"
                " preview_path = COALESCE(?, preview_path) WHERE id = ?",
                (progress, current_step, eta_seconds, preview_path, task_id),
            )

    def finish(self, task_id: str, status: str, *, result: dict[str, Any] | None = None,
               error: str | None = None, error_type: str | None = None) -> bool:
        """Move a task to a terminal status once; returns False if it already was terminal."""
        assert status in TERMINAL_STATUSES
        event = {COMPLETED: "task.completed", FAILED: "task.failed", CANCELLED: "task.cancelled"}[status]
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE tasks SET status = ?, finished_at = ?, result = ?, error = ?, error_type = ?,"
                " eta_seconds = 0, progress = CASE WHEN ? THEN 1.0 ELSE progress END,"
                " current_step = ? WHERE id = ? AND status NOT IN (?, ?, ?)",
                (status, time.time(), json.dumps(result) if result else None, error, error_type,
                 status == COMPLETED, status.capitalize(), task_id, *TERMINAL_STATUSES),
            ).rowcount
            if changed:
                self._add_event(db, task_id, event, {"status": status, "error": error, "error_type": error_type,
                                                     **(result or {})})
        return bool(changed)

    def request_cancel(self, task_id: str) -> bool:
        """Flag a task for cancellation; a still-pending task is cancelled on the spot (True)."""
        with self._transaction() as db:
            db.execute("UPDATE tasks SET cancel_requested = 1 WHERE id = ?", (task_id,))
            cancelled_now = db.execute(
                "UPDATE tasks SET status = ?, finished_at = ?, current_step = 'Cancelled', error = ?,"
                " error_type = 'TaskCancelled' WHERE id = ? AND status = ?",
                (CANCELLED, time.time(), "Task cancelled", task_id, PENDING)).rowcount
            if cancelled_now:
                self._add_event(db, task_id, "task.cancelled", {"status": CANCELLED})
        return bool(cancelled_now)

    def fail_interrupted(self, reason: str) -> list[str]:
        """At start-up: tasks a dead process left running end as failed (never running forever)."""
        with self._transaction() as db:
            ids = [r["id"] for r in db.execute(
                f"SELECT id FROM tasks WHERE status IN ({','.join('?' * len(RUNNING_STATUSES))})",
                RUNNING_STATUSES)]
            for task_id in ids:
                db.execute(
                    "UPDATE tasks SET status = ?, finished_at = ?, error = ?, error_type = 'WorkerLost',"
                    " current_step = 'Failed' WHERE id = ?", (FAILED, time.time(), reason, task_id))
                self._add_event(db, task_id, "task.failed", {"status": FAILED, "error": reason,
                                                             "error_type": "WorkerLost"})
        return ids

    def record_timing(self, model: str, name: str, value: float, weight: float = 0.3) -> None:
        """Fold a measurement into an exponential moving average (the first sample is taken as is)."""
        with self._transaction() as db:
            row = db.execute("SELECT value, samples FROM timings WHERE model = ? AND name = ?",
                             (model, name)).fetchone()
            if row is None:
                db.execute("INSERT INTO timings VALUES (?, ?, ?, 1)", (model, name, value))
            else:
                blended = (1 - weight) * row["value"] + weight * value
                db.execute("UPDATE timings SET value = ?, samples = samples + 1 WHERE model = ? AND name = ?",
                           (blended, model, name))

    # -- reads ------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _row_to_task(row) if row else None

    def queue_position(self, task_id: str) -> int:
        """1 for the next task to start, 2 for the one after, ...; 0 when not pending."""
        with self._lock:
            row = self._db.execute("SELECT status, priority, seq FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None or row["status"] != PENDING:
                return 0
            ahead = self._db.execute(
                "SELECT COUNT(*) FROM tasks WHERE status = ? AND (priority > ? OR (priority = ? AND seq < ?))",
                (PENDING, row["priority"], row["priority"], row["seq"]),
            ).fetchone()[0]
        return ahead + 1

    def tasks_ahead(self, task_id: str | None = None) -> list[Task]:
        """Running tasks and pending tasks that start before ``task_id`` (all pending if None)."""
        with self._lock:
            if task_id is None:
                rows = self._db.execute(
                    "SELECT * FROM tasks WHERE status IN (?, ?, ?, ?)", (PENDING, *RUNNING_STATUSES)).fetchall()
            else:
                me = self._db.execute("SELECT priority, seq FROM tasks WHERE id = ?", (task_id,)).fetchone()
                rows = self._db.execute(
                    "SELECT * FROM tasks WHERE status IN (?, ?, ?) OR (status = ? AND id != ? AND"
                    " (priority > ? OR (priority = ? AND seq < ?)))",
                    (*RUNNING_STATUSES, PENDING, task_id, me["priority"], me["priority"], me["seq"]),
                ).fetchall()
        return [_row_to_task(r) for r in rows]

    def events(self, task_id: str) -> list[dict[str, Any]]:
        """The persisted lifecycle events of a task, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT type, data, created_at FROM events WHERE task_id = ? ORDER BY id", (task_id,)).fetchall()
        return [{"type": r["type"], "data": json.loads(r["data"]), "created_at": r["created_at"]} for r in rows]

    def timing(self, model: str, name: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM timings WHERE model = ? AND name = ?",
                                   (model, name)).fetchone()
        return row["value"] if row else None
