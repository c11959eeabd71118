"""Every error leaves the REST API in the seed's shape ``{error, detail, type}``.

Deliberate errors (``StudioError``) keep their status and text; validation errors name the
field and its bound; anything unexpected is a 500 whose body says nothing about internals.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from studio.api.auth import standing_rate_headers
from studio.engine.request import describe_validation_error
from studio.errors import InvalidRequest, StudioError, storage_fault

log = logging.getLogger(__name__)

INTERNAL = {"error": "Internal error", "detail": "an unexpected error occurred; it was logged",
            "type": "InternalError"}

# Titles for HTTP errors raised by the framework itself (unknown route, wrong method, ...).
_HTTP_TITLES = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}


def error_response(error: StudioError, request: Request | None = None) -> JSONResponse:
    """The seed's error body, with the rate-limit headers of the request (every /v1 response
    carries them) and any headers of the error itself (``Retry-After``)."""
    headers = dict(getattr(request.state, "rate_headers", {}) if request is not None else {})
    headers.update(error.headers)
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


def _body_model(request: Request) -> type[BaseModel] | None:
    """The pydantic model of the route's JSON body, so messages can quote its declared bounds."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(body_field, "field_info", None), "annotation", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on the REST app (Gradio's own routes keep Gradio's handling)."""

    @app.exception_handler(StudioError)
    async def _studio_error(request: Request, exc: StudioError) -> JSONResponse:
        return error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = describe_validation_error(_body_model(request), list(exc.errors()))
        return error_response(InvalidRequest(detail), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"error": _HTTP_TITLES.get(exc.status_code, "HTTP error"), "detail": str(exc.detail),
                "type": "HTTPException"}
        headers = {**getattr(request.state, "rate_headers", {}), **(getattr(exc, "headers", None) or {})}
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # This handler runs in Starlette's outermost middleware, outside RateHeaders, so the
        # rate-limit headers every /v1 response carries are added here (also when the failure
        # came before the auth dependency could charge anything, e.g. a failing key lookup).
        rate = getattr(request.state, "rate_headers", None)
        if rate is None and request.url.path.startswith("/v1"):
            rate = standing_rate_headers(request.scope)
        fault = storage_fault(exc)  # a full disk or a failing database is a condition, not a bug
        if fault is not None:
            log.error("%s %s refused: %s", request.method, request.url.path, fault.detail)
            return JSONResponse(fault.body(), status_code=fault.status_code, headers={**(rate or {}), **fault.headers})
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(INTERNAL, status_code=500, headers=rate)
