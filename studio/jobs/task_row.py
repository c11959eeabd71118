"""A task as the store keeps it: the lifecycle statuses and ``Task``, one decoded row of ``tasks``.

Re-exported by ``studio.jobs.store``, where callers import them from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row

PENDING = "pending"
LOADING_MODEL = "loading_model"
GENERATING = "generating_base"
ENCODING = "encoding"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"

RUNNING_STATUSES = (LOADING_MODEL, GENERATING, ENCODING)
TERMINAL_STATUSES = (COMPLETED, FAILED, CANCELLED)
ALL_STATUSES = (PENDING, *RUNNING_STATUSES, *TERMINAL_STATUSES)
DEPENDENCY_FAILED = "DependencyFailed"  # error_type of a task whose dependency failed or was cancelled


@dataclass
class Task:
    """One row of the task table, decoded."""

    id: str
    kind: str
    status: str
    priority: int
    request: dict[str, Any]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress: float = 0.0
    current_step: str = ""
    eta_seconds: float | None = None
    estimated_seconds: float | None = None
    preview_path: str | None = None
    cancel_requested: bool = False
    attempt: int = 0
    error: str | None = None
    error_type: str | None = None
    result: dict[str, Any] | None = field(default=None)
    owner: str = ""
    webhook_url: str | None = None
    batch_id: str | None = None
    queue: str = "studio"  # the Celery queue it is announced on (studio.jobs.routing)
    worker_id: str | None = None  # the worker running it now (studio.jobs.workers)

    @property
    def is_completed(self) -> bool:
        return self.status == COMPLETED

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_running(self) -> bool:
        return self.status in RUNNING_STATUSES


def row_to_task(row: Row) -> Task:
    """Decode a full row of ``tasks`` (``select(tasks)``)."""
    data = dict(row._mapping)
    data.pop("seq")
    data["request"] = json.loads(data["request"])
    data["result"] = json.loads(data["result"]) if data["result"] else None
    data["cancel_requested"] = bool(data["cancel_requested"])
    return Task(**data)
