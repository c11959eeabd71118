"""The seed's SLA levels and their thresholds: which metric is compared how with which limit.

Pure data and three small functions; no clock, no I/O. Everything else in the package names a
metric by one of ``METRICS`` and asks this module whether a value breaks a level.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.errors import InvalidRequest

__all__ = ["SlaLevel", "SLA_LEVELS", "DEFAULT_LEVEL", "UPTIME", "LATENCY_P99", "ERROR_RATE", "METRICS",
           "level_named", "threshold", "breaks"]


@dataclass(frozen=True)
class SlaLevel:
    """One row of the seed's SLA table."""

    name: str
    uptime_percent: float       # at least
    latency_p99_ms: float       # at most
    error_rate_percent: float   # at most


SLA_LEVELS: dict[str, SlaLevel] = {level.name: level for level in (
    SlaLevel("best_effort", 95.0, 30_000.0, 5.0),
    SlaLevel("standard", 99.0, 5_000.0, 1.0),
    SlaLevel("premium", 99.9, 1_000.0, 0.1),
    SlaLevel("critical", 99.99, 200.0, 0.01),
)}
DEFAULT_LEVEL = "standard"

UPTIME, LATENCY_P99, ERROR_RATE = "uptime_percent", "latency_p99_ms", "error_rate_percent"
METRICS = (UPTIME, LATENCY_P99, ERROR_RATE)


def level_named(name: str | None, default: str = DEFAULT_LEVEL) -> SlaLevel:
    """The level called ``name`` (``default`` when empty); ``InvalidRequest`` (400) otherwise."""
    key = (name or default).strip().lower()
    if key not in SLA_LEVELS:
        raise InvalidRequest(f"level must be one of {', '.join(SLA_LEVELS)}; got {key[:40]!r}")
    return SLA_LEVELS[key]


def threshold(level: SlaLevel, metric: str) -> float:
    """The level's limit for ``metric`` (uptime: at least; latency and error rate: at most)."""
    return {UPTIME: level.uptime_percent, LATENCY_P99: level.latency_p99_ms,
            ERROR_RATE: level.error_rate_percent}[metric]


def breaks(level: SlaLevel, metric: str, value: float) -> bool:
    """Whether ``value`` of ``metric`` is beyond the level's limit (uptime below, the others above)."""
    limit = threshold(level, metric)
    return value < limit if metric == UPTIME else value > limit
