"""The webhook outbox: deliveries written in the same transaction as the event they announce.

A lifecycle event and its webhook can never disagree: ``queue_webhook`` runs inside the store's
transaction that records the event. The dispatcher (``studio.jobs.webhooks``) claims due rows
through ``claim_due`` and records each attempt with ``settle``. Functions of an open
connection; ``TaskStore`` holds the lock and the transaction.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import Connection, and_, bindparam, exists, func, insert, or_, select, update

from studio.db.schema import tasks, webhook_outbox

WEBHOOK_MAX_ATTEMPTS = 8

# Run for every lifecycle event: built once (building a statement costs more than running it).
_RECEIVER = select(tasks.c.owner, tasks.c.webhook_url).where(tasks.c.id == bindparam("task_id"))
_GONE = select(1).where(webhook_outbox.c.task_id == bindparam("task_id"), webhook_outbox.c.url == bindparam("url"),
                        webhook_outbox.c.status == "gone")
_INSERT = insert(webhook_outbox)
# The next place among the task's deliveries (their order when two share a timestamp).
_NEXT_SEQ = select(func.coalesce(func.max(webhook_outbox.c.seq), -1) + 1).where(
    webhook_outbox.c.task_id == bindparam("task_id"))


def queue_webhook(db: Connection, task_id: str, event: str, data: dict[str, Any], max_attempts: int,
                  now: float) -> None:
    """Queue ``event`` for the task's ``webhook_url`` (nothing when it has none, or when the
    receiver answered 410 Gone for this task)."""
    row = db.execute(_RECEIVER, {"task_id": task_id}).first()
    if row is None or not row.webhook_url:
        return
    if db.execute(_GONE, {"task_id": task_id, "url": row.webhook_url}).first():
        return  # the receiver answered 410 Gone for this task: it wants nothing more
    payload = {"event": event, "task_id": task_id,
               "timestamp": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "data": {k: v for k, v in data.items() if v is not None}}
    db.execute(_INSERT, {
        "id": "msg_" + uuid.uuid4().hex, "task_id": task_id, "owner": row.owner, "url": row.webhook_url,
        "event": event, "payload": json.dumps(payload, separators=(",", ":")), "status": "pending",
        "max_attempts": max_attempts, "next_attempt_at": now, "created_at": now,
        "seq": db.execute(_NEXT_SEQ, {"task_id": task_id}).scalar_one()})


def claim_due(db: Connection, limit: int, accept: Callable[[dict[str, Any]], bool] | None,
              sqlite: bool) -> list[dict[str, Any]]:
    """``TaskStore.claim_due_webhooks`` inside its transaction (``sqlite``: the database has no
    row locks to take).

    Exclusive across processes: a delivery is claimed by one transaction only (``FOR UPDATE SKIP
    LOCKED`` where the database has it)."""
    mine, other = webhook_outbox.alias("o"), webhook_outbox.alias("e")
    earlier_unfinished = exists().where(
        other.c.task_id == mine.c.task_id, other.c.url == mine.c.url, other.c.status.in_(("pending", "sending")),
        or_(other.c.created_at < mine.c.created_at,
            and_(other.c.created_at == mine.c.created_at, other.c.seq < mine.c.seq)))
    due = select(mine).where(mine.c.status == "pending", mine.c.next_attempt_at <= time.time(),
                             ~earlier_unfinished).order_by(mine.c.next_attempt_at)
    if not sqlite:
        # Several API processes claim at once: each locks the rows it reads and passes over those
        # another holds, so no delivery is claimed (sent) twice. A row locked by one that commits
        # before we reach it is re-checked and left out, being "sending" by then. SQLite needs
        # none of this: the transaction is BEGIN IMMEDIATE, one writer at a time.
        due = due.with_for_update(of=mine, skip_locked=True)
    rows = db.execute(due).all()
    claimed: list[dict[str, Any]] = []
    for row in rows:
        if len(claimed) >= limit:
            break
        if accept is None or accept(dict(row._mapping)):
            claimed.append(dict(row._mapping))
    for delivery in claimed:
        db.execute(update(webhook_outbox).where(webhook_outbox.c.id == delivery["id"]).values(status="sending"))
    return claimed


def settle(db: Connection, delivery_id: str, status: str, error: str | None, retry_at: float | None) -> None:
    """``TaskStore.settle_webhook`` inside its transaction."""
    values: dict[str, Any] = {"status": "pending" if retry_at is not None else status,
                              "attempts": webhook_outbox.c.attempts + 1, "last_error": error,
                              "finished_at": None if retry_at is not None else time.time()}
    if retry_at is not None:
        values["next_attempt_at"] = retry_at
    db.execute(update(webhook_outbox).where(webhook_outbox.c.id == delivery_id).values(**values))
    if status == "gone":  # the receiver said 410: stop sending this task's events there
        row = db.execute(select(webhook_outbox.c.task_id, webhook_outbox.c.url)
                         .where(webhook_outbox.c.id == delivery_id)).one()
        db.execute(update(webhook_outbox).where(webhook_outbox.c.task_id == row.task_id,
                                                webhook_outbox.c.url == row.url, webhook_outbox.c.status == "pending")
                   .values(status="gone", finished_at=time.time()))


def requeue_interrupted(db: Connection) -> int:
    """Deliveries a dead process was sending go out again (same webhook id)."""
    return db.execute(update(webhook_outbox).where(webhook_outbox.c.status == "sending")
                      .values(status="pending")).rowcount


def of_task(db: Connection, task_id: str) -> list[dict[str, Any]]:
    """Every delivery of a task, oldest first."""
    rows = db.execute(select(webhook_outbox).where(webhook_outbox.c.task_id == task_id)
                      .order_by(webhook_outbox.c.created_at, webhook_outbox.c.seq)).all()
    return [dict(r._mapping) for r in rows]
