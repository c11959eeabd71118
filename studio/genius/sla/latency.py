"""The rolling window of HTTP requests (latency, errors, refusals, throughput) and of finished generations.

In memory only: no SQLite, no Prometheus, no SLA levels. ``record`` is the hot path (one per HTTP
response); ``snapshot`` is what the status, the plots and the exporter read. Definitions
(nearest-rank percentiles, reservoir sampling per second, complete-second throughput) are in the
``studio.genius.sla`` package docstring.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LatencyWindow", "WindowSnapshot", "percentiles"]


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> list[float]:
    """Nearest-rank percentiles of ``values`` (0.0 each when empty): the ``ceil(q/100*n)``-th
    smallest value. numpy's ``inverted_cdf`` method is exactly this definition."""
    if len(values) == 0:
        return [0.0 for _ in qs]
    return [float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), qs, method="inverted_cdf")]


class _Bucket:
    """The requests of one wall-clock second."""

    __slots__ = ("second", "count", "errors", "throttled", "unavailable", "latencies")

    def __init__(self, second: int):
        self.second = second
        self.count = 0
        self.errors = 0
        self.throttled = 0
        self.unavailable = 0
        self.latencies: list[float] = []


@dataclass(frozen=True)
class WindowSnapshot:
    """The requests of the window at one moment: latency samples (seconds) and exact counts."""

    latencies: list[float]
    count: int
    errors: int
    throttled: int
    unavailable: int
    throughput_rps: float

    def latency_ms(self) -> tuple[float, float, float]:
        """Nearest-rank p50, p95 and p99 of the window, in milliseconds (0 with no request)."""
        p50, p95, p99 = (1000.0 * v for v in percentiles(self.latencies))
        return p50, p95, p99

    @property
    def error_rate_percent(self) -> float:
        """5xx responses / all responses, in percent (0 with no request)."""
        return 100.0 * self.errors / self.count if self.count else 0.0


class LatencyWindow:
    """Thread-safe sliding window of request outcomes, one bucket per wall-clock second.

    Args:
        window_seconds: span of the latency percentiles and the error rate.
        throughput_seconds: span of the throughput (complete seconds only).
        max_samples_per_second: latencies kept per second (a uniform sample beyond it).
        generation_samples: finished tasks kept for ``generation_stats``.
        clock: wall-clock source (``time.time``); tests inject their own.
    """

    def __init__(self, window_seconds: float = 300, *, throughput_seconds: int = 60,
                 max_samples_per_second: int = 2000, generation_samples: int = 200,
                 clock: Callable[[], float] = time.time):
        self.window_seconds = float(window_seconds)
        self.throughput_seconds = max(1, int(throughput_seconds))
        self.max_samples_per_second = max_samples_per_second
        self._clock = clock
        self._created = clock()  # throughput divides by the time run while shorter than its span
        self._lock = threading.Lock()
        self._buckets: deque[_Bucket] = deque()
        self._totals = {"requests": 0, "errors": 0, "throttled": 0, "unavailable": 0}
        self._generations: deque[tuple[float, float, bool]] = deque(maxlen=generation_samples)

    def record(self, latency_seconds: float, status: int) -> None:
        """One HTTP response: its time to first byte and status code. One lock, one bucket, no I/O."""
        second = int(self._clock())
        with self._lock:
            bucket = self._buckets[-1] if self._buckets else None
            if bucket is None or second > bucket.second:
                bucket = _Bucket(second)
                self._buckets.append(bucket)
                floor = second - self.window_seconds
                while self._buckets[0].second <= floor:
                    self._buckets.popleft()
            # (a clock that stepped back files the sample in the newest bucket)
            bucket.count += 1
            self._totals["requests"] += 1
            if len(bucket.latencies) < self.max_samples_per_second:
                bucket.latencies.append(latency_seconds)
            else:  # reservoir sampling: every request of the second is kept with equal probability
                j = random.randrange(bucket.count)
                if j < self.max_samples_per_second:
                    bucket.latencies[j] = latency_seconds
            if status >= 500:
                bucket.errors += 1
                self._totals["errors"] += 1
            if status == 429:
                bucket.throttled += 1
                self._totals["throttled"] += 1
            elif status == 503:
                bucket.unavailable += 1
                self._totals["unavailable"] += 1

    def record_generation(self, seconds: float, ok: bool = True) -> None:
        """One finished task: its wall time from claim to completion (or failure)."""
        with self._lock:
            self._generations.append((self._clock(), float(seconds), bool(ok)))

    def snapshot(self, now: float | None = None) -> WindowSnapshot:
        """The requests of the last ``window_seconds`` before ``now`` (the clock's now when None)."""
        now = self._clock() if now is None else now
        second = int(now)
        floor = now - self.window_seconds
        tp_first = second - self.throughput_seconds   # the last N *complete* seconds:
        chunks: list[list[float]] = []                # [second - N, second - 1]
        count = errors = throttled = unavailable = tp_count = 0
        with self._lock:
            for bucket in self._buckets:
                if bucket.second <= floor:
                    continue
                count += bucket.count
                errors += bucket.errors
                throttled += bucket.throttled
                unavailable += bucket.unavailable
                # the newest bucket may still grow (or be resampled) once the lock is released
                chunks.append(bucket.latencies[:] if bucket is self._buckets[-1] else bucket.latencies)
                if tp_first <= bucket.second < second:
                    tp_count += bucket.count
        latencies = [x for chunk in chunks for x in chunk]
        ran = max(1, min(self.throughput_seconds, int(now - self._created)))
        return WindowSnapshot(latencies, count, errors, throttled, unavailable, tp_count / ran)

    def totals(self) -> dict[str, int]:
        """Requests, errors, throttled and unavailable responses since the window was created."""
        with self._lock:
            return dict(self._totals)

    def generation_stats(self) -> dict:
        """Count, failures and nearest-rank p50/p95 (seconds) of the last finished tasks."""
        with self._lock:
            items = list(self._generations)
        ok = [seconds for _, seconds, good in items if good]
        p50, p95 = percentiles(ok, (50, 95))
        return {"tasks": len(items), "failed": sum(1 for *_, good in items if not good),
                "mean_seconds": round(float(np.mean(ok)), 3) if ok else 0.0,
                "p50_seconds": round(p50, 3), "p95_seconds": round(p95, 3),
                "max_seconds": round(max(ok), 3) if ok else 0.0}
