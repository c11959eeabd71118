"""The task-spec registry: a stored task row back to its typed spec (``studio.engine.spec``).

The composition root (``studio.core``) registers every kind it serves; the worker, the status
reader and the features load rows through :meth:`SpecRegistry.load`, never by string key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from studio.engine.request import describe_validation_error
from studio.engine.spec import TaskSpec
from studio.errors import InvalidRequest

if TYPE_CHECKING:
    from studio.jobs.store import Task

SpecT = TypeVar("SpecT", bound=TaskSpec)


class SpecRegistry:
    """Which spec class each task kind stores."""

    def __init__(self, specs: Iterable[type[TaskSpec]] = ()):
        self._by_kind: dict[str, type[TaskSpec]] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: type[TaskSpec]) -> None:
        if not spec.KIND:
            raise ValueError(f"{spec.__name__} has no KIND")
        if spec.KIND in self._by_kind and self._by_kind[spec.KIND] is not spec:
            raise ValueError(f"task kind {spec.KIND!r} is registered twice")
        self._by_kind[spec.KIND] = spec

    @property
    def kinds(self) -> list[str]:
        return sorted(self._by_kind)

    def load(self, kind: str, data: dict) -> TaskSpec:
        """The spec of a stored row of ``kind`` (older versions upgraded on the way)."""
        try:
            spec = self._by_kind[kind]
        except KeyError:
            raise InvalidRequest(f"this server does not run tasks of kind {kind!r}") from None
        return load_as(spec, data)

    def of(self, task: "Task") -> TaskSpec:
        """The typed spec of a task row."""
        return self.load(task.kind, task.request)


def load_as(spec: type[SpecT], data: dict) -> SpecT:
    """``data`` (a stored row's JSON) as ``spec``, upgraded from an older version if need be;
    a row that no longer validates is an ``InvalidRequest`` naming what is wrong."""
    try:
        return spec.model_validate(spec.upgrade(dict(data)))
    except ValidationError as exc:
        raise InvalidRequest(f"stored {spec.KIND} task does not match its spec (version {spec.VERSION}): "
                             f"{describe_validation_error(spec, exc.errors())}") from None


class BatchOptions(BaseModel):
    """What the queue reads of a stored batch request (``studio.genius.batch``): how the batch's
    text-to-video tasks may share pipeline calls. The rest of the request is the feature's."""

    model_config = ConfigDict(extra="ignore")

    max_concurrent: int = 1  # most tasks of the batch in one pipeline call
    vram_budget_gb: float | None = None  # summed VRAM estimate a group may use
    enable_similarity_caching: bool = True  # equal / near-identical prompts share work
