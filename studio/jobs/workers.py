"""The Celery workers the studio knows of: what each serves, what it runs, whether it is alive.

Each worker process has a row in ``workers`` and a heartbeat thread that refreshes it every
``HEARTBEAT_SECONDS`` with its current task, loaded model and device memory. The orchestrator,
the SLA monitor and ``/health`` read these rows to see every worker, not just their own process.

A worker not heard of for ``LOST_AFTER_SECONDS`` (``kill -9``, a lost machine, a frozen
process) is lost: ``recover_lost_work`` (run by every API process and every worker) runs its
task again on another worker, or fails it once with ``WorkerLost`` after ``MAX_ATTEMPTS``
runs, so exactly one terminal event and one terminal webhook are recorded either way.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update

from studio.db import Database
from studio.db.schema import workers
from studio.jobs.store import TaskStore

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
LOST_AFTER_SECONDS = 15.0  # several missed heartbeats: a busy step never blocks the heartbeat thread
FORGET_AFTER_SECONDS = 24 * 3600  # stopped or lost workers' rows are kept this long (for the monitors)
MAX_ATTEMPTS = 3  # runs of one task: after that a lost worker, or running out of GPU memory, fails it
REQUEUED_LOST = "Queued again: the worker running it stopped answering; another worker runs it"
FAILED_LOST = (f"the worker running this task stopped answering, {MAX_ATTEMPTS} times in a row; "
               "submit it again (if it keeps happening, the task may be too large for the workers)")


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as its row says."""

    id: str
    hostname: str
    pid: int
    queues: list[str]
    models: list[str]
    device: str
    memory_total_gb: float | None
    memory_used_gb: float | None
    loaded_model: str | None
    current_task: str | None
    tasks_done: int
    busy_seconds: float
    started_at: float
    last_seen: float
    stopped_at: float | None

    def alive(self, now: float) -> bool:
        return self.stopped_at is None and now - self.last_seen <= LOST_AFTER_SECONDS


@dataclass(frozen=True)
class Beat:
    """What a heartbeat reports."""

    current_task: str | None
    loaded_model: str | None
    memory_used_gb: float | None


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class WorkerRegistry:
    """The ``workers`` table."""

    def __init__(self, database: Database):
        self.database = database

    def register(self, worker_id: str, queues: list[str], models: list[str], device: str,
                 memory_total_gb: float | None) -> None:
        now = time.time()
        with self.database.transaction() as db:
            db.execute(delete(workers).where(workers.c.last_seen < now - FORGET_AFTER_SECONDS))
            db.execute(insert(workers).values(
                id=worker_id, hostname=socket.gethostname(), pid=os.getpid(), queues=json.dumps(queues),
                models=json.dumps(models), device=device, memory_total_gb=memory_total_gb,
                started_at=now, last_seen=now))

    def beat(self, worker_id: str, beat: Beat) -> None:
        with self.database.connect() as db:
            db.execute(update(workers).where(workers.c.id == worker_id).values(
                last_seen=time.time(), current_task=beat.current_task, loaded_model=beat.loaded_model,
                memory_used_gb=beat.memory_used_gb))

    def task_done(self, worker_id: str, seconds: float) -> None:
        with self.database.connect() as db:
            db.execute(update(workers).where(workers.c.id == worker_id).values(
                tasks_done=workers.c.tasks_done + 1, busy_seconds=workers.c.busy_seconds + seconds))

    def stopped(self, worker_id: str) -> None:
        with self.database.connect() as db:
            db.execute(update(workers).where(workers.c.id == worker_id).values(stopped_at=time.time(),
                                                                               current_task=None))

    def all(self) -> list[WorkerInfo]:
        """Every worker heard of in the last day, newest first."""
        with self.database.connect() as db:
            rows = db.execute(select(workers).order_by(workers.c.started_at.desc())).all()
        return [_info(row) for row in rows]

    def alive(self) -> list[WorkerInfo]:
        now = time.time()
        return [w for w in self.all() if w.alive(now)]

    def lost(self) -> list[str]:
        """Workers neither stopped nor heard of within ``LOST_AFTER_SECONDS``."""
        with self.database.connect() as db:
            return list(db.execute(select(workers.c.id).where(
                workers.c.stopped_at.is_(None), workers.c.last_seen < time.time() - LOST_AFTER_SECONDS)).scalars())

    def mark_lost(self, worker_ids: list[str]) -> None:
        if worker_ids:
            with self.database.connect() as db:
                db.execute(update(workers).where(workers.c.id.in_(worker_ids), workers.c.stopped_at.is_(None))
                           .values(stopped_at=time.time(), current_task=None))


def recover_lost_work(registry: WorkerRegistry, store: TaskStore) -> tuple[list[str], list[str]]:
    """Run again (or fail, after ``MAX_ATTEMPTS``) the tasks of workers that stopped answering
    or stopped leaving a task running. Safe in several processes at once: a task leaves its
    running status in one conditional update, so only one process ends it. Returns (requeued,
    failed) task ids."""
    requeued, failed = store.recover_lost(LOST_AFTER_SECONDS, MAX_ATTEMPTS, REQUEUED_LOST, FAILED_LOST)
    registry.mark_lost(registry.lost())
    for task_id in requeued:
        log.warning("task %s runs again: its worker stopped answering", task_id)
    for task_id in failed:
        log.error("task %s failed: its worker stopped answering %d times", task_id, MAX_ATTEMPTS)
    return requeued, failed


def _info(row) -> WorkerInfo:
    data = dict(row._mapping)
    data["queues"] = json.loads(data["queues"])
    data["models"] = json.loads(data["models"])
    return WorkerInfo(**data)
