"""The one run context of every model path: load the model, run it, and on CUDA out-of-memory
evict it and end the run with ``VramExceeded`` (the worker runs the task again when a leaner
memory profile is left for the model).

Every path that runs a pipeline (text-to-video in the worker, and the features' model paths:
V2V, inpaint, lip-sync, scene shots and morphs) wraps its load *and* its whole use of the
model, including the lazy frame generators it hands to the encoder, in :func:`model_run`, so an
out-of-memory error anywhere in it frees the device the same way: the resident pipeline is
dropped (a half-finished run can leave it in an unknown state, and its memory is the only
memory the worker can give back) and the owner gets a ``VramExceeded`` naming the model, the
size it ran at, and what to try instead. The worker then keeps serving the next task.

The GPU lock is not taken here: the worker holds ``studio.engine.gpu.GPU_LOCK`` around each
task's whole run (it is not re-entrant, and a feature's run must not be able to forget it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from studio.errors import ModelUnavailable, VramExceeded

if TYPE_CHECKING:
    from studio.models.loader import LoadedModel, ModelCache

#: What a user can change when nothing more specific applies.
DEFAULT_ADVICE = "try a lower resolution, a shorter clip or a smaller model"


def seeded_generator(seed: int) -> torch.Generator:
    """The random generator every pipeline call takes: on the CPU, so that one seed draws the
    same initial noise whatever device runs the model (diffusers moves the noise over)."""
    return torch.Generator(device="cpu").manual_seed(seed)


def untrained_note(model_id: str, what: str = "its output is") -> str:
    """The note every result made by an untrained offline model carries; ``what`` names the part
    it made when that is not the whole output (e.g. "its morph frames are")."""
    return f"{model_id} is an untrained offline model: {what} noise-like by design"


@dataclass
class ModelRun:
    """One model run in progress: the loaded model, and the size it generates at once the
    caller knows it (named in the out-of-memory message)."""

    model_id: str
    advice: str
    model: "LoadedModel | None" = None
    size: tuple[int, int] | None = None  # (width, height) the model generates at

    def notes(self) -> list[str]:
        """What every result of this run must say about its model (today: that it is untrained)."""
        return [] if self.model is None or self.model.spec.trained else [untrained_note(self.model_id)]

    def out_of_memory(self, leaner_profile: str | None) -> VramExceeded:
        """The error the owner of an out-of-memory run gets; ``leaner_profile``: the memory
        profile the model's next load takes, if a leaner one is left."""
        at = f" at {self.size[0]}x{self.size[1]}" if self.size else ""
        advice = self.advice
        if leaner_profile is not None:  # what a task that has no runs left says (the worker retries the others)
            advice = (f"its next load uses the leaner {leaner_profile} memory profile, so the same request may "
                      f"run now; else {advice}")
        return VramExceeded(f"the GPU ran out of memory running {self.model_id}{at}; {advice}", leaner_profile)


@contextmanager
def model_run(models: "ModelCache | None", model_id: str, *, advice: str = DEFAULT_ADVICE,
              on_progress: Callable[[float, str], None] | None = None) -> Iterator[ModelRun]:
    """Load ``model_id`` from ``models`` (reporting through ``on_progress``) and yield the run;
    a ``torch.OutOfMemoryError`` raised while loading or inside the block evicts the resident
    model (``ModelCache.out_of_memory``: its next load takes a leaner memory profile, where one
    is left) and becomes ``VramExceeded`` (naming that profile, else ending with ``advice``).
    Other errors pass through unchanged. ``ModelUnavailable`` when there is no model cache to
    load from."""
    if models is None:
        raise ModelUnavailable(f"this worker has no model cache to run {model_id}")
    run = ModelRun(model_id, advice)
    try:
        run.model = models.get(model_id, on_progress or (lambda fraction, message: None))
        yield run
    except torch.OutOfMemoryError:
        raise run.out_of_memory(models.out_of_memory(model_id)) from None
