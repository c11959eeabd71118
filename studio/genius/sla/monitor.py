"""``SlaMonitor``: the one object the app holds, composing the parts of ``studio.genius.sla``.

It owns no bookkeeping of its own beyond the plot history: requests and generations go to the
``LatencyWindow`` and the ``SlaExporter``, runs to the ``UptimeLedger``, threshold crossings to
the ``ViolationLog``. It evaluates a level from their numbers (``status``), runs the background
thread (heartbeat + plot sample) and keeps the public methods callers used before the split.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from studio.db import Database
from studio.genius.sla.exporter import SlaExporter
from studio.genius.sla.latency import LatencyWindow
from studio.genius.sla.levels import DEFAULT_LEVEL, ERROR_RATE, LATENCY_P99, UPTIME, breaks, level_named
from studio.genius.sla.schema import HistoryPoint, SlaStatus, SlaViolation
from studio.genius.sla.store import SlaStore
from studio.genius.sla.uptime import UptimeLedger
from studio.genius.sla.violations import ViolationLog

log = logging.getLogger("studio.genius.sla")  # the name its messages had before the split

__all__ = ["SlaMonitor", "cuda_memory_bytes"]


def cuda_memory_bytes() -> int:
    """Bytes of GPU memory PyTorch has allocated on all CUDA devices; 0 on CPU-only machines.

    Reads torch only if the app already imported it, and never initialises CUDA itself."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return 0
        return int(sum(torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count())))
    except Exception:  # a broken driver must not break the monitor
        return 0


