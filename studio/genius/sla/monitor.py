"""SLA monitor: request latency, errors, throughput and uptime, compared with the seed's SLA levels.

Everything here is measured, nothing is assumed. The monitor is fed by the HTTP middleware
(``studio.api.metrics_middleware``: one ``record`` per HTTP response) and by the task worker
(one ``record_generation`` per finished task); it answers ``GET /v1/genius/sla/status``, the
Prometheus exposition at ``/metrics`` and the Monitor tab.

Definitions (``W`` = ``window_seconds``, 300 by default; ``N`` = ``throughput_seconds``, 60):

- **Latency** of a request: seconds from the moment the request reached the app to the moment
  the response headers were sent (time to first byte). Streams (Gradio's server-sent events,
  file downloads) are therefore measured by how long the server took to start answering, not
  by how long the client kept the stream open. Websockets are not HTTP requests and are not
  counted.
- **p50 / p95 / p99**: nearest-rank percentiles of the latencies recorded in the last ``W``
  seconds: sort the ``n`` latencies, ``pXX`` is the ``ceil(XX/100 * n)``-th smallest. Each
  value is a latency that was actually observed. The window is kept as one bucket per second;
  a second keeps every latency up to ``max_samples_per_second`` (2000, far above the 300 req/s
  load target) and a uniform random sample of that size beyond it (reservoir sampling), so
  memory stays bounded while the counts stay exact. With no request in the window the
  percentiles are 0.
- **Error rate**: ``100 * (responses with status >= 500) / (all responses)`` over the last
  ``W`` seconds. 4xx responses are the client's mistake (bad field, bad key, unknown task) and
  do **not** count as service errors. 503 (maintenance, model unavailable) is a 5xx and does
  count: the service did not serve. 429 (rate limited) and 503 are also counted separately as
  "refused" (``throttled`` / ``unavailable``), in ``details()`` and in
  ``echoel_http_requests_refused_total``, because they show load shedding.
- **Throughput**: requests in the last ``N`` complete seconds divided by ``N``; while the
  monitor has run for less than ``N`` seconds, divided by the complete seconds it has run
  (at least 1).
- **Uptime** (persisted): each process start inserts a row ``(started_at, last_seen)`` in the
  ``sla_uptime`` table of the studio's SQLite file; a heartbeat updates ``last_seen`` every
  ``heartbeat_seconds`` (15 s) and at a clean stop. The running process counts as up until
  now. With ``P = [max(first recorded start, now - uptime_window_seconds), now]`` (30 days by
  default, a monthly SLA period)::

      up      = |union of [started_at, last_seen] intervals within P|
      planned = the gaps (within P) that begin at a run's clean stop and end at the next start
      uptime_percent = 100 * up / (|P| - planned)

  A clean stop (SIGTERM, Ctrl-C: ``stop()`` marks the run ``clean_stop``) is an operator's
  planned stop, so the gap until the next start is *planned downtime*: it is reported on its
  own (``planned_down_seconds``, ``planned_stops`` in ``uptime_details``) and left out of the
  uptime ratio instead of reading as an outage. Every other gap (a crash, a kill, a machine that
  was off: no clean stop recorded) is unplanned downtime (``down_seconds``) and counts. A crash
  loses at most one heartbeat interval of up time. Before the first ``start()`` there is no
  history and uptime is 100.
- **Generation time** per task (load + denoise + decode/encode, from the worker) is kept apart
  from API latency: its own Prometheus histogram and ``generation_stats()`` over the last 200
  finished tasks. It is not part of the seed's SLA fields.
- **Violations**: whenever a level is evaluated (the default level every ``sample_seconds`` by
  the background thread, any level a client asks ``status`` for), each of its three metrics
  is compared with the level's threshold (uptime below, p99 above, error rate above). A
  violation is recorded when a metric *goes from* within its threshold *to* beyond it (edge
  triggered: a metric that stays broken is one violation, not one per check), with the
  timestamp, the metric, its value and the threshold. Violations are persisted in the
  ``sla_violations`` table (the newest 1000 are kept) and so survive restarts; ``status``
  returns those of the asked level from the last 24 hours, newest first (at most 100).
"""

from __future__ import annotations

import logging
import math
import random
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector
from pydantic import BaseModel, Field

from studio.errors import InvalidRequest

log = logging.getLogger(__name__)

