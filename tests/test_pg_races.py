"""Several API processes on one PostgreSQL database (READ COMMITTED, no BEGIN IMMEDIATE): the
races SQLite's one-writer lock used to rule out stay ruled out.

* The same ``Idempotency-Key`` sent to two processes at once creates one task; both get its id
  (or ``IdempotencyConflict`` for a different body), never a unique violation (a 500).
* A due webhook delivery is claimed by one process only: no duplicate webhook.

Each process is a ``TaskStore`` on a ``Database`` of its own (its own connection pool), as in two
API replicas; the threads of one test start each round together at a barrier. Skipped without a
PostgreSQL server on 127.0.0.1:5432 (database ``test``, trust auth) or the psycopg driver."""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from studio.db import Database
from studio.db.schema import idempotency, tasks, webhook_outbox
from studio.errors import IdempotencyConflict
from studio.jobs.store import TaskStore
from tests.test_db_layer import _fresh_postgres_schema, _postgres_up

# Skipped only outside CI: scripts/test.sh starts PostgreSQL, so in CI a missing one is a failure.
pytestmark = pytest.mark.skipif(not _postgres_up() and not os.environ.get("CI"), reason="no PostgreSQL on 127.0.0.1:5432 or no psycopg driver")

ROUNDS = 40


@pytest.fixture
def two_stores() -> Iterator[tuple[TaskStore, TaskStore]]:
    """Two task stores (two "processes") on a freshly migrated schema of this test's own."""
    schema = "studio_races_" + uuid.uuid4().hex[:12]  # its own: parallel runs never meet
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    _fresh_postgres_schema(url, schema)
    databases = [Database(url), Database(url)]
    databases[0].migrate()
    stores = [TaskStore(database) for database in databases]
    try:
        yield stores[0], stores[1]
    finally:
        for store, database in zip(stores, databases):
            store.close()
            database.dispose()
        _fresh_postgres_schema(url, schema, drop_only=True)


def _at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released together; each result, or the exception it raised."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:  # the test looks at it
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def _count(store: TaskStore, table, *where) -> int:
    with store.database.connect() as db:
        return db.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_the_same_idempotency_key_at_once_creates_one_task(two_stores):
    first, second = two_stores
    for round_ in range(ROUNDS):
        key, request = f"key-{round_}", {"prompt": f"a fox {round_}"}
        results = _at_once(*(lambda s=store: s.create_task("t2v", request, owner="key-1", idempotency_key=key)
                             for store in (first, second)))
        assert not any(isinstance(r, Exception) for r in results), results
        (task_a, created_a), (task_b, created_b) = results
        assert task_a.id == task_b.id and sorted([created_a, created_b]) == [False, True], round_
    assert _count(first, tasks, tasks.c.owner == "key-1") == ROUNDS
    assert _count(second, idempotency) == ROUNDS


def test_the_same_key_with_another_body_at_once_is_one_task_and_one_conflict(two_stores):
    first, second = two_stores
    for round_ in range(ROUNDS):
        key = f"key-{round_}"
        results = _at_once(
            lambda: first.create_task("t2v", {"prompt": "a fox"}, owner="key-1", idempotency_key=key),
            lambda: second.create_task("t2v", {"prompt": "a hen"}, owner="key-1", idempotency_key=key))
        conflicts = [r for r in results if isinstance(r, IdempotencyConflict)]
        created = [r for r in results if isinstance(r, tuple)]
        assert len(conflicts) == 1 and len(created) == 1 and created[0][1] is True, results
    assert _count(first, tasks, tasks.c.owner == "key-1") == ROUNDS


def test_the_same_key_is_per_owner_and_batches_race_safely_too(two_stores):
    """Another owner's identical key is another request; a batch replay returns the first batch."""
    first, second = two_stores
    for round_ in range(10):
        key = f"batch-key-{round_}"

        def batch(store: TaskStore) -> tuple[str, list[str], bool]:
            return store.create_batch("key-1", {"n": round_}, [{"prompt": "a"}, {"prompt": "b"}], 0, [1.0, 1.0],
                                      idempotency_key=key)

        results = _at_once(lambda: batch(first), lambda: batch(second),
                           lambda: first.create_task("t2v", {"n": round_}, owner="key-2", idempotency_key=key))
        assert not any(isinstance(r, Exception) for r in results), results
        (batch_a, ids_a, created_a), (batch_b, ids_b, created_b), (_, other_owner_created) = results
        assert batch_a == batch_b and ids_a == ids_b and sorted([created_a, created_b]) == [False, True]
        assert other_owner_created
    assert _count(first, tasks, tasks.c.owner == "key-1") == 20 and _count(first, tasks, tasks.c.owner == "key-2") == 10


def test_each_due_webhook_is_claimed_by_one_process_only(two_stores):
    first, second = two_stores
    for round_ in range(5):
        for n in range(30):  # 30 tasks, each with its task.created delivery due now
            first.create_task("t2v", {"prompt": f"{round_}-{n}"}, owner="key-1",
                              webhook_url=f"https://example.com/hook/{n % 4}")
        claims: list[list[str]] = [[], []]

        def claim_all(index: int, store: TaskStore) -> None:
            while batch := store.claim_due_webhooks(limit=3):
                claims[index].extend(d["id"] for d in batch)

        _at_once(lambda: claim_all(0, first), lambda: claim_all(1, second))
        claim_all(0, first)  # what the other held while one found nothing left: nothing is lost
        counted = Counter(claims[0] + claims[1])
        assert [d for d, times in counted.items() if times > 1] == [], f"claimed twice in round {round_}"
        assert len(counted) == 30
        assert _count(first, webhook_outbox, webhook_outbox.c.status == "pending") == 0
        assert _count(first, webhook_outbox, webhook_outbox.c.status == "sending") == 30 * (round_ + 1)
