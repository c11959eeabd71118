"""The Prometheus exporter of the SLA monitor: counters and histograms fed per event, gauges at scrape time.

Owns the ``CollectorRegistry`` and its text exposition (``GET /metrics``). It reads the monitor
only through ``SlaSource`` (status of the default level, window length, queue depth, GPU memory,
and, with Celery workers, every worker and every queue), so it does not depend on how the
monitor is built.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector

from studio.genius.sla.schema import SlaStatus
from studio.jobs.workers import WorkerInfo

__all__ = ["SlaExporter", "SlaSource", "CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "GENERATION_BUCKETS"]

# Request latency buckets (seconds): spans the critical level's 200 ms to best effort's 30 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Generation buckets (seconds): a tiny-model task takes about a second, a 14B 720p one many minutes.
GENERATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class SlaSource(Protocol):
    """What the scrape-time gauges read (``SlaMonitor`` is one)."""

    default_level: str
    window_seconds: float

    def status(self, level: str | None = None, now: float | None = None) -> SlaStatus: ...

    def queue_depth(self) -> int: ...

    def gpu_memory_bytes(self) -> int: ...

    def workers(self) -> list[WorkerInfo]: ...

    def ready_by_queue(self) -> dict[str, int]: ...


def _status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class _SlaCollector:
    """Gauges computed at scrape time from the source (one window snapshot per scrape)."""

    def __init__(self, source: SlaSource):
        self.source = source

    def describe(self) -> list:
        return []  # computed on collect only; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self.source
        status = m.status(m.default_level)  # evaluates the level, as any status read does
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
        yield _gauge("echoel_gpu_memory_bytes", "GPU memory in use (this process's PyTorch, or every worker's)",
                     m.gpu_memory_bytes())
        yield from _worker_gauges(m.workers(), m.ready_by_queue())


def _worker_gauges(workers: list[WorkerInfo], ready: dict[str, int]) -> Iterator[GaugeMetricFamily]:
    """Every Celery worker's memory and work done, and every queue's ready tasks (nothing for
    the embedded worker thread, which the process gauges describe)."""
    if not workers and not ready:
        return
    yield _gauge("echoel_workers_alive", "Celery workers that sent a heartbeat lately", len(workers))
    families = {
        "memory": GaugeMetricFamily("echoel_worker_gpu_memory_bytes", "GPU memory in use on the worker's device",
                                    labels=["worker", "device"]),
        "done": GaugeMetricFamily("echoel_worker_tasks_done", "Tasks the worker finished since it started",
                                  labels=["worker"]),
        "busy": GaugeMetricFamily("echoel_worker_busy_seconds", "Seconds the worker spent running tasks",
                                  labels=["worker"]),
        "running": GaugeMetricFamily("echoel_worker_running", "1 while the worker runs a task", labels=["worker"]),
    }
    for worker in workers:
        families["memory"].add_metric([worker.id, worker.device], (worker.memory_used_gb or 0.0) * 2**30)
        families["done"].add_metric([worker.id], worker.tasks_done)
        families["busy"].add_metric([worker.id], worker.busy_seconds)
        families["running"].add_metric([worker.id], 1.0 if worker.current_task else 0.0)
    yield from families.values()
    queues = GaugeMetricFamily("echoel_queue_ready", "Pending tasks a worker could claim now, by Celery queue",
                               labels=["queue"])
    for queue, count in sorted(ready.items()):
        queues.add_metric([queue], count)
    yield queues


class SlaExporter:
    """One registry per monitor: per-event counters/histograms plus the source's gauges.

    Args:
        source: what the scrape-time gauges read; None for an exporter of events only.
    """

    def __init__(self, source: SlaSource | None = None):
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
        # labelled children cached per (route, status): .labels() costs a lock and a dict lookup
        self._children: dict[tuple[str, int], tuple] = {}
        if source is not None:
            self.registry.register(_SlaCollector(source))
        try:
            ProcessCollector(registry=self.registry)
        except Exception:  # not on every platform
            pass

    def observe_request(self, latency_seconds: float, status: int, route: str = "other") -> None:
        """Count one HTTP response and its time to first byte; 429 and 503 also count as refused."""
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

    def observe_generation(self, seconds: float, ok: bool = True, kind: str = "t2v") -> None:
        """One finished task's wall time, by kind and outcome."""
        self._generation.labels(kind, "completed" if ok else "failed").observe(max(0.0, seconds))

    def text(self) -> bytes:
        """The registry in Prometheus' text format (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)
