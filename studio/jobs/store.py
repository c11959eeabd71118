"""The durable task store: tasks, their lifecycle events and results, in the studio's database.

The task table *is* the queue: a task is a row committed before any reply, the worker claims the
highest-priority oldest ``pending`` row, and ``/status`` and ``/result`` read the same rows, so
the queue and what the API reports can never disagree.

Dependencies (``task_dependencies``): a task created with ``depends_on`` is claimed only once
every task it depends on is ``completed`` (a scene's stitch after its shots, whatever the queue
order or the number of workers). When a task ends ``failed`` or ``cancelled``, its pending
dependants end ``failed`` with ``DependencyFailed`` in the same transaction, recursively, each
with its ``task.failed`` event and webhook; the detail names the dependency and how it ended.

The tables are ``studio.db.schema``'s; the claim order is ``studio.jobs.queue_order``, the
webhook outbox ``studio.jobs.outbox``, idempotency keys ``studio.jobs.idempotency_keys``, the
decoded row ``studio.jobs.task_row`` (its names are re-exported here). Every write is one
``BEGIN IMMEDIATE`` transaction (``Database.transaction``).

Why one module of over 500 lines: it holds every lifecycle transition of a task (create, claim,
progress, finish, requeue, cancel with its dependants) and nothing else; they share the same
rows and invariants (a conditional claim, one terminal event and webhook per run, an attempt
number that a stale run cannot end), which are easier to check when they sit side by side.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import Connection, Row, bindparam, exists, func, insert, select, true, update

from studio.db import Database
from studio.db.schema import batches, events, task_dependencies, tasks, timings, workers
from studio.errors import InvalidRequest
from studio.jobs import idempotency_keys, outbox, queue_order
from studio.jobs.idempotency_keys import IDEMPOTENCY_TTL_SECONDS
from studio.jobs.outbox import WEBHOOK_MAX_ATTEMPTS
from studio.jobs.queue_order import AGE_BOOST_SECONDS, NEXT_TO_CLAIM, NEXT_TO_CLAIM_IN_QUEUE, PENDING_READY, READY
from studio.jobs.routing import DEFAULT_QUEUE
from studio.jobs.task_row import (ALL_STATUSES, CANCELLED, COMPLETED, DEPENDENCY_FAILED, ENCODING, FAILED,
                                  GENERATING, LOADING_MODEL, PENDING, RUNNING_STATUSES, TERMINAL_STATUSES, Task,
                                  row_to_task)

__all__ = ["PENDING", "LOADING_MODEL", "GENERATING", "ENCODING", "COMPLETED", "FAILED", "CANCELLED",
           "RUNNING_STATUSES", "TERMINAL_STATUSES", "ALL_STATUSES", "DEPENDENCY_FAILED", "AGE_BOOST_SECONDS",
           "IDEMPOTENCY_TTL_SECONDS", "WEBHOOK_MAX_ATTEMPTS", "Task", "TaskStore"]

_UNFINISHED = (PENDING, *RUNNING_STATUSES)
CLAIM_RACE_RETRIES = 5  # claims lost to another worker before claim_next gives up for now

# The statements of the hot paths (every step, every status poll, every event), built once:
# building a Core statement costs more than SQLite takes to run it.
_GET = select(tasks).where(tasks.c.id == bindparam("task_id"))
_UPDATE_TASK = update(tasks).where(tasks.c.id == bindparam("task_id"))  # SET: the columns given
_INSERT_EVENT = insert(events)
_EVENTS = (select(events.c.type, events.c.data, events.c.created_at).where(events.c.task_id == bindparam("task_id"))
           .order_by(events.c.id))
_UNFINISHED_COUNT = select(func.count()).select_from(tasks).where(tasks.c.status.in_(_UNFINISHED))
_TIMING = select(timings.c.value, timings.c.samples).where(timings.c.model == bindparam("model"),
                                                           timings.c.name == bindparam("name"))


class TaskStore:
    """Thread-safe access to the task tables. One lock serialises this process's use of them and
    guards the store's own state (the fair-share alternation, the dependants failed and the tasks
    made ready by the current transaction). Several processes (API replicas, Celery workers) may
    share the database: every change of a task's status is a conditional update, so two
    processes never both claim, end or requeue one task.

    ``database``: the studio's ``Database`` (its owner disposes of it), or a SQLite file that
    this store opens, migrates and closes itself (tests, tools)."""

    def __init__(self, database: Database | Path):
        self._owns_database = not isinstance(database, Database)
        self.database = Database.for_file(database) if self._owns_database else database
        self.path = self.database.path  # the SQLite file (None for other databases)
        self._lock = threading.RLock()
        self._db = self.database.held()  # used only under self._lock
        # Called after the commit for every task a failed dependency ended (no worker runs those,
        # so nobody else would tell their live followers): (task id, detail) -> None.
        self.on_dependant_failed: Callable[[str, str], None] | None = None
        self._failed_dependants: list[tuple[str, str]] = []
        # Called after the commit with the tasks that became claimable on a worker (requeued, or
        # their last dependency completed), as (task id, queue): the dispatcher announces them
        # (``studio.jobs.dispatch``). New tasks are announced by their submit, once it has
        # measured its reply (``Studio.wake``).
        self.on_ready: Callable[[list[tuple[str, str]]], None] | None = None
        self._ready_now: list[tuple[str, str]] = []
        # Called after the commit, in the creating thread, with the ids of the tasks it created
        # (ZeroGPU keeps that call's context to run them in: ``studio.jobs.zero_gpu``).
        self.on_created: Callable[[list[str]], None] | None = None
        self._created_now: list[str] = []
        self._last_claim_ui = -1  # class of the last claim (1 UI, 0 keyed; -1 none yet): see claim_next

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._owns_database:
                self.database.dispose()

    # -- writes -----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), holding the store's lock."""
        with self._lock:
            self._failed_dependants, self._ready_now, self._created_now = [], [], []
            with self._db.transaction() as db:
                yield db
            failed, self._failed_dependants = self._failed_dependants, []
            ready, self._ready_now = self._ready_now, []
            created, self._created_now = self._created_now, []
        if created and self.on_created is not None:
            self.on_created(created)
        if self.on_dependant_failed is not None:  # committed: now followers may hear of it
            for task_id, detail in failed:
                self.on_dependant_failed(task_id, detail)
        if ready and self.on_ready is not None:
            self.on_ready(ready)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for reads (and one-statement writes), holding the store's lock."""
        with self._lock, self._db.connect() as db:
            yield db

    @staticmethod
    def _add_event(db: Connection, task_id: str, type_: str, data: dict[str, Any]) -> None:
        """Record a lifecycle event and, in the same transaction, queue its webhook (if the
        task has a ``webhook_url``): the event and its delivery can never disagree."""
        now = time.time()
        db.execute(_INSERT_EVENT, {"task_id": task_id, "type": type_, "data": json.dumps(data), "created_at": now})
        # The seed's webhook events have no task.cancelled: a cancel is a failure with that status.
        event = "task.failed" if type_ == "task.cancelled" else type_
        outbox.queue_webhook(db, task_id, event, data, max_attempts=WEBHOOK_MAX_ATTEMPTS, now=now)

    def create_task(self, kind: str, request: dict[str, Any], priority: int = 0,
                    estimated_seconds: float | None = None, owner: str = "",
                    webhook_url: str | None = None, idempotency_key: str | None = None,
                    idempotency_body: dict[str, Any] | None = None,
                    depends_on: list[str] | None = None, queue: str = DEFAULT_QUEUE) -> tuple[Task, bool]:
        """Insert a pending task (and its ``task.created`` event) and commit it.

        With an ``idempotency_key``, a second call by the same owner with the same request
        returns the first task instead (``created`` False) for 24 hours; the same key with a
        different ``idempotency_body`` (the request as the client sent it) raises
        ``IdempotencyConflict``. Both happen inside one write
        transaction, so concurrent duplicates cannot both create a task.

        ``queue``: the Celery queue it is announced on (``studio.jobs.routing.queue_of``).

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
                existing = idempotency_keys.earlier_task(db, owner, idempotency_key, body, now)
                if existing is not None:
                    return row_to_task(db.execute(_GET, {"task_id": existing}).one()), False
            parents = _known_dependencies(db, depends_on or [], owner)
            task_id = self._insert_task(db, kind, request, priority, estimated_seconds, owner, webhook_url, None, now,
                                        queue)
            if parents:
                db.execute(insert(task_dependencies), [{"task_id": task_id, "depends_on": parent.id, "position": i}
                                                       for i, parent in enumerate(parents)])
            ended = next((p for p in parents if p.status in (FAILED, CANCELLED)), None)
            if ended is not None:
                self._fail_dependant(db, task_id, ended)
            if idempotency_key is not None:
                idempotency_keys.remember(db, owner, idempotency_key, body, task_id, now)
        return self.get(task_id), True

    def _insert_task(self, db: Connection, kind: str, request: dict[str, Any], priority: int,
                     estimated_seconds: float | None, owner: str, webhook_url: str | None,
                     batch_id: str | None, now: float, queue: str = DEFAULT_QUEUE) -> str:
        task_id = str(uuid.uuid4())
        db.execute(insert(tasks).values(
            id=task_id, kind=kind, status=PENDING, priority=priority, request=json.dumps(request), created_at=now,
            estimated_seconds=estimated_seconds, current_step="Queued", owner=owner, webhook_url=webhook_url,
            batch_id=batch_id, queue=queue))
        self._add_event(db, task_id, "task.created", {"status": PENDING, "batch_id": batch_id})
        self._created_now.append(task_id)
        return task_id

    def _fail_dependants(self, db: Connection, task_id: str) -> None:
        """``task_id`` just ended failed or cancelled: its pending dependants can never run."""
        parent = db.execute(_briefly().where(tasks.c.id == task_id)).one()
        waiting = db.execute(
            select(task_dependencies.c.task_id).join(tasks, tasks.c.id == task_dependencies.c.task_id)
            .where(task_dependencies.c.depends_on == task_id, tasks.c.status == PENDING).order_by(tasks.c.seq)).all()
        for row in waiting:
            self._fail_dependant(db, row.task_id, parent)

    def _fail_dependant(self, db: Connection, task_id: str, parent: Row) -> None:
        how = "was cancelled" if parent.status == CANCELLED else f"failed ({parent.error_type or 'error'})"
        detail = f"task {parent.id} ({parent.kind}), which this task depends on, {how}"
        changed = db.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.status == PENDING).values(
            status=FAILED, finished_at=time.time(), eta_seconds=0, error=detail, error_type=DEPENDENCY_FAILED,
            current_step="Failed")).rowcount
        if changed:
            self._add_event(db, task_id, "task.failed", {"status": FAILED, "error": detail,
                                                         "error_type": DEPENDENCY_FAILED})
            self._failed_dependants.append((task_id, detail))
            self._fail_dependants(db, task_id)  # and what waits on it, down the chain

    def create_batch(self, owner: str, batch_request: dict[str, Any], tasks: list[dict[str, Any]],
                     priority: int, estimates: list[float], webhook_url: str | None = None,
                     idempotency_key: str | None = None,
                     queues: list[str] | None = None) -> tuple[str, list[str], bool]:
        """Insert a batch and one pending task per entry of ``tasks``, atomically.

        Returns (batch id, task ids, created); an ``idempotency_key`` replay returns the
        original batch (created False), as ``create_task`` does for single tasks. ``queues``:
        each task's Celery queue (default: the default queue).
        """
        now = time.time()
        body = json.dumps(batch_request, sort_keys=True)
        with self._transaction() as db:
            if idempotency_key is not None:
                existing = idempotency_keys.earlier_task(db, owner, idempotency_key, body, now)
                if existing is not None:
                    return existing, _batch_task_ids(db, existing), False
            batch_id = "batch-" + uuid.uuid4().hex[:16]
            db.execute(insert(batches).values(id=batch_id, owner=owner, request=body, created_at=now))
            queues = queues or [DEFAULT_QUEUE] * len(tasks)
            ids = [self._insert_task(db, "t2v", task, priority, estimate, owner, webhook_url, batch_id, now, queue)
                   for task, estimate, queue in zip(tasks, estimates, queues)]
            if idempotency_key is not None:
                idempotency_keys.remember(db, owner, idempotency_key, body, batch_id, now)
        return batch_id, ids, True

    def batch(self, batch_id: str) -> tuple[dict[str, Any], list[Task]] | None:
        """The batch row (owner, request, created_at) and its tasks in submission order."""
        with self._reading() as db:
            row = db.execute(select(batches).where(batches.c.id == batch_id)).first()
            if row is None:
                return None
            rows = db.execute(select(tasks).where(tasks.c.batch_id == batch_id).order_by(tasks.c.seq)).all()
        info = {"id": row.id, "owner": row.owner, "request": json.loads(row.request), "created_at": row.created_at}
        return info, [row_to_task(t) for t in rows]

    def claim_companions(self, head: Task, limit: int, compatible) -> list[Task]:
        """Claim up to ``limit`` more pending tasks of ``head``'s batch for which
        ``compatible(task)`` holds, to run together with it in one pipeline call."""
        if limit <= 0 or not head.batch_id:
            return []
        claimed = []
        with self._transaction() as db:
            rows = db.execute(select(tasks).where(tasks.c.batch_id == head.batch_id, PENDING_READY)
                              .order_by(tasks.c.seq)).all()
            for row in rows:
                task = row_to_task(row)
                if len(claimed) >= limit or not compatible(task):
                    continue
                if self._start(db, task.id, head.worker_id):
                    claimed.append(task)
        return [self.get(t.id) for t in claimed]

    def _start(self, db: Connection, task_id: str, worker_id: str | None) -> bool:
        """Move ``task_id`` from pending to ``loading_model`` for ``worker_id``; False when
        another worker claimed it first (on PostgreSQL two may pick the same row at once: the
        second's UPDATE waits for the first's commit, then matches nothing)."""
        started = db.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.status == PENDING).values(
            attempt=tasks.c.attempt + 1, status=LOADING_MODEL, started_at=time.time(),
            current_step="Loading model", worker_id=worker_id)).rowcount
        if started:
            self._add_event(db, task_id, "task.started", {"status": LOADING_MODEL})
        return bool(started)

    def claim_next(self, queue: str | None = None, worker_id: str | None = None) -> Task | None:
        """Move the next pending task to ``loading_model``: highest effective priority (the
        priority plus one level per ``AGE_BOOST_SECONDS`` waited, so low never starves), then
        oldest.

        Fair share: anonymous UI tasks (owner ``ui`` / ``ui:...``) and keyed API tasks are two
        classes, and while both have tasks waiting the claims alternate between them, so a crowd
        of UI visitors cannot hold keyed work back (nor the reverse). Within a class the order
        above holds.

        Only tasks whose dependencies have all completed are claimed (a scene's stitch after its
        shots, whatever their priorities); the alternation is between classes of such tasks.

        ``queue``: only tasks announced on that queue (a Celery worker's claim; None: any).
        ``worker_id``: the claiming worker, recorded in the row (``studio.jobs.workers``)."""
        statement = NEXT_TO_CLAIM if queue is None else NEXT_TO_CLAIM_IN_QUEUE
        for _ in range(CLAIM_RACE_RETRIES):
            with self._transaction() as db:
                row = db.execute(statement, {"last_ui": self._last_claim_ui, "now": time.time(),
                                             "queue": queue}).first()
                if row is None:
                    return None
                if not self._start(db, row.id, worker_id):
                    continue  # another worker took it between our read and our write
                self._last_claim_ui = row.ui  # the next claim prefers the other class
            return self.get(row.id)
        return None

    def set_status(self, task_id: str, status: str, current_step: str) -> None:
        with self._transaction() as db:
            db.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.status.not_in(TERMINAL_STATUSES))
                       .values(status=status, current_step=current_step))

    def update_progress(self, task_id: str, progress: float, current_step: str,
                        eta_seconds: float | None, preview_path: str | None = None) -> None:
        """Per-step progress: a plain row update, no event row (live events go through the bus)."""
        values: dict[str, Any] = {"task_id": task_id, "progress": progress, "current_step": current_step,
                                  "eta_seconds": eta_seconds}
        if preview_path is not None:
            values["preview_path"] = preview_path
        with self._reading() as db:
            db.execute(_UPDATE_TASK, values)

    def finish(self, task_id: str, status: str, *, result: dict[str, Any] | None = None,
               error: str | None = None, error_type: str | None = None, attempt: int | None = None) -> bool:
        """Move a task to a terminal status once; returns False if it already was terminal.

        ``attempt``: end it only if this is still that run (a worker presumed lost whose task
        was run again cannot end the new run's task)."""
        assert status in TERMINAL_STATUSES
        event = {COMPLETED: "task.completed", FAILED: "task.failed", CANCELLED: "task.cancelled"}[status]
        values: dict[str, Any] = {"status": status, "finished_at": time.time(),
                                  "result": json.dumps(result) if result else None, "error": error,
                                  "error_type": error_type, "eta_seconds": 0, "current_step": status.capitalize()}
        if status == COMPLETED:
            values["progress"] = 1.0
        this_run = tasks.c.attempt == attempt if attempt is not None else true()
        with self._transaction() as db:
            changed = db.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.status.not_in(TERMINAL_STATUSES),
                                                     this_run).values(**values)).rowcount
            if changed:
                self._add_event(db, task_id, event, {"status": status, "error": error, "error_type": error_type,
                                                     **(result or {})})
                if status != COMPLETED:
                    self._fail_dependants(db, task_id)
                else:
                    self._ready_now.extend(_now_ready_dependants(db, task_id))
        return bool(changed)

    def request_cancel(self, task_id: str) -> bool:
        """Flag a task for cancellation; a still-pending task is cancelled on the spot (True)."""
        with self._transaction() as db:
            db.execute(update(tasks).where(tasks.c.id == task_id).values(cancel_requested=1))
            cancelled_now = db.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.status == PENDING).values(
                status=CANCELLED, finished_at=time.time(), current_step="Cancelled", error="Task cancelled",
                error_type="TaskCancelled")).rowcount
            if cancelled_now:
                self._add_event(db, task_id, "task.cancelled", {"status": CANCELLED})
                self._fail_dependants(db, task_id)
        return bool(cancelled_now)

    def requeue(self, task_id: str, reason: str) -> bool:
        """Put a running task back in the queue (a planned shutdown stopped it, not its owner):
        it keeps its place by priority and age and starts from the beginning after restart.
        Recorded as a ``task.requeued`` event; the seed defines no webhook for it, so none is sent."""
        with self._transaction() as db:
            changed = self._requeue(db, task_id, reason)
        return changed

    def _requeue(self, db: Connection, task_id: str, reason: str) -> bool:
        row = db.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.status.in_(RUNNING_STATUSES))
                         .values(status=PENDING, started_at=None, progress=0, eta_seconds=None, preview_path=None,
                                 current_step=reason, worker_id=None).returning(tasks.c.queue)).first()
        if row is not None:
            db.execute(insert(events).values(task_id=task_id, type="task.requeued", created_at=time.time(),
                                             data=json.dumps({"status": PENDING, "reason": reason})))
            self._ready_now.append((task_id, row.queue))
        return row is not None

    def recover_lost(self, lost_after_seconds: float, max_attempts: int, requeue_reason: str,
                     fail_reason: str) -> tuple[list[str], list[str]]:
        """The running tasks of Celery workers that are gone (``studio.jobs.workers``: stopped,
        or not heard of for ``lost_after_seconds``): each runs again (queued again) unless it
        has had ``max_attempts`` runs, then it fails once with ``WorkerLost``. Decided in one
        transaction against the heartbeats as they stand, so a worker that has just registered
        and claimed is never taken for lost. Returns (requeued ids, failed ids)."""
        alive = exists().where(workers.c.id == tasks.c.worker_id, workers.c.stopped_at.is_(None),
                               workers.c.last_seen >= time.time() - lost_after_seconds)
        requeued, failed = [], []
        with self._transaction() as db:
            rows = db.execute(select(tasks.c.id, tasks.c.attempt).where(
                tasks.c.worker_id.is_not(None), tasks.c.status.in_(RUNNING_STATUSES), ~alive)).all()
            for row in rows:
                if row.attempt < max_attempts:
                    if self._requeue(db, row.id, requeue_reason):
                        requeued.append(row.id)
                elif self._fail_lost(db, row.id, fail_reason):
                    failed.append(row.id)
        return requeued, failed

    def _fail_lost(self, db: Connection, task_id: str, reason: str) -> bool:
        changed = db.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.status.in_(RUNNING_STATUSES)).values(
            status=FAILED, finished_at=time.time(), error=reason, error_type="WorkerLost", eta_seconds=0,
            current_step="Failed")).rowcount
        if changed:
            self._add_event(db, task_id, "task.failed", {"status": FAILED, "error": reason, "error_type": "WorkerLost"})
            self._fail_dependants(db, task_id)
        return bool(changed)

    def ready_by_queue(self) -> dict[str, int]:
        """How many pending tasks each queue has that a worker could claim now (reconciliation
        compares this with the messages waiting in the broker)."""
        with self._reading() as db:
            rows = db.execute(select(tasks.c.queue, func.count()).where(PENDING_READY).group_by(tasks.c.queue)).all()
        return {queue: count for queue, count in rows}

    def ready_ids(self, queue: str, limit: int) -> list[str]:
        """Up to ``limit`` ready pending tasks of ``queue``, oldest first."""
        with self._reading() as db:
            return list(db.execute(select(tasks.c.id).where(PENDING_READY, tasks.c.queue == queue)
                                   .order_by(tasks.c.seq).limit(limit)).scalars())

    def running_ids(self) -> list[str]:
        """The tasks in a running status (loading, generating, encoding), oldest first."""
        with self._reading() as db:
            return list(db.execute(select(tasks.c.id).where(tasks.c.status.in_(RUNNING_STATUSES))
                                   .order_by(tasks.c.seq)).scalars())

    def fail_interrupted(self, reason: str) -> list[str]:
        """At start-up: tasks a dead process left running end as failed (never running forever)."""
        with self._transaction() as db:
            ids = list(db.execute(select(tasks.c.id).where(tasks.c.status.in_(RUNNING_STATUSES))).scalars())
            for task_id in ids:
                self._fail_lost(db, task_id, reason)
        return ids

    def record_timing(self, model: str, name: str, value: float, weight: float = 0.3) -> None:
        """Fold a measurement into an exponential moving average (the first sample is taken as is)."""
        key = (timings.c.model == model, timings.c.name == name)
        with self._transaction() as db:
            row = db.execute(select(timings.c.value).where(*key)).first()
            if row is None:
                db.execute(insert(timings).values(model=model, name=name, value=value, samples=1))
            else:
                db.execute(update(timings).where(*key).values(value=(1 - weight) * row.value + weight * value,
                                                              samples=timings.c.samples + 1))

    # -- webhook outbox (studio.jobs.outbox) --------------------------------------------------

    def queue_progress_webhook(self, task_id: str, data: dict[str, Any]) -> None:
        """A ``task.progress`` webhook: delivered once, never retried (the next one supersedes it)."""
        with self._transaction() as db:
            outbox.queue_webhook(db, task_id, "task.progress", data, max_attempts=1, now=time.time())

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
            return outbox.claim_due(db, limit, accept, sqlite=self.database.is_sqlite)

    def settle_webhook(self, delivery_id: str, status: str, error: str | None = None,
                       retry_at: float | None = None) -> None:
        """Record a delivery attempt: ``delivered``, ``failed``, ``gone`` or, with ``retry_at``,
        back to ``pending`` for another try."""
        with self._transaction() as db:
            outbox.settle(db, delivery_id, status, error, retry_at)

    def requeue_interrupted_webhooks(self) -> int:
        """At start-up: deliveries a dead process was sending go out again (same webhook id)."""
        with self._transaction() as db:
            return outbox.requeue_interrupted(db)

    def webhooks(self, task_id: str) -> list[dict[str, Any]]:
        with self._reading() as db:
            return outbox.of_task(db, task_id)

    # -- reads ------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        with self._reading() as db:
            row = db.execute(_GET, {"task_id": task_id}).first()
        return row_to_task(row) if row else None

    def dependencies(self, task_id: str) -> list[str]:
        """The tasks ``task_id`` waits on, in the order they were given."""
        with self._reading() as db:
            return list(db.execute(select(task_dependencies.c.depends_on).where(task_dependencies.c.task_id == task_id)
                                   .order_by(task_dependencies.c.position)).scalars())

    def dependants(self, task_id: str) -> list[str]:
        """The tasks that wait on ``task_id``, oldest first."""
        with self._reading() as db:
            return list(db.execute(select(task_dependencies.c.task_id)
                                   .join(tasks, tasks.c.id == task_dependencies.c.task_id)
                                   .where(task_dependencies.c.depends_on == task_id).order_by(tasks.c.seq)).scalars())

    def queue_position(self, task_id: str) -> int:
        """1 for the next task to start, 2 for the one after, ...; 0 when not pending. Follows
        ``claim_next``'s order, the alternation between UI and keyed tasks included
        (``studio.jobs.queue_order.position``)."""
        with self._reading() as db:
            return queue_order.position(db, task_id, self._last_claim_ui)

    def tasks_ahead(self, task_id: str | None = None) -> list[Task]:
        """Running tasks and pending tasks that start before ``task_id`` in ``claim_next``'s
        order (all pending if None).

        Pending tasks still waiting on dependencies count ahead of nobody (``claim_next`` cannot
        take them now); for a task that waits, its unfinished dependencies and, recursively, the
        tasks ahead of them count too, so the queue-wait estimate covers them."""
        with self._reading() as db:
            if task_id is None:
                rows = db.execute(select(tasks).where(tasks.c.status.in_(_UNFINISHED))).all()
            else:
                rows = list(queue_order.ahead(db, task_id, self._last_claim_ui).values())
        return [row_to_task(r) for r in rows]

    def active_count(self, owners: list[str]) -> int:
        """Unfinished (pending or running) tasks of these owners: the anonymous UI limits."""
        if not owners:
            return 0
        with self._reading() as db:
            return db.execute(select(func.count()).select_from(tasks).where(
                tasks.c.status.in_(_UNFINISHED), tasks.c.owner.in_(owners))).scalar_one()

    def queue_depth(self) -> int:
        """Pending and running tasks."""
        with self._reading() as db:
            return db.execute(_UNFINISHED_COUNT).scalar_one()

    def events(self, task_id: str) -> list[dict[str, Any]]:
        """The persisted lifecycle events of a task, oldest first."""
        with self._reading() as db:
            rows = db.execute(_EVENTS, {"task_id": task_id}).all()
        return [{"type": r.type, "data": json.loads(r.data), "created_at": r.created_at} for r in rows]

    def recent_results(self, limit: int = 50) -> list[dict[str, Any]]:
        """The results of the most recently completed tasks, newest first (the cost model reads
        what its last runs generated)."""
        with self._reading() as db:
            raw = db.execute(select(tasks.c.result).where(tasks.c.status == COMPLETED, tasks.c.result.is_not(None))
                             .order_by(tasks.c.finished_at.desc()).limit(limit)).scalars().all()
        return [json.loads(r) for r in raw]

    def timing(self, model: str, name: str) -> float | None:
        with self._reading() as db:
            row = db.execute(_TIMING, {"model": model, "name": name}).first()
        return row.value if row else None

    def timing_samples(self, model: str, name: str) -> int:
        """How many measurements the moving average ``(model, name)`` folds (0: none). Read on
        the store's own connection pool: task status asks on every poll."""
        with self._reading() as db:
            row = db.execute(_TIMING, {"model": model, "name": name}).first()
        return int(row.samples) if row else 0


