"""Idempotency keys: a request repeated with the same key (by the same owner, within 24 hours)
returns what the first one created instead of creating it again.

Functions of an open connection, called inside ``TaskStore``'s write transaction, so two
concurrent duplicates cannot both create a task.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, delete, insert, select

from studio.db.schema import idempotency
from studio.errors import IdempotencyConflict

IDEMPOTENCY_TTL_SECONDS = 24 * 3600


def earlier_task(db: Connection, owner: str, key: str, body: str, now: float) -> str | None:
    """The task an earlier request with this key created, or None if the key is new (or expired)."""
    db.execute(delete(idempotency).where(idempotency.c.created_at < now - IDEMPOTENCY_TTL_SECONDS))
    row = db.execute(select(idempotency.c.request_hash, idempotency.c.task_id)
                     .where(idempotency.c.owner == owner, idempotency.c.key == key)).first()
    if row is None:
        return None
    if row.request_hash != _hash(body):
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request body; use a new key")
    return row.task_id


def remember(db: Connection, owner: str, key: str, body: str, task_id: str, now: float) -> None:
    """Record that ``key`` created ``task_id`` (or a batch id) for ``body``."""
    db.execute(insert(idempotency).values(owner=owner, key=key, request_hash=_hash(body), task_id=task_id,
                                          created_at=now))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
