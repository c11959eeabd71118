"""REST routes of the SLA Monitor: ``GET /v1/genius/sla/status`` and the Prometheus ``GET /metrics``.

Both read the process's ``SlaMonitor`` at ``app.state.studio.sla``; definitions and formulas are
in ``studio.genius.sla``.

``/metrics`` needs an API key like every ``/v1`` route (``Authorization: Bearer <key>``; in a
Prometheus scrape config: ``authorization: {credentials: <key>}``): the exposition names routes
and reveals load, which is not public information. It is charged to the ``default`` rate limit
(a scrape every 15 s is far below it).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from studio.api.auth import api_key
from studio.api.routes import COMMON, ERRORS
from studio.genius.sla import CONTENT_TYPE_LATEST, SLA_LEVELS, SlaMonitor, SlaStatus
from studio.keys import ApiKey

router = APIRouter(prefix="/v1/genius/sla", tags=["genius: sla"], responses=COMMON)
metrics_router = APIRouter(tags=["service"], responses=COMMON)


def get_monitor(request: Request) -> SlaMonitor:
    return request.app.state.studio.sla


@router.get("/status", response_model=SlaStatus, responses={400: ERRORS[400]})
def sla_status(level: Literal["best_effort", "standard", "premium", "critical"] | None = Query(None,
                                         description=f"One of {', '.join(SLA_LEVELS)}; default: the server's "
                                                     "ECHOEL_SLA_LEVEL (standard)"),
               _: ApiKey = Depends(api_key()), monitor: SlaMonitor = Depends(get_monitor)) -> SlaStatus:
    """Uptime (persisted across restarts), p50/p95/p99 latency and error rate over the last
    5 minutes, current throughput, whether they meet the level, and the level's recent
    violations (timestamp, metric, value, threshold)."""
    return monitor.status(level)


@metrics_router.get("/metrics", response_class=Response,
                    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(request: Request, _: ApiKey = Depends(api_key()), monitor: SlaMonitor = Depends(get_monitor)) -> Response:
    """Prometheus exposition: request counter and latency histogram by route template and
    status class, refusals (429/503), generation-time histogram, uptime, window percentiles,
    queue depth, GPU memory and process metrics. Needs an API key."""
    return Response(monitor.prometheus_text(), media_type=CONTENT_TYPE_LATEST,
                    headers={**getattr(request.state, "rate_headers", {}), "Cache-Control": "no-store"})