# -- helpers used inside transactions -------------------------------------------------------

def _briefly():
    """The columns a dependant's failure detail names."""
    return select(tasks.c.id, tasks.c.kind, tasks.c.status, tasks.c.error_type)


def _now_ready_dependants(db: Connection, task_id: str) -> list[tuple[str, str]]:
    """The pending tasks waiting on ``task_id`` (which just completed) that nothing else holds back now."""
    rows = db.execute(select(tasks.c.id, tasks.c.queue)
                      .join(task_dependencies, task_dependencies.c.task_id == tasks.c.id)
                      .where(task_dependencies.c.depends_on == task_id, tasks.c.status == PENDING, READY)
                      .order_by(tasks.c.seq)).all()
    return [(row.id, row.queue) for row in rows]


def _batch_task_ids(db: Connection, batch_id: str) -> list[str]:
    return list(db.execute(select(tasks.c.id).where(tasks.c.batch_id == batch_id).order_by(tasks.c.seq)).scalars())


def _known_dependencies(db: Connection, ids: list[str], owner: str) -> list[Row]:
    """The rows of ``ids`` (deduplicated, in order), refusing an unknown or another owner's id
    with the same words, so nobody learns whether another owner's task exists."""
    rows = []
    for task_id in dict.fromkeys(ids):
        row = db.execute(_briefly().where(tasks.c.id == task_id, tasks.c.owner == owner)).first()
        if row is None:
            raise InvalidRequest(f"depends_on: no task with id {str(task_id)[:64]!r}")
        rows.append(row)
    return rows
