"""Approximate caching of denoising states (NIRVANA, Agarwal et al., NSDI'24).

A batch with ``enable_similarity_caching`` keeps, for each finished run, its latents after a
few early steps. A later prompt whose text is *near-identical* starts from the cached state of
the most similar earlier prompt and skips those steps: the early steps mostly fix layout and
colour, which near-identical prompts share.

Similarity is the cosine of the *pooled text embeddings*: the mean of the text encoder's output
over the prompt's real tokens (Wan's encoder zeroes the padding rows), L2-normalised. How many
steps a match may skip grows with the similarity (``SKIP_LEVELS``):

    cosine >= 0.97 -> skip 40% of the steps,  >= 0.93 -> 30%,  >= 0.90 -> 20%,  below: no reuse

These thresholds were set on the offline tiny model's encoder (where rewordings of one prompt
score 0.84-0.93 and unrelated prompts 0.50-0.81); a real UMT5 encoder spreads prompts
differently (its pooled embeddings of unrelated prompts are similar too), so they are a
property of the encoder, not universal constants. Each model's levels live in its catalog
entry (``ModelSpec.similarity_skip_levels``); a model without calibrated levels runs batches
without similarity caching, and the batch says so (``studio.genius.batch.submit``). README,
"Calibrating similarity caching", says how to calibrate a model.

Only states of the same owner (API key), model, size, frame count, steps, guidance and
acceleration are reused: anything else changes the meaning of "step k". An *equal* prompt with a
*different* seed is not reused either: asking again with another seed asks for another
variation, which a shared early state would largely erase (equal prompt and seed: reused).

Resuming a prompt from its *own* cached state reproduces its full run exactly with first-order
samplers (FlowMatch Euler, as in the tiny model); with multistep samplers (Wan's UniPC) the
sampler's history restarts, which is part of the approximation.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from studio.models.catalog import TINY, get_spec

# (minimum cosine, share of steps skipped): the tiny model's calibrated levels, the default of
# the functions below (pass a model's own ``levels`` for another calibrated model; batches on
# models without calibrated levels never get here).
SKIP_LEVELS = get_spec(TINY).similarity_skip_levels


def similarity_calibrated(model_id: str) -> bool:
    """Whether ``model_id``'s similarity levels were calibrated on its own text encoder."""
    return get_spec(model_id).similarity_calibrated


def pooled_text(embeds: torch.Tensor) -> torch.Tensor:
    """``[n, L, D]`` prompt embeddings -> ``[n, D]`` unit vectors: mean over non-padding tokens."""
    real = (embeds.abs().sum(-1) > 0).to(embeds.dtype)  # [n, L]
    summed = (embeds * real[..., None]).sum(1)
    mean = summed / real.sum(1, keepdim=True).clamp(min=1)
    return torch.nn.functional.normalize(mean.float(), dim=-1).cpu()


def capture_steps(num_inference_steps: int, levels: tuple = SKIP_LEVELS) -> list[int]:
    """After which steps a run's state is kept: one per skip level."""
    return sorted({_skip(num_inference_steps, share) for _, share in levels} - {0})


def _skip(num_inference_steps: int, share: float) -> int:
    return int(num_inference_steps * share)


def reusable(cosine: float, prompt: str, seed: int, other_prompt: str, other_seed: int,
             levels: tuple = SKIP_LEVELS) -> bool:
    """Whether a run of ``other_prompt`` may lend its early states to ``prompt``."""
    if prompt == other_prompt and seed != other_seed:
        return False
    return cosine >= levels[-1][0]


@dataclass(frozen=True)
class StateMatch:
    """A cached state a new prompt starts from."""

    source_task_id: str
    cosine: float
    skipped_steps: int
    latents: torch.Tensor  # [1, C, T, h, w] after ``skipped_steps`` steps

    def to_dict(self) -> dict:
        return {"source_task_id": self.source_task_id, "cosine": round(self.cosine, 4),
                "skipped_steps": self.skipped_steps}


@dataclass
class _Entry:
    task_id: str
    prompt: str
    seed: int
    pooled: torch.Tensor  # [D]
    states: dict[int, torch.Tensor]  # steps done -> latents [1, C, T, h, w] on the CPU


class DenoisingStateCache:
    """LRU of recent runs' early states per shape key (used under the GPU lock only).

    ``capacity`` bounds memory: a 480p 81-frame Wan latent is ~8 MB per state, three states a run.
    """

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self._entries: OrderedDict[tuple, list[_Entry]] = OrderedDict()

    def add(self, key: tuple, task_id: str, prompt: str, seed: int, pooled: torch.Tensor,
            states: dict[int, torch.Tensor]) -> None:
        if not states:
            return
        entries = self._entries.setdefault(key, [])
        entries.append(_Entry(task_id, prompt, seed, pooled, states))
        self._entries.move_to_end(key)
        while sum(len(e) for e in self._entries.values()) > self.capacity:
            oldest_key = next(iter(self._entries))
            self._entries[oldest_key].pop(0)
            if not self._entries[oldest_key]:
                del self._entries[oldest_key]

    def match(self, key: tuple, pooled: torch.Tensor, prompt: str, seed: int,
              num_inference_steps: int, levels: tuple = SKIP_LEVELS) -> StateMatch | None:
        """The most similar reusable cached run's state for ``pooled``, at the deepest step its
        similarity allows, or None."""
        best: tuple[float, _Entry] | None = None
        for entry in self._entries.get(key, ()):
            cosine = float(entry.pooled @ pooled)
            if reusable(cosine, prompt, seed, entry.prompt, entry.seed, levels) and (best is None or cosine > best[0]):
                best = (cosine, entry)
        if best is None:
            return None
        cosine, entry = best
        for minimum, share in levels:
            steps = _skip(num_inference_steps, share)
            if cosine >= minimum and steps in entry.states:
                return StateMatch(entry.task_id, cosine, steps, entry.states[steps])
        return None


@contextmanager
def start_at_step(scheduler, step: int):
    """Make the pipeline's sampler begin after ``step`` steps: its schedule (timesteps and
    sigmas, which the pipeline and our preview index alike) is cut after ``set_timesteps``."""
    if step <= 0:
        yield
        return
    original = scheduler.set_timesteps

    def set_timesteps(*args, **kwargs):
        original(*args, **kwargs)
        scheduler.timesteps = scheduler.timesteps[step:]
        scheduler.sigmas = scheduler.sigmas[step:]

    scheduler.set_timesteps = set_timesteps
    try:
        yield
    finally:
        del scheduler.set_timesteps  # back to the class's method
