"""The durable task store: one SQLite file (WAL) holding tasks, their lifecycle events and results.

The task table *is* the queue: a task is a row committed before any reply, the worker claims the
highest-priority oldest ``pending`` row, and ``/status`` and ``/result`` read the same rows, so
the queue and what the API reports can never disagree.

Dependencies (``task_dependencies``): a task created with ``depends_on`` is claimed only once
every task it depends on is ``completed`` (a scene's stitch after its shots, whatever the queue
order or the number of workers). When a task ends ``failed`` or ``cancelled``, its pending
dependants end ``failed`` with ``DependencyFailed`` in the same transaction, recursively, each
with its ``task.failed`` event and webhook; the detail names the dependency and how it ended.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from studio.errors import IdempotencyConflict, InvalidRequest, storage_fault

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
DEPENDENCY_FAILED = "DependencyFailed"  # error_type of a task whose dependency failed or was cancelled

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
    result           TEXT,
    owner            TEXT NOT NULL DEFAULT '',
    webhook_url      TEXT,
    batch_id         TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    request    TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (status, priority DESC, seq);
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner);
CREATE INDEX IF NOT EXISTS tasks_batch ON tasks (batch_id);
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_task ON events (task_id, id);
CREATE TABLE IF NOT EXISTS idempotency (
    owner        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    task_id      TEXT NOT NULL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id              TEXT PRIMARY KEY,
    task_id         TEXT NOT NULL,
    owner           TEXT NOT NULL,
    url             TEXT NOT NULL,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON webhook_outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_task ON webhook_outbox (task_id, url);
-- depends_on must complete before task_id may be claimed; both directions are looked up.
CREATE TABLE IF NOT EXISTS task_dependencies (
    task_id    TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX IF NOT EXISTS task_dependencies_reverse ON task_dependencies (depends_on, task_id);
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
    owner: str = ""
    webhook_url: str | None = None
    batch_id: str | None = None

    @property
    def is_completed(self) -> bool:
        return self.status == COMPLETED

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
        # Called after the commit for every task a failed dependency ended (no worker runs those,
        # so nobody else would tell their live followers): (task id, detail) -> None.
        self.on_dependant_failed: Callable[[str, str], None] | None = None
        self._failed_dependants: list[tuple[str, str]] = []
        self._last_claim_ui = -1  # class of the last claim (1 UI, 0 keyed; -1 none yet): see claim_next
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a task acknowledged to a client survives a power cut, not only a crash.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()
        self._db.executescript(_SCHEMA)

    def _migrate(self) -> None:
        """Add the columns later versions introduced to a task table an older version made."""
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(tasks)")}
        if columns:
            for name, decl in (("owner", "TEXT NOT NULL DEFAULT ''"), ("webhook_url", "TEXT"), ("batch_id", "TEXT")):
                if name not in columns:
                    self._db.execute(f"ALTER TABLE tasks ADD COLUMN {name} {decl}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes -----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), holding the connection's lock."""
        with self._lock, _storage_errors():
            self._failed_dependants = []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            failed, self._failed_dependants = self._failed_dependants, []
        if self.on_dependant_failed is not None:  # committed: now followers may hear of it
            for task_id, detail in failed:
                self.on_dependant_failed(task_id, detail)

    @staticmethod
    def _add_event(db: sqlite3.Connection, task_id: str, type_: str, data: dict[str, Any]) -> None:
        """Record a lifecycle event and, in the same transaction, queue its webhook (if the
        task has a ``webhook_url``): the event and its delivery can never disagree."""
        now = time.time()
        db.execute("INSERT INTO events (task_id, type, data, created_at) VALUES (?, ?, ?, ?)",
                   (task_id, type_, json.dumps(data), now))
        # The seed's webhook events have no task.cancelled: a cancel is a failure with that status.
        event = "task.failed" if type_ == "task.cancelled" else type_
        _queue_webhook(db, task_id, event, data, max_attempts=WEBHOOK_MAX_ATTEMPTS, now=now)

    def create_task(self, kind: str, request: dict[str, Any], priority: int = 0,
                    estimated_seconds: float | None = None, owner: str = "",
                    webhook_url: str | None = None, idempotency_key: str | None = None,
                    idempotency_body: dict[str, Any] | None = None,
                    depends_on: list[str] | None = None) -> tuple[Task, bool]:
        """Insert a pending task (and its ``task.created`` event) and commit it.

        With an ``idempotency_key``, a second call by the same owner with the same request
        returns the first task instead (``created`` False) for 24 hours; the same key with a
        different ``idempotency_body`` (the request as the client sent it) raises
        ``IdempotencyConflict``. Both happen inside one write
        transaction, so concurrent duplicates cannot both create a task.

        ``depends_on``: tasks of the same owner that must complete before this one is claimed,
        stored in the same transaction. An id that is unknown or another owner's is refused with
        ``InvalidRequest`` (the same words either way) and nothing is created. A dependency that
        has already failed or been cancelled ends the new task ``failed`` (``DependencyFailed``)
        at once.
        """
        now = time.time()
        body = json.dumps(idempotency_body if idempotency_body is not None else request, sort_keys=True)
        with self._transaction() as db:
            if idempotency_key is not None:
                existing = _idempotent_task(db, owner, idempotency_key, body, now)
                if existing is not None:
                    return _row_to_task(db.execute("SELECT * FROM tasks WHERE id = ?", (existing,)).fetchone()), False
            parents = _known_dependencies(db, depends_on or [], owner)
            task_id = self._insert_task(db, kind, request, priority, estimated_seconds, owner, webhook_url, None, now)
            db.executemany("INSERT INTO task_dependencies (task_id, depends_on) VALUES (?, ?)",
                           [(task_id, parent["id"]) for parent in parents])
            ended = next((p for p in parents if p["status"] in (FAILED, CANCELLED)), None)
            if ended is not None:
                self._fail_dependant(db, task_id, ended)
            if idempotency_key is not None:
                db.execute("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)",
                           (owner, idempotency_key, _hash(body), task_id, now))
        return self.get(task_id), True

    def _insert_task(self, db: sqlite3.Connection, kind: str, request: dict[str, Any], priority: int,
                     estimated_seconds: float | None, owner: str, webhook_url: str | None,
                     batch_id: str | None, now: float) -> str:
        task_id = str(uuid.uuid4())
        db.execute(
            "INSERT INTO tasks (id, kind, status, priority, request, created_at, estimated_seconds,"
            " current_step, owner, webhook_url, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (task_id, kind, PENDING, priority, json.dumps(request), now, estimated_seconds,
             "Queued", owner, webhook_url, batch_id),
        )
        self._add_event(db, task_id, "task.created", {"status": PENDING, "batch_id": batch_id})
        return task_id

    def _fail_dependants(self, db: sqlite3.Connection, task_id: str) -> None:
        """``task_id`` just ended failed or cancelled: its pending dependants can never run."""
        parent = db.execute("SELECT id, kind, status, error_type FROM tasks WHERE id = ?", (task_id,)).fetchone()
        for row in db.execute("SELECT d.task_id FROM task_dependencies AS d JOIN tasks AS t ON t.id = d.task_id"
                              " WHERE d.depends_on = ? AND t.status = ? ORDER BY t.seq", (task_id, PENDING)).fetchall():
            self._fail_dependant(db, row["task_id"], parent)

    def _fail_dependant(self, db: sqlite3.Connection, task_id: str, parent: sqlite3.Row) -> None:
        how = "was cancelled" if parent["status"] == CANCELLED else f"failed ({parent['error_type'] or 'error'})"
        detail = f"task {parent['id']} ({parent['kind']}), which this task depends on, {how}"
        changed = db.execute(
            "UPDATE tasks SET status = ?, finished_at = ?, eta_seconds = 0, error = ?, error_type = ?,"
            " current_step = 'Failed' WHERE id = ? AND status = ?",
            (FAILED, time.time(), detail, DEPENDENCY_FAILED, task_id, PENDING)).rowcount
        if changed:
            self._add_event(db, task_id, "task.failed", {"status": FAILED, "error": detail,
                                                         "error_type": DEPENDENCY_FAILED})
            self._failed_dependants.append((task_id, detail))
            self._fail_dependants(db, task_id)  # and what waits on it, down the chain

    def create_batch(self, owner: str, batch_request: dict[str, Any], tasks: list[dict[str, Any]],
                     priority: int, estimates: list[float], webhook_url: str | None = None,
                     idempotency_key: str | None = None) -> tuple[str, list[str], bool]:
        """Insert a batch and one pending task per entry of ``tasks``, atomically.

        Returns (batch id, task ids, created); an ``idempotency_key`` replay returns the
        original batch (created False), as ``create_task`` does for single tasks.
        """
        now = time.time()
        body = json.dumps(batch_request, sort_keys=True)
        with self._transaction() as db:
            if idempotency_key is not None:
                existing = _idempotent_task(db, owner, idempotency_key, body, now)
                if existing is not None:
                    ids = [r["id"] for r in db.execute("SELECT id FROM tasks WHERE batch_id = ? ORDER BY seq",
                                                        (existing,))]
                    return existing, ids, False
            batch_id = "batch-" + uuid.uuid4().hex[:16]
            db.execute("INSERT INTO batches VALUES (?, ?, ?, ?)", (batch_id, owner, body, now))
            ids = [self._insert_task(db, "t2v", task, priority, estimate, owner, webhook_url, batch_id, now)
                   for task, estimate in zip(tasks, estimates)]
            if idempotency_key is not None:
                db.execute("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)",
                           (owner, idempotency_key, _hash(body), batch_id, now))
        return batch_id, ids, True

    def batch(self, batch_id: str) -> tuple[dict[str, Any], list[Task]] | None:
        """The batch row (owner, request, created_at) and its tasks in submission order."""
        with self._lock:
            row = self._db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                return None
            tasks = self._db.execute("SELECT * FROM tasks WHERE batch_id = ? ORDER BY seq", (batch_id,)).fetchall()
        info = {"id": row["id"], "owner": row["owner"], "request": json.loads(row["request"]),
                "created_at": row["created_at"]}
        return info, [_row_to_task(t) for t in tasks]

    def claim_companions(self, head: Task, limit: int, compatible) -> list[Task]:
        """Claim up to ``limit`` more pending tasks of ``head``'s batch for which
        ``compatible(task)`` holds, to run together with it in one pipeline call."""
        if limit <= 0 or not head.batch_id:
            return []
        claimed = []
        with self._transaction() as db:
            rows = db.execute(f"SELECT * FROM tasks WHERE batch_id = ? AND status = ? AND {_READY_SQL} ORDER BY seq",
                              (head.batch_id, PENDING)).fetchall()
            for row in rows:
                task = _row_to_task(row)
                if len(claimed) >= limit or not compatible(task):
                    continue
                db.execute("UPDATE tasks SET status = ?, started_at = ?, attempt = attempt + 1,"
                           " current_step = 'Loading model' WHERE id = ?", (LOADING_MODEL, time.time(), task.id))
                self._add_event(db, task.id, "task.started", {"status": LOADING_MODEL})
                claimed.append(task)
        return [self.get(t.id) for t in claimed]

    def claim_next(self) -> Task | None:
        """Move the next pending task to ``loading_model``: highest effective priority (the
        priority plus one level per ``AGE_BOOST_SECONDS`` waited, so low never starves), then
        oldest.

        Fair share: anonymous UI tasks (owner ``ui`` / ``ui:...``) and keyed API tasks are two
        classes, and while both have tasks waiting the claims alternate between them, so a crowd
        of UI visitors cannot hold keyed work back (nor the reverse). Within a class the order
        above holds.

        Only tasks whose dependencies have all completed are claimed (a scene's stitch after its
        shots, whatever their priorities); the alternation is between classes of such tasks."""
        with self._transaction() as db:
            row = db.execute(
                f"SELECT id, {_UI_OWNER_SQL} AS ui FROM tasks WHERE status = ? AND {_READY_SQL}"
                f" ORDER BY {_UI_OWNER_SQL} = ?, priority + (? - created_at) / ? DESC, seq LIMIT 1",
                (PENDING, self._last_claim_ui, time.time(), AGE_BOOST_SECONDS),
            ).fetchone()
            if row is None:
                return None
            self._last_claim_ui = row["ui"]  # the next claim prefers the other class
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
        with self._lock, _storage_errors():
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
                if status != COMPLETED:
                    self._fail_dependants(db, task_id)
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
                self._fail_dependants(db, task_id)
        return bool(cancelled_now)

    def requeue(self, task_id: str, reason: str) -> bool:
        """Put a running task back in the queue (a planned shutdown stopped it, not its owner):
        it keeps its place by priority and age and starts from the beginning after restart.
        Recorded as a ``task.requeued`` event; the seed defines no webhook for it, so none is sent."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE tasks SET status = ?, started_at = NULL, progress = 0, eta_seconds = NULL,"
                f" preview_path = NULL, current_step = ? WHERE id = ? AND status IN"
                f" ({','.join('?' * len(RUNNING_STATUSES))})",
                (PENDING, reason, task_id, *RUNNING_STATUSES)).rowcount
            if changed:
                db.execute("INSERT INTO events (task_id, type, data, created_at) VALUES (?, ?, ?, ?)",
                           (task_id, "task.requeued", json.dumps({"status": PENDING, "reason": reason}), time.time()))
        return bool(changed)

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
                self._fail_dependants(db, task_id)
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

    # -- webhook outbox -----------------------------------------------------------------------

    def queue_progress_webhook(self, task_id: str, data: dict[str, Any]) -> None:
        """A ``task.progress`` webhook: delivered once, never retried (the next one supersedes it)."""
        with self._transaction() as db:
            _queue_webhook(db, task_id, "task.progress", data, max_attempts=1, now=time.time())

    def claim_due_webhooks(self, limit: int = 20,
                           accept: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Pending deliveries whose time has come, marked ``sending``.

        Only the oldest unfinished delivery of each (task, URL) can be claimed, so a receiver
        gets a task's events in the order they happened: a ``task.created`` waiting for a retry
        holds back that task's ``task.started`` and ``task.completed``. ``accept`` (called with
        each candidate, oldest due first) lets the dispatcher skip rows it has no room for now;
        those stay ``pending``.
        """
        with self._transaction() as db:
            rows = db.execute(
                "SELECT * FROM webhook_outbox AS o WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
                " AND NOT EXISTS (SELECT 1 FROM webhook_outbox AS e WHERE e.task_id = o.task_id"
                " AND e.url = o.url AND e.status IN ('pending', 'sending') AND (e.created_at < o.created_at"
                " OR (e.created_at = o.created_at AND e.rowid < o.rowid)))"
                " ORDER BY o.next_attempt_at", (time.time(),)).fetchall()
            claimed: list[dict[str, Any]] = []
            for row in rows:
                if len(claimed) >= limit:
                    break
                if accept is None or accept(dict(row)):
                    claimed.append(dict(row))
            for delivery in claimed:
                db.execute("UPDATE webhook_outbox SET status = 'sending' WHERE id = ?", (delivery["id"],))
        return claimed

    def settle_webhook(self, delivery_id: str, status: str, error: str | None = None,
                       retry_at: float | None = None) -> None:
        """Record a delivery attempt: ``delivered``, ``failed``, ``gone`` or, with ``retry_at``,
        back to ``pending`` for another try."""
        with self._transaction() as db:
            db.execute(
                "UPDATE webhook_outbox SET status = ?, attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = COALESCE(?, next_attempt_at), finished_at = ? WHERE id = ?",
                ("pending" if retry_at is not None else status, error, retry_at,
                 None if retry_at is not None else time.time(), delivery_id))
            if status == "gone":  # the receiver said 410: stop sending this task's events there
                row = db.execute("SELECT task_id, url FROM webhook_outbox WHERE id = ?", (delivery_id,)).fetchone()
                db.execute("UPDATE webhook_outbox SET status = 'gone', finished_at = ? WHERE task_id = ? AND url = ?"
                           " AND status = 'pending'", (time.time(), row["task_id"], row["url"]))

    def requeue_interrupted_webhooks(self) -> int:
        """At start-up: deliveries a dead process was sending go out again (same webhook id)."""
        with self._transaction() as db:
            return db.execute("UPDATE webhook_outbox SET status = 'pending' WHERE status = 'sending'").rowcount

    def webhooks(self, task_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM webhook_outbox WHERE task_id = ? ORDER BY created_at",
                                    (task_id,)).fetchall()
        return [dict(r) for r in rows]

    # -- reads ------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return _row_to_task(row) if row else None

    def dependencies(self, task_id: str) -> list[str]:
        """The tasks ``task_id`` waits on, in the order they were given."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT depends_on FROM task_dependencies WHERE task_id = ? ORDER BY rowid", (task_id,))]

    def dependants(self, task_id: str) -> list[str]:
        """The tasks that wait on ``task_id``, oldest first."""
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT task_id FROM task_dependencies WHERE depends_on = ? ORDER BY rowid", (task_id,))]

    def queue_position(self, task_id: str) -> int:
        """1 for the next task to start, 2 for the one after, ...; 0 when not pending. Follows
        ``claim_next``'s order, the alternation between UI and keyed tasks included.

        A task still waiting on dependencies is never counted ahead of another task; its own
        position is one more than the pending tasks of ``tasks_ahead`` (its unfinished
        dependencies and everything ahead of them included), so a stitch is not "1" while its
        shots are queued."""
        with self._lock:
            row = self._db.execute(f"SELECT status, priority, seq, created_at, {_UI_OWNER_SQL} AS ui FROM tasks"
                                   " WHERE id = ?", (task_id,)).fetchone()
            if row is None or row["status"] != PENDING:
                return 0
            if self._unfinished_dependencies(task_id):
                return 1 + sum(r["status"] == PENDING for r in self._ahead(task_id).values())
            rank, others = self._fair_place(row)
        return rank + others

    def _unfinished_dependencies(self, task_id: str) -> list[sqlite3.Row]:
        return self._db.execute(
            "SELECT t.* FROM task_dependencies AS d JOIN tasks AS t ON t.id = d.depends_on WHERE d.task_id = ?"
            f" AND t.status NOT IN ({','.join('?' * len(TERMINAL_STATUSES))}) ORDER BY t.seq",
            (task_id, *TERMINAL_STATUSES)).fetchall()

    def _fair_place(self, me: sqlite3.Row) -> tuple[int, int]:
        """(``me``'s place among the pending tasks of its class, how many tasks of the other class
        ``claim_next`` takes before it). While both classes wait the claims alternate, so the
        other class gets ``rank - 1`` claims before it (``rank`` if the other class is next)."""
        rank = 1 + self._db.execute(
            f"SELECT COUNT(*) FROM tasks WHERE status = ? AND {_READY_SQL} AND {_UI_OWNER_SQL} = ? AND {_STARTS_BEFORE}",
            (PENDING, me["ui"], *_starts_before_args(me))).fetchone()[0]
        waiting = self._db.execute(f"SELECT COUNT(*) FROM tasks WHERE status = ? AND {_READY_SQL}"
                                   f" AND {_UI_OWNER_SQL} != ?", (PENDING, me["ui"])).fetchone()[0]
        if not waiting:
            return rank, 0
        next_class = 1 - self._last_claim_ui if self._last_claim_ui in (0, 1) else self._db.execute(
            f"SELECT {_UI_OWNER_SQL} FROM tasks WHERE status = ? AND {_READY_SQL}"
            " ORDER BY priority + (? - created_at) / ? DESC, seq LIMIT 1",
            (PENDING, time.time(), AGE_BOOST_SECONDS)).fetchone()[0]
        return rank, min(waiting, rank - 1 if next_class == me["ui"] else rank)

    def tasks_ahead(self, task_id: str | None = None) -> list[Task]:
        """Running tasks and pending tasks that start before ``task_id`` in ``claim_next``'s
        order (all pending if None).

        Pending tasks still waiting on dependencies count ahead of nobody (``claim_next`` cannot
        take them now); for a task that waits, its unfinished dependencies and, recursively, the
        tasks ahead of them count too, so the queue-wait estimate covers them."""
        with self._lock:
            if task_id is None:
                rows = self._db.execute(
                    "SELECT * FROM tasks WHERE status IN (?, ?, ?, ?)", (PENDING, *RUNNING_STATUSES)).fetchall()
            else:
                rows = list(self._ahead(task_id).values())
        return [_row_to_task(r) for r in rows]

    def _ahead(self, task_id: str) -> dict[str, sqlite3.Row]:
        """``tasks_ahead``'s rows by id (each once: dependencies share what is ahead of them)."""
        me = self._db.execute(f"SELECT priority, seq, created_at, {_UI_OWNER_SQL} AS ui FROM tasks"
                              " WHERE id = ?", (task_id,)).fetchone()
        rows = self._db.execute(
            f"SELECT * FROM tasks WHERE status IN (?, ?, ?) OR (status = ? AND {_READY_SQL} AND {_UI_OWNER_SQL} = ?"
            f" AND {_STARTS_BEFORE})",
            (*RUNNING_STATUSES, PENDING, me["ui"], *_starts_before_args(me)),
        ).fetchall()
        _, others = self._fair_place(me)
        rows += self._db.execute(
            f"SELECT * FROM tasks WHERE status = ? AND {_READY_SQL} AND {_UI_OWNER_SQL} != ?"
            " ORDER BY priority + (? - created_at) / ? DESC, seq LIMIT ?",
            (PENDING, me["ui"], time.time(), AGE_BOOST_SECONDS, others)).fetchall()
        ahead = {r["id"]: r for r in rows}
        # Dependencies were created before their dependants, so this recursion has no cycles.
        for dependency in self._unfinished_dependencies(task_id):
            ahead[dependency["id"]] = dependency
            if dependency["status"] == PENDING:
                ahead.update(self._ahead(dependency["id"]))
        return ahead

    def active_count(self, owners: list[str]) -> int:
        """Unfinished (pending or running) tasks of these owners: the anonymous UI limits."""
        if not owners:
            return 0
        with self._lock:
            return self._db.execute(
                f"SELECT COUNT(*) FROM tasks WHERE status IN (?, ?, ?, ?) AND owner IN ({','.join('?' * len(owners))})",
                (PENDING, *RUNNING_STATUSES, *owners)).fetchone()[0]

    def queue_depth(self) -> int:
        """Pending and running tasks."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM tasks WHERE status IN (?, ?, ?, ?)",
                                    (PENDING, *RUNNING_STATUSES)).fetchone()[0]

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

    def timing_samples(self, model: str, name: str) -> int:
        """How many measurements the moving average ``(model, name)`` folds (0: none). Read on
        the store's own connection: task status asks on every poll."""
        with self._lock:
            row = self._db.execute("SELECT samples FROM timings WHERE model = ? AND name = ?",
                                   (model, name)).fetchone()
        return int(row["samples"]) if row else 0


