"""Typed task specs: one pydantic model per task kind, used to validate, store and run a task.

A request is validated once into its kind's spec; the task row stores that spec as JSON (with
``kind`` and ``version``) and every reader gets the model back (``studio.jobs.specs``), so a
mistyped field fails when the spec is written, in the submit, not on the worker after the
client got its 202. A new field touches the spec (and its widget, if the UI shows it).

``version`` lets a spec change shape: a kind that renames or restructures a field raises its
``VERSION`` and teaches :meth:`TaskSpec.upgrade` to bring older rows up to date, so tasks that
an older version stored still load.

The base classes live in the engine layer because the engine's edit runner (``EditJob``)
carries the spec; the registry that maps a stored row to its class is ``studio.jobs.specs``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TaskSpec(BaseModel):
    """What one task of a kind stores and its run reads.

    Subclasses set ``KIND`` and declare ``kind: Literal[KIND] = KIND`` (the discriminator the
    stored JSON carries), plus their fields. ``VERSION`` is the current schema version."""

    model_config = ConfigDict(extra="forbid")

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    version: int = Field(1, description="Schema version of this stored spec (a new spec: the class's VERSION)")

    @model_validator(mode="before")
    @classmethod
    def _current_version(cls, data: Any) -> Any:
        """A spec built now is of the current version; one loaded from a row has been through
        ``upgrade``, which must have brought it there (checked below)."""
        if isinstance(data, dict) and "version" not in data:
            return {**data, "version": cls.VERSION}
        return data

    @model_validator(mode="after")
    def _version_is_current(self) -> "TaskSpec":
        if self.version != self.VERSION:
            raise ValueError(f"version {self.version} of a {self.KIND} spec: this code reads version {self.VERSION}")
        return self

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Bring a stored spec of an older version up to ``VERSION``. Rows written before specs
        carried ``kind`` and ``version`` are version 1; a kind that changes shape overrides this
        (calling ``super().upgrade`` first) and converts from the version it finds."""
        data.setdefault("kind", cls.KIND)
        data.setdefault("version", 1)
        return data

    def stored(self) -> dict[str, Any]:
        """The JSON-ready form written to the task row."""
        return self.model_dump(mode="json")


class SourceVideo(BaseModel):
    """The input video of an edit: a completed task's video (``task_id``) or an upload copied
    into the task's inputs folder (``upload``, a file name there), with what a probe found."""

    model_config = ConfigDict(extra="forbid")

    task_id: str | None = None
    upload: str | None = None
    frames: int
    fps: float
    width: int
    height: int


class EditSpec(TaskSpec):
    """A video-side task: the inputs folder the submit filled, and its source video if any."""

    inputs_id: str | None = Field(None, description="Folder under data/inputs holding this task's stored inputs")
    source: SourceVideo | None = None
    #: Which way the run goes: the feature's classical algorithm or its model path. Each has its
    #: own measured seconds per frame (``studio.engine.edit.timing_key``).
    path: Literal["classical", "model"] = "classical"
