"""Idempotency keys: a request repeated with the same key (by the same owner, within 24 hours)
returns what the first one created instead of creating it again.

Functions of an open connection, called inside ``TaskStore``'s write transaction, so two
concurrent duplicates cannot both create a task. On SQLite that transaction is ``BEGIN IMMEDIATE``:
writers are serialised already. On PostgreSQL (READ COMMITTED) two API processes would both find
no row and both insert, the second failing on the primary key (a 500); ``earlier_task`` therefore
first takes a transaction-level advisory lock on (owner, key), so duplicates run one after the
other and the second sees the first's committed row (its task, or ``IdempotencyConflict``).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, delete, func, insert, select

from studio.db.schema import idempotency
from studio.errors import IdempotencyConflict

IDEMPOTENCY_TTL_SECONDS = 24 * 3600


def earlier_task(db: Connection, owner: str, key: str, body: str, now: float) -> str | None:
    """The task an earlier request with this key created, or None if the key is new (or expired).

    On PostgreSQL it waits first for any other transaction using the same (owner, key) to end:
    the lock is released at its COMMIT, after ``remember`` stored the key, and READ COMMITTED
    gives the SELECT below a snapshot taken after the wait, so it sees that row. (Under
    REPEATABLE READ or SERIALIZABLE the snapshot would predate the wait; the studio uses neither.)
    """
    if db.dialect.name == "postgresql":
        db.execute(select(func.pg_advisory_xact_lock(_lock_id(owner, key))))
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


def _lock_id(owner: str, key: str) -> int:
    """The advisory lock of (owner, key): a signed 64-bit number, as ``pg_advisory_xact_lock``
    takes. Two pairs sharing one (a 2**-64 chance) only wait for each other, never mix up."""
    digest = hashlib.sha256(f"idempotency\0{owner}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
