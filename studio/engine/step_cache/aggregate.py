"""Totals of every completed task's step-cache stats since this process started.

Served by the Speculative Decoder's stats route (``studio.genius.decoder.stats``); what each
per-task figure means is in ``studio.engine.step_cache.stats``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from studio.engine.step_cache.levels import CACHE_LEVELS, LEVELS
from studio.engine.step_cache.stats import DecoderStats


@dataclass
class _Totals:
    tasks: int = 0
    steps: int = 0
    passes: int = 0
    passes_reused: int = 0
    total_tokens: int = 0
    accepted_tokens: int = 0
    draft_seconds: float = 0.0
    draft_passes: int = 0
    verify_seconds: float = 0.0
    verify_passes: int = 0
    denoise_seconds: float = 0.0
    uncached_estimate_seconds: float = 0.0
    uncached_seconds: float = 0.0   # measured where a task had an A/B baseline, else its estimate
    cached_tasks: int = 0
    measured_tasks: int = 0

    def add(self, s: DecoderStats) -> None:
        self.tasks += 1
        self.steps += s.steps
        self.passes += s.passes
        self.passes_reused += s.passes_reused
        self.total_tokens += s.total_tokens
        self.accepted_tokens += s.accepted_tokens
        self.draft_seconds += s.average_draft_time_ms / 1000 * s.draft_passes
        self.draft_passes += s.draft_passes
        self.verify_seconds += s.average_verify_time_ms / 1000 * s.verify_passes
        self.verify_passes += s.verify_passes
        self.denoise_seconds += s.denoise_seconds
        self.uncached_estimate_seconds += s.uncached_estimate_seconds
        self.uncached_seconds += s.uncached_seconds
        if s.method is not None:
            self.cached_tasks += 1
            self.measured_tasks += s.uncached_measured_seconds is not None

    def basis(self) -> str:
        """Whether the speedup is measured (every cached task had an A/B baseline) or not."""
        if not self.cached_tasks:
            return "off: no cached task counted"
        if self.measured_tasks == self.cached_tasks:
            return "measured"
        if not self.measured_tasks:
            return "estimate"
        return f"mixed: {self.measured_tasks} of {self.cached_tasks} cached tasks measured, the rest estimated"

    def view(self) -> dict[str, Any]:
        return {
            "total_tokens": self.total_tokens,
            "accepted_tokens": self.accepted_tokens,
            "acceptance_rate": round(self.accepted_tokens / self.total_tokens, 6) if self.total_tokens else 0.0,
            "speedup_factor": round(self.uncached_seconds / self.denoise_seconds, 4)
            if self.denoise_seconds > 0 else 1.0,
            "speedup_basis": self.basis(),
            "measured_tasks": self.measured_tasks,
            "average_draft_time_ms": round(1000 * self.draft_seconds / self.draft_passes, 4) if self.draft_passes else 0.0,
            "average_verify_time_ms": round(1000 * self.verify_seconds / self.verify_passes, 4)
            if self.verify_passes else 0.0,
            "tasks": self.tasks,
            "steps": self.steps,
            "passes": self.passes,
            "passes_reused": self.passes_reused,
            "draft_passes": self.draft_passes,
            "verify_passes": self.verify_passes,
            "denoise_seconds": round(self.denoise_seconds, 4),
            "uncached_estimate_seconds": round(self.uncached_estimate_seconds, 4),
        }


class DecoderStatsAggregate:
    """Totals of every completed task's ``DecoderStats`` since this process started.

    Thread-safe. Kept in memory only: a restart starts from zero (``since`` says when). Ratios
    are ratios of totals (token- and time-weighted), not means of per-task ratios:
    ``acceptance_rate`` = sum accepted / sum total tokens, ``speedup_factor`` = sum of uncached
    times (each task's measured A/B baseline where it had one, else its in-run estimate; see
    ``speedup_basis``) / sum of actual denoising times, averages over all timed drafts / comparisons.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since = datetime.now(timezone.utc)
        self._all = _Totals()
        self._by_level = {level: _Totals() for level in LEVELS}

    def add(self, stats: DecoderStats) -> None:
        with self._lock:
            self._all.add(stats)
            self._by_level.setdefault(stats.level, _Totals()).add(stats)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            body = self._all.view()
            body["since"] = self._since.isoformat(timespec="seconds")
            body["by_level"] = {level: totals.view() for level, totals in self._by_level.items()}
        body["levels"] = {name: {"method": lv.method, "threshold": lv.threshold, "rationale": lv.rationale}
                          for name, lv in CACHE_LEVELS.items()}
        return body

