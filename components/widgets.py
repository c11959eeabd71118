"""Widget settings read from the request models, so a tab never restates a request rule.

A field's range, default and choices live once, on its pydantic request model in ``studio``;
``bounds`` and ``choices`` hand them to a Gradio widget. Change the model and the widget
follows; the core still validates every value (its ``InvalidRequest`` becomes a toast).
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

_MODEL_DEFAULT: Any = object()  # "use the field's default" (None is a value a caller may mean)


def bounds(model: type[BaseModel], name: str, value: Any = _MODEL_DEFAULT) -> dict[str, Any]:
    """``minimum``, ``maximum`` and ``value`` for a ``gr.Slider`` or ``gr.Number`` from the
    field ``name`` of ``model``: its ``ge``/``gt`` and ``le``/``lt`` bounds (an exclusive bound is
    given as is: the widget may reach it, the core then refuses it) and its default, unless
    ``value`` is given (for fields whose default is None, e.g. "the model's own steps", or a
    tab that starts elsewhere). Bounds a field lacks are left out, so Gradio's own apply."""
    field = model.model_fields[name]
    settings: dict[str, Any] = {}
    for meta in field.metadata:
        for attr, key in (("ge", "minimum"), ("gt", "minimum"), ("le", "maximum"), ("lt", "maximum")):
            if getattr(meta, attr, None) is not None:
                settings[key] = getattr(meta, attr)
    settings["value"] = default(model, name) if value is _MODEL_DEFAULT else value
    return settings


def default(model: type[BaseModel], name: str) -> Any:
    """The default of the field ``name`` of ``model`` (None for a required field): a widget's
    starting value."""
    field = model.model_fields[name]
    return None if field.default is PydanticUndefined else field.default


def choices(model: type[BaseModel], name: str) -> list[Any]:
    """The values a ``Literal`` field of ``model`` allows (an optional field's None left out),
    in the model's order: the choices of a dropdown or radio."""
    return _literal_values(model.model_fields[name].annotation)


def _literal_values(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    values: list[Any] = []
    if get_origin(annotation) in (Union, UnionType):  # Optional[...] and X | None
        for arg in get_args(annotation):
            values += [v for v in _literal_values(arg) if v not in values]
    return values