__all__ = ["SLA_LEVELS", "DEFAULT_LEVEL", "SlaLevel", "SlaStatus", "SlaViolation", "HistoryPoint",
           "SlaMonitor", "cuda_memory_bytes", "percentiles", "CONTENT_TYPE_LATEST"]


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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sla_uptime (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    last_seen  REAL NOT NULL,
    clean_stop INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sla_violations (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        REAL NOT NULL,
    level     TEXT NOT NULL,
    metric    TEXT NOT NULL,
    value     REAL NOT NULL,
    threshold REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sla_violations_level ON sla_violations (level, at);
"""

# Request latency buckets (seconds): spans the critical level's 200 ms to best effort's 30 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Generation buckets (seconds): a tiny-model task takes about a second, a 14B 720p one many minutes.
GENERATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


def level_named(name: str | None, default: str = DEFAULT_LEVEL) -> SlaLevel:
    """The level called ``name`` (``default`` when empty); ``InvalidRequest`` (400) otherwise."""
    key = (name or default).strip().lower()
    if key not in SLA_LEVELS:
        raise InvalidRequest(f"level must be one of {', '.join(SLA_LEVELS)}; got {key[:40]!r}")
    return SLA_LEVELS[key]


def iso_utc(ts: float) -> str:
    """The house timestamp format (as in webhook payloads), with milliseconds."""
    moment = datetime.fromtimestamp(ts, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def percentiles(values, qs=(50, 95, 99)) -> list[float]:
    """Nearest-rank percentiles of ``values`` (0.0 each when empty): the ``ceil(q/100*n)``-th
    smallest value. numpy's ``inverted_cdf`` method is exactly this definition."""
    if len(values) == 0:
        return [0.0 for _ in qs]
    return [float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), qs, method="inverted_cdf")]


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
class _Window:
    latencies: list[float]
    count: int
    errors: int
    throttled: int
    unavailable: int
    throughput_rps: float


