"""Enabling the step cache on a pipeline's denoisers, and recording what it decides on every pass.

What the seed calls a "speculative decoder" is, in this studio, a *step cache* on the video
transformer. For every transformer forward pass (one per denoising step and CFG branch):

- **draft**: the first transformer block runs; its residual (output - input) is the cheap
  prediction of how much this pass differs from the last fully computed one;
- **verify**: the relative mean absolute change of that residual against the residual stored at
  the last fully computed pass of the same CFG branch,
  ``mean|r_now - r_last| / mean|r_last|``, is compared with the level's threshold;
- **accept** (below the threshold): the remaining blocks are *not* run; the pass reuses the
  residual the remaining blocks added last time (``hidden + cached_tail_residual``);
- **reject** (above): the remaining blocks run and the cache is refreshed.

This is diffusers' ``FirstBlockCacheConfig`` (``diffusers/hooks/first_block_cache.py``), enabled
with ``transformer.enable_cache(config)`` on ``pipe.transformer`` and, for Wan2.2-A14B, on
``pipe.transformer_2`` (each expert keeps its own cache). WanPipeline wraps the two CFG passes
in ``cache_context("cond")`` / ``cache_context("uncond")``, so each branch compares against its
own history.

The level decides the threshold (``studio.engine.step_cache.levels``). While a run denoises,
``DecoderRecorder`` keeps one ``PassRecord`` per pass (tokens, step, branch, the decision, the
draft and verify times); ``studio.engine.step_cache.stats`` turns them into the task's figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from studio.engine.step_cache.levels import CacheLevel, cache_level
from studio.engine.step_cache.stats import DecoderStats, PassRecord, summarize

log = logging.getLogger(__name__)


def _clock(tensor: torch.Tensor | None = None) -> float:
    # On CUDA, synchronise first so queued GPU work is not billed to the wrong phase (draft/verify).
    if tensor is not None and tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)
    return time.perf_counter()


def _hidden_states(args: tuple, kwargs: dict) -> torch.Tensor | None:
    value = kwargs.get("hidden_states", args[0] if args else None)
    return value if isinstance(value, torch.Tensor) else None


class DecoderRecorder:
    """Observes the denoisers during one run: a pass record per transformer forward, with the
    FirstBlockCache decision, the draft time and the verify time."""

    def __init__(self, level: CacheLevel, pipe):
        self.level = level
        self.pipe = pipe
        self.passes: list[PassRecord] = []
        self._current: PassRecord | None = None

    # instrumentation callbacks ----------------------------------------------------------------

    def _on_pass(self, expert: int, patch_size: tuple[int, int, int]):
        def pre_hook(module, args, kwargs):
            hidden = _hidden_states(args, kwargs)
            tokens = 0
            if hidden is not None and hidden.ndim == 5:
                b, _c, f, h, w = hidden.shape
                pt, ph, pw = patch_size
                tokens = b * (f // pt) * (h // ph) * (w // pw)
            step = getattr(self.pipe.scheduler, "step_index", None)  # None before the first step()
            self._current = PassRecord(expert=expert, step=step if step is not None else 0, tokens=tokens)
            self.passes.append(self._current)
        return pre_hook

    def _on_draft_start(self, module, args):
        if self._current is not None:
            self._current._draft_started = _clock(args[0] if args and isinstance(args[0], torch.Tensor) else None)

    def _wrap_decision(self, hook) -> None:
        """Time and record FBCHeadBlockHook's decision (instance attribute, removed with the hook)."""
        decide = hook._should_compute_remaining_blocks
        recorder = self

        @torch.compiler.disable
        def timed_decision(residual: torch.Tensor) -> bool:
            record = recorder._current
            state = hook.state_manager.get_state()
            compares = state.head_block_residual is not None
            started = _clock(residual)
            should_compute = decide(residual)
            ended = _clock(residual)
            if record is not None:
                context = hook.state_manager._context
                if context is not None:
                    record.branch = context.name
                    if context.step_index is not None:
                        record.step = int(context.step_index)
                record.computed = bool(should_compute)
                if record._draft_started is not None:
                    record.draft_seconds = started - record._draft_started
                record.verify_seconds = ended - started if compares else None
            return should_compute

        hook._should_compute_remaining_blocks = timed_decision

    # summary ----------------------------------------------------------------------------------

    def stats(self, step_seconds: list[float], baseline: list[float] | None = None) -> DecoderStats:
        """The run's stats, given the engine's per-step times (``RunOutput.step_seconds``) and
        the measured denoising times of earlier ``off`` runs of the same shape (``BASELINES``)."""
        return summarize(self.level, self.passes, step_seconds, baseline)


def denoisers(pipe) -> list[torch.nn.Module]:
    """The pipeline's transformers: ``transformer`` and, for Wan2.2-A14B, ``transformer_2``."""
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]


@contextmanager
def apply(pipe, level: str) -> Iterator[DecoderRecorder]:
    """Run the body with ``level``'s step cache on every denoiser of ``pipe``, recording stats.

    On exit (normal, cancelled or failed) the cache is disabled and every instrumentation hook
    removed, so the cached pipeline object is clean for the next task. Call it while holding the
    GPU lock (the pipeline object is shared). ``off`` enables nothing; it only counts passes.
    """
    spec = cache_level(level)
    recorder = DecoderRecorder(spec, pipe)
    handles: list[Any] = []
    enabled: list[torch.nn.Module] = []
    try:
        for expert, model in enumerate(denoisers(pipe)):
            patch = tuple(model.config.patch_size)
            handles.append(model.register_forward_pre_hook(recorder._on_pass(expert, patch), with_kwargs=True))
            config = spec.config()
            if config is None:
                continue
            if model.is_cache_enabled:
                raise RuntimeError(f"a step cache ({type(model._cache_config).__name__}) is already enabled on "
                                   f"the pipeline's denoiser; disable it before using acceleration={level!r}")
            model.enable_cache(config)
            enabled.append(model)
            _instrument_first_block_cache(model, recorder, handles)
        yield recorder
    finally:
        for handle in handles:
            handle.remove()
        for model in enabled:
            model.disable_cache()


def _instrument_first_block_cache(model: torch.nn.Module, recorder: DecoderRecorder, handles: list) -> None:
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK

    head = model.blocks[0]
    hook = HookRegistry.check_if_exists_or_initialize(head).get_hook(_FBC_LEADER_BLOCK_HOOK)
    if hook is None:  # diffusers changed where the decision lives: run, but without stats
        log.warning("FirstBlockCache head hook not found on %s.blocks[0]; decoder stats unavailable",
                    type(model).__name__)
        return
    recorder._wrap_decision(hook)
    handles.append(head.register_forward_pre_hook(recorder._on_draft_start))

