"""Exceptions raised by the SDK.

Every HTTP error body of the API has the shape ``{"error", "detail", "type"}``; the SDK turns it,
with the status code, into one of the classes below (``error_for_response``). Bodies that are not
JSON (a proxy's HTML page, an empty 502) still map by status code, with the text as ``detail``.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, Mapping

__all__ = [
    "EchoelError", "APIConnectionError", "APITimeoutError", "BadRequestError", "AuthenticationError",
    "PermissionDeniedError", "NotFoundError", "ConflictError", "RateLimitError", "ServerError",
    "ServiceUnavailableError", "GenerationFailed", "TaskCancelled", "GenerationTimeout",
    "error_for_status",
]


class EchoelError(Exception):
    """Base of every SDK error.

    ``status_code`` is the HTTP status (``None`` when no response was received), ``error`` the
    server's short title, ``detail`` its explanation, ``type`` its error type name, ``body`` the
    parsed error body (``dict``, or the raw text when it was not JSON) and ``headers`` the response
    headers.
    """

    def __init__(self, message: str | None = None, *, status_code: int | None = None,
                 error: str | None = None, detail: str | None = None, type: str | None = None,
                 body: Any = None, headers: Mapping[str, str] | None = None):
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.type = type
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        if message is None:
            message = _describe(status_code, error, detail, type)
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


def _describe(status_code: int | None, error: str | None, detail: str | None, type: str | None) -> str:
    parts = []
    if status_code is not None:
        parts.append(str(status_code))
    text = ": ".join(p for p in (error, detail) if p)
    if text:
        parts.append(text)
    if type:
        parts.append(f"({type})")
    return " ".join(parts) or "API error"


class APIConnectionError(EchoelError, ConnectionError):
    """The server could not be reached, or the connection broke before a response arrived."""

    def __init__(self, message: str = "could not connect to the API", **kwargs: Any):
        super().__init__(message, **kwargs)


class APITimeoutError(APIConnectionError):
    """The request timed out (connect, read or write)."""

    def __init__(self, message: str = "the request timed out", **kwargs: Any):
        super().__init__(message, **kwargs)


class BadRequestError(EchoelError):
    """400, 413 or 422: invalid parameters. ``detail`` names the field and its bound."""


class AuthenticationError(EchoelError):
    """401: missing or invalid API key."""


class PermissionDeniedError(EchoelError):
    """403: the key may not do this."""


class NotFoundError(EchoelError):
    """404: no such task, file or route."""


class ConflictError(EchoelError):
    """409: e.g. the result of a task that has not completed (``type == "TaskNotReady"``)."""


class RateLimitError(EchoelError):
    """429: too many requests.

    ``retry_after`` is the wait in seconds from the ``Retry-After`` header (``None`` when absent);
    ``limit``, ``remaining`` and ``reset`` come from the ``X-RateLimit-*`` headers when present
    (``reset`` is the seed's Unix timestamp).
    """

    def __init__(self, message: str | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = parse_retry_after(self.headers)
        self.limit = _int_header(self.headers, "x-ratelimit-limit")
        self.remaining = _int_header(self.headers, "x-ratelimit-remaining")
        self.reset = _int_header(self.headers, "x-ratelimit-reset")


class ServerError(EchoelError):
    """5xx: the server failed."""


class ServiceUnavailableError(ServerError):
    """503: maintenance, overload, or the chosen model cannot run on this server."""

    def __init__(self, message: str | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = parse_retry_after(self.headers)


class GenerationFailed(EchoelError):
    """A task ended in ``failed``: ``error`` is the title, ``detail`` the reason and
    ``error_type`` (also ``type``) the server's error type, e.g. ``VramExceeded``."""

    def __init__(self, task_id: str, error: str | None = None, detail: str | None = None,
                 error_type: str | None = None):
        self.task_id = task_id
        self.error_type = error_type
        detail = detail or error
        message = f"task {task_id} failed: " + ": ".join(
            dict.fromkeys(p for p in (error, detail) if p)) + (f" ({error_type})" if error_type else "")
        super().__init__(message, error=error, detail=detail, type=error_type)


class TaskCancelled(EchoelError):
    """A task ended in ``cancelled`` (by this client, another client or the server)."""

    def __init__(self, task_id: str, detail: str | None = None):
        self.task_id = task_id
        super().__init__(f"task {task_id} was cancelled", error="Task cancelled",
                         detail=detail or "Task cancelled", type="TaskCancelled")


class GenerationTimeout(EchoelError, TimeoutError):
    """``generate(timeout=...)`` ran out before the task ended. The task keeps running on the
    server; ``task_id`` lets you follow, fetch or cancel it."""

    def __init__(self, task_id: str, timeout: float):
        self.task_id = task_id
        self.timeout = timeout
        super().__init__(f"task {task_id} did not finish within {timeout:g} s", type="Timeout")


_BY_STATUS: dict[int, type[EchoelError]] = {
    400: BadRequestError, 413: BadRequestError, 422: BadRequestError,
    401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 429: RateLimitError, 503: ServiceUnavailableError,
}


def error_class(status_code: int) -> type[EchoelError]:
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code >= 500:
        return ServerError
    return EchoelError


def error_for_status(status_code: int, body: Any, headers: Mapping[str, str] | None = None,
                     reason: str | None = None) -> EchoelError:
    """The exception for an error response: ``body`` is the parsed JSON, or the text if the body
    was not JSON (or ``None`` when empty)."""
    error = detail = type_ = None
    if isinstance(body, Mapping):
        error = _text(body.get("error"))
        detail = _text(body.get("detail"))
        type_ = _text(body.get("type"))
    elif isinstance(body, (str, bytes)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        detail = " ".join(text.split())[:500] or None
    if error is None:
        error = reason or None
    return error_class(status_code)(status_code=status_code, error=error, detail=detail, type=type_,
                                    body=body, headers=headers)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return str(value)  # e.g. a framework's list of validation errors


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = _lower(headers).get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or an HTTP date), never negative."""
    value = _lower(headers).get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
