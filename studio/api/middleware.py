"""ASGI middleware for the REST API (pure ASGI: no per-request task or body copy)."""

from __future__ import annotations

import json
from collections.abc import Callable

from studio.errors import MethodNotAllowed, PayloadTooLarge, RouteNotFound, StudioError


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` under ``prefix`` with 413, without buffering them.

    ``larger``: paths with a cap of their own (file uploads: ``POST /v1/loras``). A declared
    ``Content-Length`` over the cap is refused before anything is read; a chunked or lying body
    is counted as it streams, and once past the cap whatever the app answers is replaced by the 413.
    """

    def __init__(self, app, max_bytes: int, prefix: str = "/v1", larger: dict[str, int] | None = None):
        self.app = app
        self.default_max_bytes = max_bytes
        self.prefix = prefix
        self.larger = larger or {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        max_bytes = self.larger.get(scope["path"].rstrip("/"), self.default_max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            return await self._refuse(send, max_bytes)

        received = 0
        too_large = False

        async def counting_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        refused = False

        async def guarded_send(message):
            nonlocal refused
            if too_large:
                if not refused:
                    refused = True
                    await self._refuse(send, max_bytes)
                return
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send, max_bytes: int) -> None:
        error = PayloadTooLarge(f"request body over {max_bytes} bytes")
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class UnknownMethods:
    """405 for request methods no route handles at all (``QUERY``, ``FOO``) under ``prefix``:
    the router can only list known methods, and the UI mounted at ``/`` would answer 404."""

    def __init__(self, app, known: list[str], allowed: Callable[[dict], list[str]], prefix: str = "/v1"):
        self.app, self.known, self.allowed, self.prefix = app, set(known), allowed, prefix

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in self.known or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        allowed = ", ".join(self.allowed(scope))
        if allowed:
            error: StudioError = MethodNotAllowed(f"{scope['method']} is not allowed here; use {allowed}")
        else:
            error = RouteNotFound(f"no route {scope['path'][:100]!r}; see /docs")
        body = json.dumps(error.body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if allowed:
            headers.append((b"allow", allowed.encode()))
        await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class RateHeaders:
    """Put the ``X-RateLimit-*`` headers on every response under ``prefix`` (and on any other
    response whose route charged a rate limit, e.g. ``/metrics``).

    The auth dependency records the charged decision in ``request.state.rate_headers``, but a
    route that returns its own ``Response`` (a file download, a stream frame, a 204) drops the
    headers FastAPI would have merged, and responses made outside any route (the 413 of
    ``BodySizeLimit``, the 405 of ``UnknownMethods``, unknown routes) never charged anything.
    This middleware sits outside both and adds what is missing as the response starts: the
    charged decision when there is one, else ``standing(scope)`` (the caller's uncharged
    standing). Headers a response already has are kept.
    """

    def __init__(self, app, standing: Callable[[dict], dict[str, str]], prefix: str = "/v1"):
        self.app, self.standing, self.prefix = app, standing, prefix

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # request.state writes into scope["state"]; creating it here, before any scope copy
        # further in, makes this the dict the dependency writes to.
        state = scope.setdefault("state", {})
        under_prefix = scope["path"].startswith(self.prefix)

        async def send_with_rate_headers(message):
            if message["type"] == "http.response.start":
                rate = state.get("rate_headers")
                if rate is None and under_prefix:
                    rate = self.standing(scope)
                if rate:
                    headers = list(message.get("headers", []))
                    present = {name.lower() for name, _ in headers}
                    headers += [(name.lower().encode("latin-1"), value.encode("latin-1"))
                                for name, value in rate.items() if name.lower().encode("latin-1") not in present]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_rate_headers)
