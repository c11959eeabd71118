"""Announcing ready tasks to Celery workers, and making up for announcements that were lost.

``TaskStore.on_ready`` calls ``CeleryDispatch.announce`` after each commit that made tasks
claimable on a worker (a requeue, a dependency that completed); a submit calls ``reconcile``
once it has measured its reply (``Studio.wake``). A broker that is down at that moment does
not fail the submit: the task is committed, and ``reconcile`` (run every few seconds by API
processes, and when they start) announces every ready task that has no message waiting.
Surplus messages are harmless (a worker that finds nothing to claim acknowledges and moves on),
so reconcile errs on the side of sending.
"""

from __future__ import annotations

import logging

from celery import Celery

from studio.jobs.celery_app import publish, waiting_messages
from studio.jobs.store import TaskStore

log = logging.getLogger(__name__)


class CeleryDispatch:
    """Sends one "work waits on queue Q" message per ready task."""

    def __init__(self, app: Celery):
        self.app = app

    def announce(self, ready: list[tuple[str, str]]) -> None:
        """``ready``: (task id, queue) pairs; never raises (reconcile repairs what failed)."""
        for task_id, queue in ready:
            try:
                publish(self.app, queue, task_id)
            except Exception as error:
                log.warning("could not announce task %s on %s (%s); reconciliation will", task_id, queue, error)

    def reconcile(self, store: TaskStore) -> dict[str, int]:
        """Per queue, send as many messages as ready tasks outnumber the messages waiting
        (a broker restart lost them, or a publish failed). Returns what was sent, per queue."""
        sent: dict[str, int] = {}
        for queue, ready in store.ready_by_queue().items():
            missing = ready - waiting_messages(self.app, queue)
            if missing > 0:
                for task_id in store.ready_ids(queue, missing):
                    publish(self.app, queue, task_id)
                sent[queue] = missing
        return sent
