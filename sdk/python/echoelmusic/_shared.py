"""What every transport shares: URLs, headers, request bodies, response parsing and retries.

The async client is the only one that talks to the network; the sync facade drives it, so each
request is built and each response parsed in exactly one place.
"""

from __future__ import annotations

import random
from typing import Any, Mapping
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import httpx

from ._version import __version__
from .errors import EchoelError, RateLimitError, ServiceUnavailableError, error_for_status

DEFAULT_BASE_URL = "https://api.echoelmusic.com/v1"
USER_AGENT = f"echoelmusic-python/{__version__}"

# Statuses that mean "the request was not processed; try again later".
RETRY_STATUSES = frozenset({429, 503})
MAX_RETRY_WAIT = 60.0

GENERATE_FIELDS = ("negative_prompt", "duration_seconds", "fps", "resolution", "aspect_ratio", "genre",
                   "seed", "guidance_scale", "num_inference_steps", "webhook_url", "model")


class Endpoint:
    """The URLs of one API deployment, derived from its ``base_url`` (which includes ``/v1``)."""

    def __init__(self, base_url: str):
        base_url = base_url.strip().rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL!r}, got {base_url!r}")
        self.base_url = base_url
        self.origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self.base_path = parts.path  # e.g. "/v1"

    def url(self, *segments: str) -> str:
        """``base_url`` + ``/``-joined path segments, each percent-encoded."""
        return self.base_url + "".join("/" + quote(str(s), safe="") for s in segments)

    def ws_url(self, task_id: str) -> str:
        parts = urlsplit(self.url("ws", task_id))
        scheme = {"http": "ws", "https": "wss"}[parts.scheme]
        return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))

    def media_url(self, url_or_task_id: str) -> str:
        """Absolute URL of a video: a task id, an absolute URL, a server-relative URL such as
        ``/v1/videos/<id>.mp4`` (joined to the origin) or a base-relative one such as the seed's
        ``/videos/<id>.mp4`` (joined to ``base_url``)."""
        value = url_or_task_id.strip()
        if urlsplit(value).scheme in ("http", "https"):
            return value
        if "/" not in value:
            return self.url("videos", f"{value}.mp4")
        if value.startswith("/"):
            if self.base_path and (value == self.base_path or value.startswith(self.base_path + "/")):
                return self.origin + value
            return self.base_url + value
        return urljoin(self.base_url + "/", value)

    def same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc, "", "", "")) == self.origin


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def default_headers(api_key: str) -> dict[str, str]:
    return {**auth_headers(api_key), "User-Agent": USER_AGENT, "Accept": "application/json"}


def generate_body(prompt: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /generate``. Fields left ``None`` are omitted so the server applies
    its defaults; unknown fields are sent as given (the server names them if it rejects them)."""
    if not isinstance(prompt, str):
        raise TypeError("prompt must be a string")
    return {"prompt": prompt, **{k: v for k, v in fields.items() if v is not None}}


def idempotency_headers(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


def error_from_response(response: httpx.Response) -> EchoelError:
    """The SDK exception for an error response (its body must have been read)."""
    parsed: Any
    try:
        parsed = response.json()
    except ValueError:
        parsed = response.content.decode("utf-8", "replace") if response.content else None
    return error_for_status(response.status_code, parsed, response.headers, response.reason_phrase)


def parse_json(response: httpx.Response) -> Any:
    """The JSON body of a successful response, or the mapped exception for an error."""
    if response.is_error:
        raise error_from_response(response)
    try:
        return response.json()
    except ValueError as exc:
        raise EchoelError(f"expected JSON from {response.request.method} {response.request.url}, "
                          f"got {response.headers.get('content-type', 'no content type')}",
                          status_code=response.status_code, body=response.text[:500]) from exc


def retry_delay(error: EchoelError | None, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): the server's ``Retry-After``
    when it gave one, else exponential backoff with jitter; capped at ``MAX_RETRY_WAIT``."""
    hinted = getattr(error, "retry_after", None) if isinstance(error, (RateLimitError, ServiceUnavailableError)) else None
    if hinted is not None:
        return min(hinted, MAX_RETRY_WAIT)
    return min(0.5 * 2 ** (attempt - 1), 8.0) * (0.75 + random.random() / 2)


def is_retryable_status(status_code: int) -> bool:
    return status_code in RETRY_STATUSES


# -- websocket ------------------------------------------------------------------------------------

PROGRESS_EVENTS = frozenset({"progress"})
FINAL_EVENTS = frozenset({"complete", "error", "cancelled"})


def parse_event(raw: str | bytes) -> dict[str, Any]:
    """One websocket message as a dict (non-object JSON is wrapped as ``{"type": None, "data": ...}``)."""
    import json

    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise EchoelError(f"the server sent a websocket message that is not JSON: {str(raw)[:200]!r}") from exc
    return value if isinstance(value, dict) else {"type": None, "data": value}


def error_from_handshake(status_code: int, headers: Mapping[str, str], body: bytes | None) -> EchoelError:
    """The SDK exception for a websocket handshake the server refused with an HTTP status."""
    items = headers.raw_items() if hasattr(headers, "raw_items") else headers.items()
    framing = {"content-encoding", "content-length", "transfer-encoding"}  # the body is already raw bytes
    response = httpx.Response(status_code, headers=[(k, v) for k, v in items if k.lower() not in framing],
                              content=bytes(body or b""))
    return error_from_response(response)


def error_from_close(code: int | None, event: Mapping[str, Any]) -> EchoelError | None:
    """An error event followed by an application close code (``4000 + HTTP status``, e.g. 4404 for
    an unknown task) means the stream itself was refused: the mapped exception, else ``None``."""
    if code is None or not 4000 <= code < 5000:
        return None
    status = code - 4000
    from .errors import error_class

    return error_class(status)(status_code=status, error=event.get("error"), detail=event.get("detail"),
                               type=event.get("error_type") or event.get("type_name"), body=dict(event))
