"""The API's response bodies as plain dataclasses.

Built with ``from_dict``: fields the SDK knows become attributes (missing ones are ``None``),
anything the server adds later is kept in ``extra``, and the whole body in ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping, TypeVar

__all__ = ["Submission", "TaskStatus", "ResultMetadata", "VideoResult", "ModelInfo", "GenreInfo",
           "TERMINAL_STATUSES"]

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})

T = TypeVar("T", bound="_Model")


@dataclass
class _Model:
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    # Nested models, by field name (overridden where a field holds one).
    _nested: ClassVar[dict[str, type[_Model]]] = {}

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__} expects a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)} - {"extra", "raw"}
        nested = cls._nested
        kwargs: dict[str, Any] = {}
        for name in names & data.keys():
            value = data[name]
            if name in nested and isinstance(value, Mapping):
                value = nested[name].from_dict(value)
            kwargs[name] = value
        return cls(**kwargs, extra={k: v for k, v in data.items() if k not in names}, raw=dict(data))

    def to_dict(self) -> dict[str, Any]:
        """The body this object was built from."""
        return dict(self.raw)


@dataclass
class Submission(_Model):
    """Reply to ``POST /generate``."""

    task_id: str = ""
    status: str | None = None
    message: str | None = None
    estimated_time_seconds: float | None = None
    queue_position: int | None = None


@dataclass
class TaskStatus(_Model):
    """``GET /status/{task_id}`` (and ``POST /cancel``)."""

    task_id: str = ""
    status: str | None = None
    progress: float | None = None
    current_step: str | None = None
    elapsed_seconds: float | None = None
    eta_seconds: float | None = None
    preview_url: str | None = None
    queue_position: int | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the task has ended (completed, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES


@dataclass
class ResultMetadata(_Model):
    """How the video was made (``result.metadata``)."""

    prompt: str | None = None
    model: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    genre: str | None = None
    model_trained: bool | None = None
    fps: int | None = None
    frames: int | None = None
    width: int | None = None
    height: int | None = None
    generated_width: int | None = None
    generated_height: int | None = None
    generated_frames: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    memory_profile: str | None = None
    timings: dict[str, float] | None = None
    notes: list[str] | None = None
    speed: dict[str, Any] | None = None  # compile, attention backend, VAE dtype and tiling, notes


@dataclass
class VideoResult(_Model):
    """``GET /result/{task_id}``: a finished video."""

    task_id: str = ""
    status: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    duration_seconds: float | None = None
    resolution: str | None = None
    file_size_mb: float | None = None
    generation_time_seconds: float | None = None
    metadata: ResultMetadata = field(default_factory=ResultMetadata)

    _nested: ClassVar[dict[str, type[_Model]]] = {"metadata": ResultMetadata}


@dataclass
class ModelInfo(_Model):
    """One entry of ``GET /models``."""

    id: str = ""
    task: str | None = None
    label: str | None = None
    repo_id: str | None = None
    trained: bool | None = None
    native_width: int | None = None
    native_height: int | None = None
    native_fps: int | None = None
    max_frames: int | None = None
    vram_gb: float | None = None
    available: bool | None = None
    availability: str | None = None
    loaded: bool | None = None
    default: bool | None = None


@dataclass
class GenreInfo(_Model):
    """One entry of ``GET /genres``."""

    name: str = ""
    description: str | None = None
    prompt_suffix: str | None = None
    negative_suffix: str | None = None