def _status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class SlaMonitor:
    """Thread-safe SLA bookkeeping for one process. ``start()`` it, feed it, ``stop()`` it.

    ``record`` (hot path, called for every HTTP response) takes a lock, touches one per-second
    bucket and two Prometheus children: no I/O, no allocation beyond the sample. Everything
    else (percentiles, SQLite) happens when someone asks.

    Args:
        db_path: the studio's SQLite file; the monitor keeps its own connection and tables.
        window_seconds: sliding window of the latency percentiles and the error rate.
        throughput_seconds: window of ``current_throughput_rps``.
        default_level: the level evaluated in the background (``ECHOEL_SLA_LEVEL``).
        queue_depth: callable giving the number of pending + running tasks (0 if None).
        gpu_memory: callable giving GPU memory in bytes (``cuda_memory_bytes`` if None).
        clock: wall-clock source (``time.time``); tests inject their own.
        heartbeat_seconds / sample_seconds: background thread periods.
        uptime_window_seconds: the uptime period's maximum length (30 days).
        history_points: samples kept for the plots (720 x 5 s = 1 hour).
    """

    def __init__(self, db_path: Path | str, window_seconds: float = 300, *, throughput_seconds: int = 60,
                 default_level: str = DEFAULT_LEVEL, queue_depth: Callable[[], int] | None = None,
                 gpu_memory: Callable[[], int] | None = None, clock: Callable[[], float] = time.time,
                 heartbeat_seconds: float = 15.0, sample_seconds: float = 5.0,
                 uptime_window_seconds: float = 30 * 86400, history_points: int = 720,
                 max_samples_per_second: int = 2000, max_violations: int = 1000,
                 violations_lookback_seconds: float = 86400, generation_samples: int = 200):
        self.window_seconds = float(window_seconds)
        self.throughput_seconds = max(1, int(throughput_seconds))
        self.default_level = level_named(default_level).name
        self.heartbeat_seconds = heartbeat_seconds
        self.sample_seconds = sample_seconds
        self.uptime_window_seconds = uptime_window_seconds
        self.max_samples_per_second = max_samples_per_second
        self.max_violations = max_violations
        self.violations_lookback_seconds = violations_lookback_seconds
        self._clock = clock
        self._queue_depth = queue_depth
        self._gpu_memory = gpu_memory or cuda_memory_bytes
        self._created = clock()

        self._lock = threading.Lock()          # the request window (hot path)
        self._buckets: deque[_Bucket] = deque()
        self._totals = {"requests": 0, "errors": 0, "throttled": 0, "unavailable": 0}
        self._generations: deque[tuple[float, float, bool]] = deque(maxlen=generation_samples)
        self._history: deque[HistoryPoint] = deque(maxlen=history_points)
        self._violating: dict[tuple[str, str], bool] = {}
        self._eval_lock = threading.Lock()     # edge detection of violations

        self._db_lock = threading.Lock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            str(db_path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a lost heartbeat costs at most 15 s of recorded uptime
        self._db.executescript(_SCHEMA)
        self._run_id: int | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

        self.registry = CollectorRegistry()
        self._requests = Counter("echoel_http_requests", "HTTP responses, by route template and status class",
                                 ["route", "status_class"], registry=self.registry)
        self._latency = Histogram("echoel_http_request_duration_seconds",
                                  "Time to first byte of HTTP responses, by route template and status class",
                                  ["route", "status_class"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._refused = Counter("echoel_http_requests_refused", "Requests refused to shed load (429, 503)",
                                ["reason"], registry=self.registry)
        self._generation = Histogram("echoel_task_generation_seconds",
                                     "Wall time of finished generation tasks (not API latency)",
                                     ["kind", "outcome"], buckets=GENERATION_BUCKETS, registry=self.registry)
        self._children: dict[tuple[str, int], tuple] = {}
        self.registry.register(_SlaCollector(self))
        try:
            ProcessCollector(registry=self.registry)
        except Exception:  # not on every platform
            pass

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, background: bool = True) -> None:
        """Record this process's start in the uptime history; with ``background``, start the
        thread that heartbeats and samples the plots."""
        now = self._clock()
        with self._db_lock:
            if self._db is None:
                raise RuntimeError("the SLA monitor was stopped")
            if self._run_id is None:
                cursor = self._db.execute("INSERT INTO sla_uptime (started_at, last_seen) VALUES (?, ?)", (now, now))
                self._run_id = cursor.lastrowid
                # Rows that ended before the period are of no use, except the first one (it
                # anchors the period's start, so a long outage before this start still counts)
                # and the last one to end (whether it stopped cleanly: planned downtime or not).
                self._db.execute("DELETE FROM sla_uptime WHERE last_seen < ? AND id > "
                                 "(SELECT id FROM sla_uptime ORDER BY started_at LIMIT 1) AND id NOT IN "
                                 "(SELECT id FROM sla_uptime WHERE id != ? ORDER BY last_seen DESC, clean_stop"
                                 " LIMIT 1)",
                                 (now - self.uptime_window_seconds, self._run_id))
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
        self.heartbeat(clean_stop=True)
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._run_id = None

    def heartbeat(self, clean_stop: bool = False) -> None:
        """Mark this process as up until now."""
        with self._db_lock:
            if self._db is None or self._run_id is None:
                return
            self._db.execute("UPDATE sla_uptime SET last_seen = ?, clean_stop = ? WHERE id = ?",
                             (self._clock(), int(clean_stop), self._run_id))

    def _loop(self) -> None:
        next_beat = 0.0
        while not self._stopping.is_set():
            try:
                if time.monotonic() >= next_beat:
                    self.heartbeat()
                    next_beat = time.monotonic() + self.heartbeat_seconds
                self.sample()
            except Exception:
                log.exception("SLA monitor sample failed")
            self._stopping.wait(self.sample_seconds)

    # -- recording (hot path) ---------------------------------------------------------------

    def record(self, latency_seconds: float, status: int, route: str = "other") -> None:
        """One HTTP response: its time to first byte, status code and route label."""
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
        children = self._children.get((route, status))
        if children is None:
            label = _status_class(status)
            children = (self._requests.labels(route, label), self._latency.labels(route, label))
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(latency_seconds)
        if status == 429:
            self._refused.labels("rate_limited").inc()
        elif status == 503:
            self._refused.labels("unavailable").inc()

    def record_generation(self, seconds: float, ok: bool = True, kind: str = "t2v") -> None:
        """One finished task: its wall time from claim to completion (or failure). Cancelled
        tasks should not be recorded: their time says nothing about the service."""
        self._generation.labels(kind, "completed" if ok else "failed").observe(max(0.0, seconds))
        with self._lock:
            self._generations.append((self._clock(), float(seconds), bool(ok)))

    # -- reading ----------------------------------------------------------------------------

    def _window(self, now: float) -> _Window:
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
                chunks.append(bucket.latencies[:] if bucket is self._buckets[-1] else bucket.latencies)
                if tp_first <= bucket.second < second:
                    tp_count += bucket.count
        latencies = [x for chunk in chunks for x in chunk]
        ran = max(1, min(self.throughput_seconds, int(now - self._created)))
        return _Window(latencies, count, errors, throttled, unavailable, tp_count / ran)

    def status(self, level: str | None = None, now: float | None = None) -> SlaStatus:
        """The seed's SLA status for ``level`` (the default level when None). Evaluating a
        level records its new violations. ``InvalidRequest`` for an unknown level."""
        target = level_named(level, self.default_level)
        now = self._clock() if now is None else now
        window = self._window(now)
        p50, p95, p99 = (1000.0 * v for v in percentiles(window.latencies))
        error_rate = 100.0 * window.errors / window.count if window.count else 0.0
        uptime = self.uptime_percent(now)
        values = {UPTIME: uptime, LATENCY_P99: p99, ERROR_RATE: error_rate}
        self._evaluate(target, values, now)
        return SlaStatus(
            target_level=target.name,
            meets_sla=all(not _breaks(target, metric, value) for metric, value in values.items()),
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
        window = self._window(now)
        with self._lock:
            totals = dict(self._totals)
        return {"window_seconds": self.window_seconds, "requests_in_window": window.count,
                "errors_in_window": window.errors, "throttled_in_window": window.throttled,
                "unavailable_in_window": window.unavailable, "latency_samples": len(window.latencies),
                "totals_since_start": totals, "uptime": self.uptime_details(now),
                "generation": self.generation_stats()}

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

    # -- uptime -----------------------------------------------------------------------------

    def _intervals(self, now: float) -> list[tuple[float, float]]:
        with self._db_lock:
            if self._db is None:
                return []
            rows = self._db.execute("SELECT id, started_at, last_seen, clean_stop FROM sla_uptime").fetchall()
        # (start, end, ended by a clean stop); the running process is up until now.
        return [(start, now, False) if row_id == self._run_id else (start, min(last, now), bool(clean))
                for row_id, start, last, clean in rows if start <= now]

    def uptime_details(self, now: float | None = None) -> dict:
        """``{period_start, period_seconds, up_seconds, down_seconds, planned_down_seconds,
        planned_stops, runs, percent}``: ``down_seconds`` is unplanned downtime only, planned
        downtime (after clean stops) is reported apart and left out of ``percent``."""
        now = self._clock() if now is None else now
        intervals = sorted(self._intervals(now))
        if not intervals:
            return {"period_start": None, "period_seconds": 0.0, "up_seconds": 0.0, "down_seconds": 0.0,
                    "planned_down_seconds": 0.0, "planned_stops": 0, "runs": 0, "percent": 100.0}
        start = max(intervals[0][0], now - self.uptime_window_seconds)
        up = planned = 0.0
        planned_stops = 0
        cur_start, cur_end, cur_clean = None, None, False
        before = [(b, clean) for a, b, clean in intervals if b <= start]
        if before:  # the period starts inside a gap: planned if the run before it stopped cleanly
            cur_start = cur_end = start
            cur_clean = max(before, key=lambda e: (e[0], not e[1]))[1]  # at equal ends a crash wins
        for a, b, clean in intervals:  # union of the (sorted) intervals, clipped to [start, now]
            a, b = max(a, start), min(b, now)
            if b <= a:
                continue
            if cur_end is None or a > cur_end:
                if cur_end is not None:
                    up += cur_end - cur_start
                    if cur_clean:  # the gap [cur_end, a] follows a clean stop: planned
                        planned += a - cur_end
                        planned_stops += 1
                cur_start, cur_end, cur_clean = a, b, clean
            elif b > cur_end or (b == cur_end and not clean):  # at equal ends a crash wins
                cur_end, cur_clean = b, clean
        if cur_end is not None:
            up += cur_end - cur_start
        period = now - start
        counted = period - planned
        percent = 100.0 if counted <= 0 else min(100.0, 100.0 * up / counted)
        return {"period_start": iso_utc(start), "period_seconds": round(period, 3), "up_seconds": round(up, 3),
                "down_seconds": round(max(0.0, period - up - planned), 3),
                "planned_down_seconds": round(planned, 3), "planned_stops": planned_stops,
                "runs": len(intervals), "percent": percent}

    def uptime_percent(self, now: float | None = None) -> float:
        return self.uptime_details(now)["percent"]

    # -- violations -------------------------------------------------------------------------

    def _evaluate(self, level: SlaLevel, values: dict[str, float], now: float) -> None:
        new = []
        with self._eval_lock:
            for metric, value in values.items():
                broken = _breaks(level, metric, value)
                if broken and not self._violating.get((level.name, metric), False):
                    new.append((now, level.name, metric, value, _threshold(level, metric)))
                self._violating[(level.name, metric)] = broken
        if new:
            with self._db_lock:
                if self._db is None:
                    return
                self._db.executemany(
                    "INSERT INTO sla_violations (at, level, metric, value, threshold) VALUES (?, ?, ?, ?, ?)", new)
                self._db.execute("DELETE FROM sla_violations WHERE id <= (SELECT MAX(id) FROM sla_violations) - ?",
                                 (self.max_violations,))
            for _, level_name, metric, value, threshold in new:
                log.warning("SLA violation (%s): %s = %.4g, threshold %.4g", level_name, metric, value, threshold)

    def violations(self, level: str | None = None, limit: int = 100, now: float | None = None) -> list[SlaViolation]:
        """Recorded violations of ``level`` (all levels when None) from the lookback period,
        newest first."""
        now = self._clock() if now is None else now
        since = now - self.violations_lookback_seconds
        query = "SELECT at, level, metric, value, threshold FROM sla_violations WHERE at >= ?"
        args: list = [since]
        if level is not None:
            query += " AND level = ?"
            args.append(level)
        query += " ORDER BY id DESC LIMIT ?"
        args.append(int(limit))
        with self._db_lock:
            if self._db is None:
                return []
            rows = self._db.execute(query, args).fetchall()
        return [SlaViolation(timestamp=iso_utc(at), metric=metric, value=round(value, 4), threshold=threshold,
                             level=lvl) for at, lvl, metric, value, threshold in rows]

    # -- plots and gauges -------------------------------------------------------------------

    def now(self) -> float:
        """The monitor's clock (``time.time`` unless a test injected another)."""
        return self._clock()

    def queue_depth(self) -> int:
        return _safe_int(self._queue_depth)

    def gpu_memory_bytes(self) -> int:
        return _safe_int(self._gpu_memory)

    def sample(self, now: float | None = None) -> HistoryPoint:
        """Evaluate the default level and append one point to the plot history."""
        now = self._clock() if now is None else now
        status = self.status(self.default_level, now=now)
        point = HistoryPoint(t=now, p50_ms=status.latency_p50_ms, p95_ms=status.latency_p95_ms,
                             p99_ms=status.latency_p99_ms, throughput_rps=status.current_throughput_rps,
                             error_rate_percent=status.error_rate_percent, queue_depth=self.queue_depth(),
                             gpu_memory_bytes=self.gpu_memory_bytes())
        with self._lock:
            self._history.append(point)
        return point

    def history(self) -> list[HistoryPoint]:
        with self._lock:
            return list(self._history)

    def prometheus_text(self) -> bytes:
        """The registry in Prometheus' text format (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)


def _threshold(level: SlaLevel, metric: str) -> float:
    return {UPTIME: level.uptime_percent, LATENCY_P99: level.latency_p99_ms,
            ERROR_RATE: level.error_rate_percent}[metric]


def _breaks(level: SlaLevel, metric: str, value: float) -> bool:
    limit = _threshold(level, metric)
    return value < limit if metric == UPTIME else value > limit


def _safe_int(fn: Callable[[], int] | None) -> int:
    if fn is None:
        return 0
    try:
        value = fn()
        return int(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else 0
    except Exception:
        log.debug("SLA monitor callback failed", exc_info=True)
        return 0


class _SlaCollector:
    """Gauges computed at scrape time from the monitor (one window snapshot per scrape)."""

    def __init__(self, monitor: SlaMonitor):
        self.monitor = monitor

    def describe(self):
        return []  # computed on collect only; nothing to check at registration

    def collect(self):
        m = self.monitor
        status = m.status(m.default_level)
        level = status.target_level
        yield _gauge("echoel_uptime_percent", "Persisted uptime over the SLA period (see studio.genius.sla)",
                     status.uptime_percent)
        quantiles = GaugeMetricFamily("echoel_sla_latency_ms",
                                      f"Nearest-rank latency percentiles over the last {m.window_seconds:g} s",
                                      labels=["quantile"])
        for q, value in (("0.5", status.latency_p50_ms), ("0.95", status.latency_p95_ms),
                         ("0.99", status.latency_p99_ms)):
            quantiles.add_metric([q], value)
        yield quantiles
        yield _gauge("echoel_sla_error_rate_percent", "5xx share of responses in the window", status.error_rate_percent)
        yield _gauge("echoel_sla_throughput_rps", "Requests per second over the last complete seconds",
                     status.current_throughput_rps)
        meets = GaugeMetricFamily("echoel_sla_meets", "1 when the target level is met", labels=["level"])
        meets.add_metric([level], 1.0 if status.meets_sla else 0.0)
        yield meets
        yield _gauge("echoel_queue_depth", "Pending and running tasks", m.queue_depth())
        yield _gauge("echoel_gpu_memory_bytes", "GPU memory allocated by PyTorch (0 without CUDA)",
                     m.gpu_memory_bytes())


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
