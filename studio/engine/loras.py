"""LoRA adapters on a loaded pipeline for the length of one run, then gone.

Pipelines are cached across tasks (``studio.models.loader``), so an adapter a task asked for
must not leak into the next task: :func:`adapters_applied` loads each adapter under its own
name (through diffusers' ``load_lora_weights``, which uses peft), sets their scales, and deletes
them when the block ends, whatever way it ends. Wan2.2-A14B has two experts (``transformer`` for
high noise, ``transformer_2`` for low noise); an adapter goes into both unless it names one
(``Adapter.expert``: the 4-step distillation LoRAs come one per expert).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Adapter:
    """One LoRA of a task: its file and scale, and the id it is known by (metadata)."""

    id: str
    name: str
    path: Path
    scale: float
    expert: int | None = None  # 0: ``transformer`` only, 1: ``transformer_2`` only, None: every transformer

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "scale": self.scale}


def adapter_names(pipe) -> set[str]:
    """The adapters loaded on ``pipe``'s transformers now (empty between tasks)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    names: set[str] = set()
    for transformer in _experts(pipe):
        for module in transformer.modules():
            if isinstance(module, BaseTunerLayer):
                names.update(module.lora_A.keys())
    return names


@contextmanager
def adapters_applied(pipe, adapters: Sequence[Adapter]) -> Iterator[None]:
    """Run the block with ``adapters`` loaded on ``pipe`` at their scales; remove them after."""
    if not adapters:
        yield
        return
    from safetensors.torch import load_file

    experts = _experts(pipe)
    on_expert: list[list[tuple[str, float]]] = [[] for _ in experts]  # (adapter name, scale) per transformer
    try:
        for index, adapter in enumerate(adapters):
            name = f"task_lora_{index}"
            state = load_file(adapter.path)
            for position in range(len(experts)):
                if adapter.expert not in (None, position):
                    continue
                # diffusers loads into transformer_2 only when asked to (Wan2.2-A14B's second expert)
                pipe.load_lora_weights(dict(state), adapter_name=name, load_into_transformer_2=position == 1)
                on_expert[position].append((name, adapter.scale))
        for transformer, loaded in zip(experts, on_expert):
            if loaded:
                transformer.set_adapters([n for n, _ in loaded], weights=[s for _, s in loaded])
        yield
    finally:
        for transformer, loaded in zip(experts, on_expert):
            if loaded:
                transformer.delete_adapters([n for n, _ in loaded])


def _experts(pipe) -> list:
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]