@contextmanager
def _storage_errors() -> Iterator[None]:
    """SQLite's own errors leave the store as the studio's: a full disk is ``StorageFull`` (507),
    a busy or failing database ``StoreUnavailable`` (503), so callers can tell a client and a
    worker can end a task truthfully instead of dying on ``sqlite3.OperationalError``."""
    try:
        yield
    except sqlite3.Error as error:
        raise (storage_fault(error) or error) from error


# -- helpers used inside transactions -------------------------------------------------------

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
AGE_BOOST_SECONDS = 120.0  # waiting this long raises a task by one priority level
# 1 for a task of a UI visitor (studio.ui_access: owners "ui" and "ui:..."), 0 for an API key's.
_UI_OWNER_SQL = "(owner = 'ui' OR owner LIKE 'ui:%')"
# A row of "tasks" (unaliased in the outer query) none of whose dependencies is unfinished or
# missing: the only pending rows claim_next may take.
_READY_SQL = ("NOT EXISTS (SELECT 1 FROM task_dependencies AS dep WHERE dep.task_id = tasks.id AND NOT EXISTS"
              " (SELECT 1 FROM tasks AS parent WHERE parent.id = dep.depends_on AND parent.status = 'completed'))")

# Whether a pending row starts before task "me": effective priority (priority + wait / boost)
# compared at any one instant reduces to this time-independent test.
_STARTS_BEFORE = "((priority - ?) * ? + (? - created_at) > 0 OR ((priority - ?) * ? + (? - created_at) = 0 AND seq < ?))"


