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

The package, one module per job (callers import from here):

- ``levels``: the seed's SLA levels, their thresholds and how a value breaks them.
- ``schema``: the answers (``SlaStatus``, ``SlaViolation``, ``HistoryPoint``) and the time format.
- ``latency``: the rolling window of requests and generations (in memory; no SQLite).
- ``store``: the monitor's access to the studio's database (``studio.db``), shared by the two durable parts below.
- ``uptime``: the durable uptime ledger (runs, heartbeats, clean stops, planned downtime).
- ``violations``: edge-triggered threshold crossings, persisted.
- ``exporter``: the Prometheus registry and its text exposition.
- ``monitor``: ``SlaMonitor``, the thin object composing them that the app holds.
"""

from studio.genius.sla.exporter import CONTENT_TYPE_LATEST, SlaExporter
from studio.genius.sla.latency import LatencyWindow, WindowSnapshot, percentiles
from studio.genius.sla.levels import DEFAULT_LEVEL, METRICS, SLA_LEVELS, SlaLevel, level_named
from studio.genius.sla.monitor import SlaMonitor, cuda_memory_bytes
from studio.genius.sla.schema import HistoryPoint, SlaStatus, SlaViolation, iso_utc
from studio.genius.sla.store import SlaStore
from studio.genius.sla.uptime import UptimeLedger
from studio.genius.sla.violations import ViolationLog

__all__ = ["SLA_LEVELS", "DEFAULT_LEVEL", "METRICS", "SlaLevel", "level_named", "SlaStatus", "SlaViolation",
           "HistoryPoint", "iso_utc", "SlaMonitor", "cuda_memory_bytes", "percentiles", "CONTENT_TYPE_LATEST",
           "LatencyWindow", "WindowSnapshot", "SlaStore", "UptimeLedger", "ViolationLog", "SlaExporter"]
