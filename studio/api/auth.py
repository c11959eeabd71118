"""Who is calling: ``Authorization: Bearer <key>`` on every /v1 route and websocket.

Order matters: the caller is identified (by key, or by address for unknown keys), the rate
limit is charged, and only then is a missing, unknown or revoked key refused, so guessing keys
is rate limited too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from fastapi import Request, Response, Security, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from studio.api.ratelimit import RateDecision, RateLimiter
from studio.errors import AuthenticationFailed, PermissionDenied, RateLimited
from studio.keys import MAX_KEY_LENGTH, ApiKey, KeyStore

_BEARER = re.compile(r"^\s*bearer\s+([\x21-\x7e]+)\s*$", re.IGNORECASE)

# Declares the bearer scheme in OpenAPI (so /docs has "Authorize" and "Try it out" sends the
# key). auto_error=False: it never refuses anything itself; check_access does, in its order.
BEARER_SCHEME = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                           description="An API key: `python -m studio keys create --name me` prints one.")


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (scheme case-insensitive), or None."""
    if not header or len(header) > MAX_KEY_LENGTH + 16:
        return None
    match = _BEARER.match(header)
    return match.group(1) if match else None


def standing_rate_headers(scope: dict) -> dict[str, str]:
    """The ``X-RateLimit-*`` headers for a /v1 response that no rate-limited route produced
    (unknown route 404, 405, 413 refused before the body was read, a route's unhandled 500).

    Such requests are not charged: the headers show the caller's ``default`` bucket as it
    stands, for the same identity ``check_access`` would charge (the key when the
    ``Authorization`` header names a known key, else the client address), without
    ``Retry-After``, since nothing was refused for rate.
    """
    state = scope["app"].state
    host = scope["client"][0] if scope.get("client") else "unknown"
    token = bearer_token(Headers(scope=scope).get("authorization"))
    try:
        key = state.studio.keys.lookup(token) if token else None
    except Exception:  # noqa: BLE001 - a failing key store must not turn a 404 into a 500
        key = None
    decision = state.rate_limiter.peek("default", key.id if key else f"addr:{host}")
    return {name: value for name, value in decision.headers.items() if name.startswith("X-RateLimit-")}


def check_access(keys: KeyStore, limiter: RateLimiter, kind: str, headers: Mapping[str, str],
                 client_host: str) -> tuple[ApiKey, RateDecision]:
    """Identify the caller, charge the rate limit, then refuse bad keys.

    Raises ``RateLimited`` (429), ``AuthenticationFailed`` (401) or ``PermissionDenied`` (403);
    each carries the rate-limit headers.
    """
    token = bearer_token(headers.get("authorization"))
    key = keys.lookup(token) if token else None
    decision = limiter.hit(kind, key.id if key else f"addr:{client_host}")
    if not decision.allowed:
        raise RateLimited(f"rate limit for {kind} requests exceeded ({limiter.items.get(kind, limiter.items['default'])});"
                          f" retry after {decision.headers['Retry-After']} s", headers=decision.headers)
    if token is None:
        raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'", headers=decision.headers)
    if key is None:
        raise AuthenticationFailed("invalid API key", headers=decision.headers)
    if key.revoked:
        raise PermissionDenied("this API key has been revoked", headers=decision.headers)
    return key, decision


def api_key(kind: str = "default") -> Callable[..., ApiKey]:
    """A FastAPI dependency: the calling key, with ``kind``'s rate limit charged and the
    ``X-RateLimit-*`` headers set on the response."""

    # async on purpose: the checks are a hash, a dict lookup and an in-memory counter (the key
    # table lookup is one indexed SQLite read), so a hop to the thread pool would cost more.
    async def dependency(request: Request, response: Response,
                         _: HTTPAuthorizationCredentials | None = Security(BEARER_SCHEME)) -> ApiKey:
        app = request.app
        host = request.client.host if request.client else "unknown"
        key, decision = check_access(app.state.studio.keys, app.state.rate_limiter, kind, request.headers, host)
        request.state.rate_headers = decision.headers  # error responses of the route carry them too
        response.headers.update(decision.headers)
        return key

    dependency.rate_kind = kind  # which budget a route spends, for its docs and their test
    return dependency


def websocket_key(websocket: WebSocket) -> ApiKey:
    """The calling key of a websocket handshake (``Authorization`` header, or ``?api_key=`` for
    browsers, which cannot set headers on websockets)."""
    headers = dict(websocket.headers)
    if "authorization" not in headers and websocket.query_params.get("api_key"):
        headers["authorization"] = f"Bearer {websocket.query_params['api_key']}"
    app = websocket.app
    host = websocket.client.host if websocket.client else "unknown"
    key, _ = check_access(app.state.studio.keys, app.state.rate_limiter, "default", headers, host)
    return key
