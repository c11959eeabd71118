"""LoRA adapters for Generate: register (upload a safetensors file, or name a Hugging Face Hub
file), list, delete, and check a request's ``loras`` against them.

An adapter belongs to the API key (or UI visitor) that registered it; others get 404 for it.
An upload is read and checked on the spot: a safetensors file of LoRA weight pairs
(``studio.models.lora_files``) whose every layer exists in ``model``'s transformer with the same
sizes; anything else is a 400 saying which layer does not fit. A hub adapter is a reference,
fetched and checked by the worker that first uses it (503 ``ModelUnavailable`` in that task
when the hub cannot be reached). A generation may use it on any model its layers fit (a LoRA
made for Wan2.1-T2V-1.3B also fits that model's VACE continuation windows).

Files live in ``data_dir/loras/lora-<id>/adapter.safetensors``
(``studio.models.lora_files.adapter_folder``) and, with object storage, in the bucket
(``paths.publish_inputs``), so any worker can fetch them.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from studio.db.loras import DuplicateLoraName, LoraRecords, LoraRow
from studio.engine.request import NOT_BLANK, JsonModel, LoraChoice
from studio.errors import InvalidRequest, PayloadTooLarge, StudioError
from studio.models.catalog import CATALOG, get_spec
from studio.models.lora_files import ADAPTER_FILE, adapter_folder, adapter_targets, check_fits, read_adapter

if TYPE_CHECKING:
    from studio.media.paths import MediaPaths

MAX_LORAS_PER_OWNER = 50
HUB_ID_PATTERN = r"^[A-Za-z0-9][\w.-]*/[\w.-]+$"
#: The models a LoRA is registered for: the text-to-video models.
T2VModel = Literal[tuple(CATALOG)]


class LoraExists(StudioError):
    status_code = 409
    title = "LoRA exists"


class LoraNotFound(StudioError):
    status_code = 404
    title = "LoRA not found"


class LoraInfo(BaseModel):
    """A registered LoRA adapter."""

    model_config = {"protected_namespaces": ()}

    id: str = Field(description="Use it in generate's loras: [{id, scale}]")
    name: str
    model: str = Field(description="The model it was checked against at registration")
    source: str = Field(description="'upload' or 'hub'")
    hub_id: str | None = None
    hub_filename: str | None = None
    rank: int | None = Field(None, description="Its rank (null for a hub adapter not fetched yet)")
    layers: int = Field(description="How many transformer layers it changes (0 for a hub adapter not fetched yet)")
    size_mb: float | None = None
    created_at: float


class LoraList(BaseModel):
    loras: list[LoraInfo]


class HubLoraRequest(JsonModel):
    """A LoRA on the Hugging Face Hub, registered by reference."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    hub_id: str = Field(..., max_length=200, pattern=HUB_ID_PATTERN, description="Repository id, e.g. 'owner/name'")
    filename: str = Field(..., max_length=300, pattern=r"^[\w./-]+\.safetensors$",
                          description="The .safetensors file in that repository")
    name: str = Field(..., min_length=1, max_length=100, pattern=NOT_BLANK)
    model: T2VModel = Field(..., description="The text-to-video model it is for (GET /v1/models, task t2v)")


def _info(row: LoraRow) -> LoraInfo:
    return LoraInfo(id=row.id, name=row.name, model=row.model, source=row.source, hub_id=row.hub_id,
                    hub_filename=row.hub_filename, rank=row.rank, layers=len(row.targets),
                    size_mb=round(row.size_bytes / 2**20, 3) if row.size_bytes else None, created_at=row.created_at)


def _t2v_model(model: str) -> str:
    takes_loras = [m for m, spec in CATALOG.items() if not spec.chunked]
    if model not in takes_loras:
        raise InvalidRequest(f"model must be a Wan text-to-video model: one of {', '.join(takes_loras)}")
    return model


def _name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidRequest("name must be 1-100 characters")
    return name


