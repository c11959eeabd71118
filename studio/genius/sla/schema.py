"""The SLA monitor's answers: the seed's status body, a violation, a plot sample, and their time format.

Pydantic / dataclass shapes only; the numbers in them are computed by the other modules of
``studio.genius.sla`` (definitions in the package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from pydantic import BaseModel, Field

__all__ = ["SlaStatus", "SlaViolation", "HistoryPoint", "iso_utc"]


def iso_utc(ts: float) -> str:
    """The house timestamp format (as in webhook payloads), with milliseconds."""
    moment = datetime.fromtimestamp(ts, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class SlaViolation(BaseModel):
    """A metric that crossed the level's threshold."""

    timestamp: str = Field(description="When it crossed the threshold (UTC, ISO 8601)")
    metric: str = Field(description="uptime_percent, latency_p99_ms or error_rate_percent")
    value: float = Field(description="The metric's value at that moment, in the metric's unit")
    threshold: float = Field(description="The level's limit (uptime: at least; the others: at most)")
    level: str


class SlaStatus(BaseModel):
    """The seed's SLA status body. Definitions and formulas: ``studio.genius.sla``."""

    target_level: str = Field(description="best_effort, standard, premium or critical")
    meets_sla: bool = Field(description="uptime, p99 latency and error rate all within the level's limits")
    uptime_percent: float = Field(description="Up time / time since the first recorded start (at most 30 days), "
                                              "persisted: crashes count as downtime; planned downtime (from a "
                                              "clean stop to the next start) is left out and reported apart "
                                              "in the uptime details")
    latency_p50_ms: float = Field(description="Median time to first byte of the requests in the sliding window")
    latency_p95_ms: float
    latency_p99_ms: float
    error_rate_percent: float = Field(description="5xx responses / all responses in the window "
                                                  "(4xx are client errors, not service errors)")
    current_throughput_rps: float = Field(description="Requests per second over the last minute (complete seconds)")
    violations: list[SlaViolation] = Field(description="This level's threshold crossings of the last 24 h, "
                                                      "newest first")


@dataclass(frozen=True)
class HistoryPoint:
    """One sample for the Monitor tab's plots (taken every ``sample_seconds``)."""

    t: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_rps: float
    error_rate_percent: float
    queue_depth: int
    gpu_memory_bytes: int
