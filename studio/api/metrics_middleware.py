"""Pure ASGI middleware that times every HTTP request (REST and the Gradio UI) for the SLA monitor.

Latency is time to first byte: from the request reaching the app to its ``http.response.start``
(so a long stream, such as Gradio's server-sent events, counts by how fast it started). It is
recorded at that moment, with the status code and a route label of bounded cardinality:

- ``/v1/...`` requests: the matched route's template (``/v1/status/{task_id}``; unknown paths
  fall into the catch-all ``/v1/{path:path}``), never the raw path;
- the app's own top-level routes (``/metrics``, ``/docs``, ``/openapi.json``, ``/redoc``): the path;
- everything else is served by the Gradio app mounted at ``/`` (pages, assets, its API, its 404s):
  ``gradio``.

A request that raises before answering counts as a 500 (the server's error handler answers it so).
A client that leaves before any answer is not counted. Websockets and lifespan pass through.
Cost per request: two ``perf_counter`` calls, one closure and ``SlaMonitor.record``.
"""

from __future__ import annotations

import time

from studio.genius.sla import SlaMonitor

TOP_LEVEL = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})


def route_label(scope, prefix: str = "/v1", other: str = "gradio") -> str:
    """The bounded label of a routed request (call after the app has routed it)."""
    path = scope["path"]
    if path.startswith(prefix):
        template = getattr(scope.get("route"), "path", None)
        return template if isinstance(template, str) and template.startswith(prefix) else prefix + "/unmatched"
    return path if path in TOP_LEVEL else other


class MetricsMiddleware:
    """Feed ``monitor`` with the latency and status of every HTTP response.

    Add it last (``app.add_middleware(MetricsMiddleware, monitor=...)`` after the others) so that
    it is the outermost and also times what the other middleware refuse (413s).
    """

    def __init__(self, app, monitor: SlaMonitor, prefix: str = "/v1", other: str = "gradio"):
        self.app = app
        self.monitor = monitor
        self.prefix = prefix
        self.other = other

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        answered = False

        async def timed_send(message):
            nonlocal answered
            if not answered and message["type"] == "http.response.start":
                answered = True
                self.monitor.record(time.perf_counter() - started, message["status"],
                                    route_label(scope, self.prefix, self.other))
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except BaseException:
            if not answered:
                answered = True
                self.monitor.record(time.perf_counter() - started, 500, route_label(scope, self.prefix, self.other))
            raise