def _safe_int(fn: Callable[[], int] | None) -> int:
    if fn is None:
        return 0
    try:
        value = fn()
        return int(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else 0
    except Exception:  # a gauge callback must not break a scrape or a plot
        log.debug("SLA monitor callback failed", exc_info=True)
        return 0


class SlaMonitor:
    """Thread-safe SLA bookkeeping for one process. ``start()`` it, feed it, ``stop()`` it.

    ``record`` (hot path, called for every HTTP response) touches one per-second bucket of the
    window and two Prometheus children: no I/O. Everything else (percentiles, SQLite) happens
    when someone asks.

    Args:
        database: the studio's ``Database`` (or a SQLite file, which the monitor opens itself);
            the history lives in its ``sla_uptime`` and ``sla_violations`` tables.
        window_seconds: sliding window of the latency percentiles and the error rate.
        throughput_seconds: window of ``current_throughput_rps``.
        default_level: the level evaluated in the background (``ECHOEL_SLA_LEVEL``).
        queue_depth: callable giving the number of pending + running tasks (0 if None).
        gpu_memory: callable giving GPU memory in bytes (``cuda_memory_bytes`` if None).
        workers: callable giving the live Celery workers (``studio.jobs.workers``; none if None).
        ready_by_queue: callable giving the claimable pending tasks per Celery queue.
        clock: wall-clock source (``time.time``); tests inject their own.
        heartbeat_seconds / sample_seconds: background thread periods.
        uptime_window_seconds: the uptime period's maximum length (30 days).
        history_points: samples kept for the plots (720 x 5 s = 1 hour).
    """

    def __init__(self, database: Database | Path | str, window_seconds: float = 300, *, throughput_seconds: int = 60,
                 default_level: str = DEFAULT_LEVEL, queue_depth: Callable[[], int] | None = None,
                 gpu_memory: Callable[[], int] | None = None, workers: Callable[[], list] | None = None,
                 ready_by_queue: Callable[[], dict[str, int]] | None = None, clock: Callable[[], float] = time.time,
                 heartbeat_seconds: float = 15.0, sample_seconds: float = 5.0,
                 uptime_window_seconds: float = 30 * 86400, history_points: int = 720,
                 max_samples_per_second: int = 2000, max_violations: int = 1000,
                 violations_lookback_seconds: float = 86400, generation_samples: int = 200):
        self.default_level = level_named(default_level).name
        self.heartbeat_seconds = heartbeat_seconds
        self.sample_seconds = sample_seconds
        self._clock = clock
        self._queue_depth = queue_depth
        self._gpu_memory = gpu_memory or cuda_memory_bytes
        self._workers = workers
        self._ready_by_queue = ready_by_queue

        self.window = LatencyWindow(window_seconds, throughput_seconds=throughput_seconds,
                                    max_samples_per_second=max_samples_per_second,
                                    generation_samples=generation_samples, clock=clock)
        self._store = SlaStore(database)
        self.ledger = UptimeLedger(self._store, window_seconds=uptime_window_seconds, clock=clock)
        self.violation_log = ViolationLog(self._store, max_violations=max_violations,
                                          lookback_seconds=violations_lookback_seconds, clock=clock)
        self.exporter = SlaExporter(self)

        self._history_lock = threading.Lock()
        self._history: deque[HistoryPoint] = deque(maxlen=history_points)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # the one setting callers read, owned by the latency window
    @property
    def window_seconds(self) -> float:
        return self.window.window_seconds

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, background: bool = True) -> None:
        """Record this process's start in the uptime history; with ``background``, start the
        thread that heartbeats and samples the plots."""
        self.ledger.start()
        if background and self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, name="sla-monitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread, write the last heartbeat (a clean stop) and close the connection."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.ledger.stop()
        self._store.close()

    def heartbeat(self, clean_stop: bool = False) -> None:
        """Mark this process as up until now."""
        self.ledger.heartbeat(clean_stop)

    def _loop(self) -> None:
        next_beat = 0.0
        while not self._stopping.is_set():
            try:
                if time.monotonic() >= next_beat:
                    self.heartbeat()
                    next_beat = time.monotonic() + self.heartbeat_seconds
                self.sample()
            except Exception:  # one failed sample must not end the heartbeats
                log.exception("SLA monitor sample failed")
            self._stopping.wait(self.sample_seconds)

    # -- recording (hot path) ---------------------------------------------------------------

    def record(self, latency_seconds: float, status: int, route: str = "other") -> None:
        """One HTTP response: its time to first byte, status code and route label."""
        self.window.record(latency_seconds, status)
        self.exporter.observe_request(latency_seconds, status, route)

    def record_generation(self, seconds: float, ok: bool = True, kind: str = "t2v") -> None:
        """One finished task: its wall time from claim to completion (or failure). Cancelled
        tasks should not be recorded: their time says nothing about the service."""
        self.exporter.observe_generation(seconds, ok, kind)
        self.window.record_generation(seconds, ok)

    # -- reading ----------------------------------------------------------------------------

    def status(self, level: str | None = None, now: float | None = None) -> SlaStatus:
        """The seed's SLA status for ``level`` (the default level when None). Evaluating a
        level records its new violations. ``InvalidRequest`` for an unknown level."""
        target = level_named(level, self.default_level)
        now = self._clock() if now is None else now
        window = self.window.snapshot(now)
        p50, p95, p99 = window.latency_ms()
        error_rate = window.error_rate_percent
        uptime = self.uptime_percent(now)
        values = {UPTIME: uptime, LATENCY_P99: p99, ERROR_RATE: error_rate}
        self.violation_log.evaluate(target, values, now)
        return SlaStatus(
            target_level=target.name,
            meets_sla=all(not breaks(target, metric, value) for metric, value in values.items()),
            uptime_percent=round(uptime, 4),
            latency_p50_ms=round(p50, 3),
            latency_p95_ms=round(p95, 3),
            latency_p99_ms=round(p99, 3),
            error_rate_percent=round(error_rate, 4),
            current_throughput_rps=round(window.throughput_rps, 3),
            violations=self.violations(target.name, now=now),
        )

    def details(self, now: float | None = None) -> dict:
        """What the seed's body leaves out: counts in the window, refusals, totals since start,
        the uptime period, and generation stats."""
        now = self._clock() if now is None else now
        window = self.window.snapshot(now)
        return {"window_seconds": self.window_seconds, "requests_in_window": window.count,
                "errors_in_window": window.errors, "throttled_in_window": window.throttled,
                "unavailable_in_window": window.unavailable, "latency_samples": len(window.latencies),
                "totals_since_start": self.window.totals(), "uptime": self.uptime_details(now),
                "generation": self.generation_stats()}

    def generation_stats(self) -> dict:
        """Count, failures and nearest-rank p50/p95 (seconds) of the last finished tasks."""
        return self.window.generation_stats()

    def uptime_details(self, now: float | None = None) -> dict:
        """The uptime period's numbers (see ``UptimeLedger.details``)."""
        return self.ledger.details(now)

    def uptime_percent(self, now: float | None = None) -> float:
        """Uptime over the period, in percent, planned downtime left out."""
        return self.ledger.percent(now)

    def violations(self, level: str | None = None, limit: int = 100, now: float | None = None) -> list[SlaViolation]:
        """Recorded violations of ``level`` (all levels when None) from the lookback period,
        newest first."""
        return self.violation_log.recent(level, limit, now)

    # -- plots and gauges -------------------------------------------------------------------

    def now(self) -> float:
        """The monitor's clock (``time.time`` unless a test injected another)."""
        return self._clock()

    def queue_depth(self) -> int:
        """Pending and running tasks (0 without a callback or when it fails)."""
        return _safe_int(self._queue_depth)

    def gpu_memory_bytes(self) -> int:
        """GPU memory in bytes (0 when the callback fails)."""
        return _safe_int(self._gpu_memory)

    def workers(self) -> list:
        """The live Celery workers (empty without the callback, or when it fails)."""
        try:
            return list(self._workers()) if self._workers is not None else []
        except Exception:
            return []

    def ready_by_queue(self) -> dict[str, int]:
        """Claimable pending tasks per Celery queue (empty without the callback, or when it fails)."""
        try:
            return dict(self._ready_by_queue()) if self._ready_by_queue is not None else {}
        except Exception:
            return {}

    def sample(self, now: float | None = None) -> HistoryPoint:
        """Evaluate the default level and append one point to the plot history."""
        now = self._clock() if now is None else now
        status = self.status(self.default_level, now=now)
        point = HistoryPoint(t=now, p50_ms=status.latency_p50_ms, p95_ms=status.latency_p95_ms,
                             p99_ms=status.latency_p99_ms, throughput_rps=status.current_throughput_rps,
                             error_rate_percent=status.error_rate_percent, queue_depth=self.queue_depth(),
                             gpu_memory_bytes=self.gpu_memory_bytes())
        with self._history_lock:
            self._history.append(point)
        return point

    def history(self) -> list[HistoryPoint]:
        """The plot samples, oldest first."""
        with self._history_lock:
            return list(self._history)

    def prometheus_text(self) -> bytes:
        """The registry in Prometheus' text format (``CONTENT_TYPE_LATEST``)."""
        return self.exporter.text()
