"""The Celery application: how API processes tell GPU workers in other processes that work waits.

A message on queue Q says "a task on Q is ready to run" (its Celery task id is the id of the task
whose arrival sent it). The worker that takes it claims the next ready task of Q from the
database (``TaskStore.claim_next(queue=Q)``), so priorities, their age boost, the fair share
between UI and API work, batches and dependencies keep the order the embedded worker follows:
the database is the queue, the broker only wakes workers. Messages are interchangeable within a
queue, which keeps recovery simple: one too many claims nothing and is acknowledged; one too few
is made up by ``studio.jobs.dispatch.reconcile``.

Settings for long GPU jobs: a message is acknowledged only after its run (``acks_late``), put
back when the worker process dies (``reject_on_worker_lost``), one message per worker at a time
(prefetch 1), and Redis redelivers an unacknowledged message only after ``VISIBILITY_TIMEOUT``,
longer than the longest job. Results live in the database, so Celery keeps none.

    celery -A studio.jobs.celery_app worker --concurrency 1 -Q studio,studio.tiny
    python -m studio worker --models tiny            (the same, queues from the models)

The worker's own composition (the studio it runs tasks with) is ``studio.celery_worker``, which
Celery imports in worker processes only (``include``): API processes never load it.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

from celery import Celery

from studio.config import Settings
from studio.jobs.routing import DEFAULT_QUEUE

log = logging.getLogger(__name__)

RUN_QUEUED = "studio.run_queued"  # the one Celery task: (queue, task id) -> claim and run from queue
LONGEST_JOB_SECONDS = 6 * 3600
VISIBILITY_TIMEOUT = LONGEST_JOB_SECONDS + 3600  # Redis: redeliver an unacknowledged message after this
PUBLISH_RETRIES = 2  # a broker that is down costs a submit at most ~0.5 s; reconcile re-sends later

# Set in each worker process by studio.celery_worker: (queue, task id) -> None.
_handler: Callable[[str, str], None] | None = None


def serve_with(handler: Callable[[str, str], None] | None) -> None:
    """Install what runs a ``RUN_QUEUED`` message in this worker process."""
    global _handler
    _handler = handler


@functools.cache
def make_app(broker_url: str | None) -> Celery:
    """The Celery app on ``broker_url`` with the settings above, one per URL and process (each
    registers ``RUN_QUEUED``); nothing connects until it is used."""
    app = Celery("studio", broker=broker_url, include=["studio.celery_worker"], set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=DEFAULT_QUEUE,
        task_create_missing_queues=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": PUBLISH_RETRIES, "interval_start": 0.1,
                                   "interval_step": 0.2, "interval_max": 0.3},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )

    @app.task(name=RUN_QUEUED, bind=True, acks_late=True, reject_on_worker_lost=True)
    def run_queued(self, queue: str, task_id: str) -> None:
        if _handler is None:  # a worker started without studio.celery_worker: put it back, say why
            raise RuntimeError("this Celery worker has no studio loaded; start it with "
                               "`python -m studio worker` or `celery -A studio.jobs.celery_app worker`")
        _handler(queue, task_id)

    return app


def publish(app: Celery, queue: str, task_id: str) -> None:
    """Announce on ``queue`` that ``task_id`` (and maybe others) can run."""
    app.send_task(RUN_QUEUED, args=[queue, task_id], task_id=task_id, queue=queue, routing_key=queue)


def waiting_messages(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` (not those a worker holds now); 0 for a queue never declared."""
    with app.connection_for_write() as connection:
        try:
            return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
        except Exception as error:  # the transport's "no such queue": nothing waits there
            if "NOT_FOUND" in str(error) or "no queue" in str(error).lower():
                return 0
            raise


#: For ``celery -A studio.jobs.celery_app``: the broker of this process's environment.
app = make_app(Settings.from_env().broker_url)
