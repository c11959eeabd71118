"""The LoRA adapters a generation task runs with, as files on this worker.

A task names adapters by id (``GenerationSpec.loras``); :func:`task_adapters` turns them into
``studio.engine.loras.Adapter`` s: the registered row (still there, still the task owner's),
its file (fetched from object storage when another process registered it, or downloaded from the
Hugging Face Hub for a hub adapter, then checked against the model like an upload is at
registration). A fast-mode task adds its model's distillation LoRAs (:func:`fast_adapters`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from studio.db.loras import LoraRecords, LoraRow
from studio.engine.loras import Adapter
from studio.engine.request import LoraChoice
from studio.errors import InvalidRequest, ModelUnavailable
from studio.models.catalog import ModelSpec
from studio.models.lora_files import ADAPTER_FILE, adapter_folder, adapter_targets, check_fits, read_adapter
from studio.models.tiny import ensure_tiny_fast_lora

if TYPE_CHECKING:
    from studio.media.paths import MediaPaths


def task_adapters(records: LoraRecords, data_dir: Path, paths: "MediaPaths", owner: str,
                  choices: list[LoraChoice], spec: ModelSpec) -> list[Adapter]:
    """The adapters of ``owner``'s task on ``spec``, in the order it named them."""
    adapters = []
    for index, choice in enumerate(choices):
        row = records.get(choice.id)
        if row is None or row.owner != owner:
            raise InvalidRequest(f"loras[{index}]: LoRA {choice.id!r} was deleted after this task was queued")
        path = _hub_file(records, row, spec) if row.source == "hub" else _uploaded_file(paths, data_dir, row)
        adapters.append(Adapter(row.id, row.name, path, choice.scale))
    return adapters


def fast_adapters(spec: ModelSpec, models_dir: Path) -> list[Adapter]:
    """The distillation LoRAs of ``spec``'s fast mode (``ModelSpec.fast``), at full strength:
    downloaded from the hub (503 ``ModelUnavailable`` when it cannot be reached), or built
    offline for ``tiny``."""
    fast = spec.fast
    adapters = []
    for filename, expert in fast.files:
        if fast.hub_id is None:
            path = ensure_tiny_fast_lora(models_dir)
        else:
            path = _download(fast.hub_id, filename, f"{spec.id}'s fast mode LoRA")
        adapters.append(Adapter(f"fast:{filename}", fast.label, path, 1.0, expert))
    return adapters


def _download(hub_id: str, filename: str, what: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(hub_id, filename))
    except Exception as error:
        raise ModelUnavailable(f"{what} ({hub_id}/{filename}) could not be fetched from the Hugging Face Hub: "
                               f"{str(error)[:200]}") from None


def _uploaded_file(paths: "MediaPaths", data_dir: Path, row: LoraRow) -> Path:
    folder = adapter_folder(data_dir, row.id)
    try:
        paths.fetch_inputs(folder)  # object storage: registered by another process
    except FileNotFoundError:
        raise InvalidRequest(f"LoRA {row.name!r}: its file is gone; register it again") from None
    return folder / ADAPTER_FILE


def _hub_file(records: LoraRecords, row: LoraRow, spec: ModelSpec) -> Path:
    """Download (or find in the cache) a hub adapter, and check it the first time."""
    path = _download(row.hub_id, row.hub_filename, f"LoRA {row.name!r}")
    if not row.targets:
        data = path.read_bytes()
        summary = adapter_targets(read_adapter(data, f"LoRA {row.name!r}"), f"LoRA {row.name!r}")
        records.set_targets(row.id, {k: list(v) for k, v in summary.targets.items()}, summary.rank, len(data))
        check_fits(summary.targets, spec, f"LoRA {row.name!r}")
    return path
