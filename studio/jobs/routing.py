"""Which Celery queue a task is announced on: one queue per model, so the worker that serves a
model keeps its weights loaded, and a default queue for tasks that load no model (the classical
paths of the editing features).

A worker states the models it serves (``python -m studio worker --models ...``) and listens on
their queues plus the default one (``queues_for``). The in-process worker ignores queues.
"""

from __future__ import annotations

from studio.engine.spec import TaskSpec

DEFAULT_QUEUE = "studio"
QUEUE_PREFIX = "studio."


def queue_for_model(model_id: str | None) -> str:
    """The queue of tasks that run ``model_id`` (the default queue for None)."""
    return DEFAULT_QUEUE if not model_id else QUEUE_PREFIX + model_id


def queue_of(spec: TaskSpec) -> str:
    """The queue a task of this spec is announced on: its model's (``model``), else the default."""
    return queue_for_model(getattr(spec, "model", None))


def queues_for(models: list[str]) -> list[str]:
    """The queues a worker serving ``models`` listens on: theirs and the default queue."""
    return [DEFAULT_QUEUE, *(queue_for_model(m) for m in models)]