def _starts_before_args(me: sqlite3.Row) -> tuple:
    p, b, c = me["priority"], AGE_BOOST_SECONDS, me["created_at"]
    return (p, b, c, p, b, c, me["seq"])
WEBHOOK_MAX_ATTEMPTS = 8


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _known_dependencies(db: sqlite3.Connection, ids: list[str], owner: str) -> list[sqlite3.Row]:
    """The rows of ``ids`` (deduplicated, in order), refusing an unknown or another owner's id
    with the same words, so nobody learns whether another owner's task exists."""
    rows = []
    for task_id in dict.fromkeys(ids):
        row = db.execute("SELECT id, kind, status, error_type FROM tasks WHERE id = ? AND owner = ?",
                         (task_id, owner)).fetchone()
        if row is None:
            raise InvalidRequest(f"depends_on: no task with id {str(task_id)[:64]!r}")
        rows.append(row)
    return rows


def _idempotent_task(db: sqlite3.Connection, owner: str, key: str, body: str, now: float) -> str | None:
    """The task an earlier request with this key created, or None if the key is new (or expired)."""
    db.execute("DELETE FROM idempotency WHERE created_at < ?", (now - IDEMPOTENCY_TTL_SECONDS,))
    row = db.execute("SELECT request_hash, task_id FROM idempotency WHERE owner = ? AND key = ?",
                     (owner, key)).fetchone()
    if row is None:
        return None
    if row["request_hash"] != _hash(body):
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request body; use a new key")
    return row["task_id"]


def _queue_webhook(db: sqlite3.Connection, task_id: str, event: str, data: dict[str, Any],
                   max_attempts: int, now: float) -> None:
    row = db.execute("SELECT owner, webhook_url FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None or not row["webhook_url"]:
        return
    if db.execute("SELECT 1 FROM webhook_outbox WHERE task_id = ? AND url = ? AND status = 'gone'",
                  (task_id, row["webhook_url"])).fetchone():
        return  # the receiver answered 410 Gone for this task: it wants nothing more
    payload = {"event": event, "task_id": task_id,
               "timestamp": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "data": {k: v for k, v in data.items() if v is not None}}
    db.execute(
        "INSERT INTO webhook_outbox (id, task_id, owner, url, event, payload, status, max_attempts,"
        " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
        ("msg_" + uuid.uuid4().hex, task_id, row["owner"], row["webhook_url"], event,
         json.dumps(payload, separators=(",", ":")), max_attempts, now, now))
