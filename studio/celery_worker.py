"""A Celery worker process's studio: the composition root of ``celery -A studio.jobs.celery_app
worker`` (and of ``python -m studio worker``, which wraps it).

Celery imports this module in worker processes only (``include`` in ``studio.jobs.celery_app``).
Each process that runs tasks builds one ``Studio`` in role ``worker`` — the same stores, model
cache, engine and feature runners as the embedded server, without HTTP — when it starts (so the
offline model is loaded before the first task), and runs every ``RUN_QUEUED`` message on it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from celery import signals

from studio.config import Settings
from studio.core import Studio
from studio.jobs import celery_app

log = logging.getLogger(__name__)

_studio: Studio | None = None
_lock = threading.Lock()


def studio_of_this_process() -> Studio:
    """This process's worker studio, built and started on first use."""
    global _studio
    with _lock:
        if _studio is None:
            studio = Studio(replace(Settings.from_env(), role="worker"))
            studio.start()
            _studio = studio
        return _studio


def run_queued(queue: str, task_id: str) -> None:
    """A message announced ``task_id`` on ``queue``: run the next ready task of that queue."""
    ran = studio_of_this_process().worker.run_queued(queue)
    if ran is None:
        log.info("nothing to claim on %s (announced for %s): another worker took it, or it ended", queue, task_id)


@signals.worker_process_init.connect
def _start_in_child(**_) -> None:
    studio_of_this_process()


@signals.worker_process_shutdown.connect
def _stop_in_child(**_) -> None:
    if _studio is not None:
        _studio.stop()


celery_app.serve_with(run_queued)
app = celery_app.app