class LoraLibrary:
    """The registered adapters: rows in the database, files beside the media."""

    def __init__(self, records: LoraRecords, data_dir: Path, paths: "MediaPaths", max_bytes: int):
        self.records, self.data_dir, self.paths, self.max_bytes = records, Path(data_dir), paths, max_bytes

    def register_upload(self, owner: str, name: str, model: str, data: bytes) -> LoraInfo:
        """Check an uploaded file against ``model`` and keep it."""
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"file: the LoRA is over {self.max_bytes // 2**20} MiB")
        name, model = _name(name), _t2v_model(model)
        summary = adapter_targets(read_adapter(data))
        check_fits(summary.targets, get_spec(model), "file")
        self._room_for_one(owner, name)
        row = LoraRow(uuid.uuid4().hex[:16], owner, name, model, "upload", None, None, summary.rank, len(data),
                      time.time(), {k: list(v) for k, v in summary.targets.items()})
        folder = self.folder_of(row.id)
        part = folder.with_name(folder.name + ".part")  # renamed when whole: a crash leaves no half file
        try:
            part.mkdir(parents=True, exist_ok=True)
            (part / ADAPTER_FILE).write_bytes(data)
            part.rename(folder)
            self.paths.publish_inputs(folder)
            self._add(row)
        except BaseException:
            shutil.rmtree(part, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return _info(row)

    def register_hub(self, owner: str, request: HubLoraRequest) -> LoraInfo:
        """Keep a reference to a hub file; the worker that first uses it fetches and checks it."""
        name, model = _name(request.name), _t2v_model(request.model)
        self._room_for_one(owner, name)
        row = LoraRow(uuid.uuid4().hex[:16], owner, name, model, "hub", request.hub_id, request.filename, None, None,
                      time.time(), {})
        self._add(row)
        return _info(row)

    def owned(self, owner: str) -> LoraList:
        return LoraList(loras=[_info(row) for row in self.records.owned(owner)])

    def delete(self, owner: str, lora_id: str) -> None:
        """Delete one of ``owner``'s adapters (the same 404 for unknown ids and others' ones).
        Tasks queued with it fail with a 400 naming it when they start."""
        if not (isinstance(lora_id, str) and len(lora_id) <= 64 and self.records.delete(owner, lora_id)):
            raise LoraNotFound(f"no LoRA with id {str(lora_id)[:64]!r}")
        shutil.rmtree(self.folder_of(lora_id), ignore_errors=True)

    def folder_of(self, lora_id: str) -> Path:
        return adapter_folder(self.data_dir, lora_id)

    def _room_for_one(self, owner: str, name: str) -> None:
        owned = self.records.owned(owner)
        if any(row.name == name for row in owned):
            raise LoraExists(f"name: you already have a LoRA named {name!r}; delete it first (DELETE /v1/loras/{{id}})")
        if len(owned) >= MAX_LORAS_PER_OWNER:
            raise InvalidRequest(f"you keep {len(owned)} LoRAs, the most allowed; delete one first")

    def _add(self, row: LoraRow) -> None:
        try:
            self.records.add(row)
        except DuplicateLoraName:
            raise LoraExists(f"name: you already have a LoRA named {row.name!r}; delete it first") from None


def check_choices(records: LoraRecords, owner: str, choices: list[LoraChoice], model: str) -> None:
    """A request's ``loras`` at submit: each one ``owner``'s (404 ``LoraNotFound`` otherwise), each
    fitting ``model`` (400 otherwise)."""
    spec = get_spec(model)
    if choices and spec.chunked:
        raise InvalidRequest(f"loras: {spec.id} takes no LoRAs here yet (LoRAs are checked against the Wan "
                             "transformers, and the Helios ones were not tried); use a Wan model for LoRAs")
    for index, choice in enumerate(choices):
        row = records.get(choice.id)
        what = f"loras[{index}]"
        if row is None or row.owner != owner:
            raise LoraNotFound(f"{what}.id: you have no LoRA {choice.id!r} (GET /v1/loras lists yours)")
        if row.targets:  # a hub adapter is checked when it is fetched
            check_fits(row.targets, spec, f"{what} ({row.name!r}, made for {row.model})")
