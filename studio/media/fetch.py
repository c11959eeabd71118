"""The one guarded way the server fetches a URL that came from a user (webhooks, ``audio_url``, ...).

Threat model: the URL, its DNS answers and the server behind it are all hostile. So

* every URL, the first and each redirect target, is vetted and pinned to one public address by
  ``studio.media.url_policy`` before any connection is made;
* the connection goes to that vetted address (pinned), never to the name again, so a resolver
  that answers differently the second time (DNS rebinding) cannot steer us anywhere else;
* redirects are followed by hand, each ``Location`` vetted and pinned like the original URL;
* one deadline covers DNS, connect, TLS, headers and every body read, and the body is capped.

httpcore is used directly (not httpx): no cookie jar, no env proxies, no automatic redirects
exist to be switched off, and its public ``NetworkBackend`` hook lets us enforce the pin and the
deadline on every socket operation, including slowly trickled headers.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import urljoin

import httpcore

from studio.media.url_policy import DEFAULT_PORTS, FetchFailed, FetchPolicy, PinnedURL, URLRefused, pin_url

__all__ = ["FetchResponse", "USER_AGENT", "fetch"]

USER_AGENT = "EchoelmusicStudio/1.0"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers we own: framing and routing must match the pinned request, not the caller's wishes.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Credentials that must not follow a redirect to another origin.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


@dataclass(frozen=True)
class FetchResponse:
    status_code: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    content: bytes  # as received (we ask for identity encoding and never decompress)
    url: str  # the final URL, after any redirects
    ip: str  # the address the final response came from


def fetch(url: str, policy: FetchPolicy = FetchPolicy(), *, method: str = "GET",
          content: bytes | None = None, headers: dict[str, str] | None = None,
          follow_redirects: bool = True) -> FetchResponse:
    """Make one guarded HTTP request and return the whole (capped) response.

    ``url`` is vetted like ``url_policy.validate_url`` (URLRefused if it is not acceptable). Redirects are
    followed up to ``policy.max_redirects``, each target vetted again; a redirect to a refused
    target, too many redirects or a body over ``policy.max_bytes`` raise FetchFailed(retryable=False);
    timeouts, refused or reset connections raise FetchFailed(retryable=True). HTTP error statuses
    are returned, not raised. With ``follow_redirects=False`` a 3xx is returned as it came.
    """
    deadline = time.monotonic() + policy.timeout_seconds
    pinned = pin_url(url, policy, deadline)
    request = _Request(_check_method(method), _caller_headers(headers), content)
    for hop in range(policy.max_redirects + 1):
        response = _exchange(pinned, request, policy, deadline, skip_redirect_body=follow_redirects)
        location = response.headers.get("location")
        if not (follow_redirects and response.status_code in _REDIRECT_STATUSES and location):
            return response
        if hop == policy.max_redirects:
            raise FetchFailed(f"Too many redirects (more than {policy.max_redirects}) from {url}")
        target = _pin_redirect(pinned.url, location, policy, deadline)
        request = _redirected(request, response.status_code, _same_origin(pinned, target))
        pinned = target
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises


# --- redirects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    method: str
    headers: dict[str, str]  # names as the caller spelled them, unique ignoring case
    content: bytes | None


def _check_method(method: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{1,20}", method or ""):
        raise ValueError(f"not an HTTP method: {method!r}")
    return method.upper()


def _caller_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """Our defaults plus the caller's headers, minus those that must match the pinned request."""
    merged = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"}
    for name, value in (headers or {}).items():
        if name.lower() not in _RESERVED_HEADERS:
            merged = _without(merged, {name.lower()})
            merged[name] = value
    return merged


def _without(headers: dict[str, str], lower_names: Iterable[str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in lower_names}


def _pin_redirect(current: str, location: str, policy: FetchPolicy, deadline: float) -> PinnedURL:
    """Vet a redirect target like a fresh URL; a refusal is the remote's fault, so FetchFailed."""
    target = urljoin(current, location.strip())
    try:
        return pin_url(target, policy, deadline)
    except URLRefused as refused:
        raise FetchFailed(f"Redirect from {current} refused: {refused.detail}") from None


def _same_origin(a: PinnedURL, b: PinnedURL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _redirected(request: _Request, status: int, same_origin: bool) -> _Request:
    """The request to repeat at a redirect target, following what browsers and httpx do."""
    headers = request.headers if same_origin else _without(request.headers, _CREDENTIAL_HEADERS)
    to_get = (status == 303 and request.method != "HEAD") or (status in (301, 302) and request.method == "POST")
    if not to_get:
        return _Request(request.method, headers, request.content)
    return _Request("GET", _without(headers, {"content-type"}), None)


# --- one exchange -------------------------------------------------------------------------------


def _exchange(pinned: PinnedURL, request: _Request, policy: FetchPolicy, deadline: float,
              *, skip_redirect_body: bool) -> FetchResponse:
    """Send ``request`` to the pinned address and read the capped response, mapping failures."""
    url = httpcore.URL(scheme=pinned.scheme.encode(), host=pinned.ip.encode(), port=pinned.port,
                       target=_target(pinned.url).encode())
    # The URL names the vetted IP; TLS must still verify the certificate against the real name.
    extensions = {"sni_hostname": pinned.host, "timeout": {"connect": policy.connect_timeout}}
    backend = _PinnedBackend(pinned.ip, pinned.port, deadline)
    try:
        headers = [(b"Host", _host_header(pinned).encode())]
        headers += [(name.encode(), value.encode("latin-1")) for name, value in request.headers.items()]
        with httpcore.ConnectionPool(ssl_context=_ssl_context(), max_connections=1, retries=0,
                                     network_backend=backend) as pool:
            with pool.stream(request.method, url, headers=headers, content=request.content,
                             extensions=extensions) as response:
                return _read(response, pinned, policy, skip_redirect_body)
    except httpcore.TimeoutException:
        raise FetchFailed(f"Timed out fetching {pinned.url} "
                          f"(limit {policy.timeout_seconds:g}s)", retryable=True) from None
    except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
        raise FetchFailed(f"Connection to {pinned.host} failed: {_brief(exc)}", retryable=True) from None
    except (httpcore.ProtocolError, httpcore.UnsupportedProtocol, UnicodeEncodeError) as exc:
        raise FetchFailed(f"Invalid request to {pinned.url}: {_brief(exc)}") from None


def _read(response: httpcore.Response, pinned: PinnedURL, policy: FetchPolicy,
          skip_redirect_body: bool) -> FetchResponse:
    headers = _response_headers(response.headers)
    if skip_redirect_body and response.status in _REDIRECT_STATUSES and "location" in headers:
        content = b""  # we are leaving; the body of a redirect is never needed
    else:
        content = _read_body(response, headers, pinned, policy)
    return FetchResponse(response.status, headers, content, pinned.url, pinned.ip)


def _read_body(response: httpcore.Response, headers: dict[str, str], pinned: PinnedURL,
               policy: FetchPolicy) -> bytes:
    """Stream the body, giving up as soon as it is known to exceed ``max_bytes``."""
    too_large = FetchFailed(f"Response from {pinned.url} is larger than {policy.max_bytes} bytes")
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_stream():
        size += len(chunk)
        if size > policy.max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _response_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _target(url: str) -> str:
    """The request target (path and query) of a normalized URL."""
    return "/" + url.split("://", 1)[1].partition("/")[2]


def _host_header(pinned: PinnedURL) -> str:
    host = f"[{pinned.host}]" if ":" in pinned.host else pinned.host
    return host if pinned.port == DEFAULT_PORTS[pinned.scheme] else f"{host}:{pinned.port}"


def _brief(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@functools.lru_cache(maxsize=1)
def _ssl_context() -> Any:
    """certifi-backed verifying context, built once (loading the CA bundle is not free)."""
    return httpcore.default_ssl_context()


# --- the socket layer: pin and deadline on every operation ---------------------------------------


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects only to the vetted address, and never lets one operation outlive the deadline."""

    def __init__(self, ip: str, port: int, deadline: float):
        self._ip, self._port, self._deadline = ip, port, deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        if (host, port) != (self._ip, self._port):  # defence in depth: the URL names the pin
            raise httpcore.ConnectError("refusing to connect anywhere but the vetted address")
        timeout = _clamp(timeout, self._deadline, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never used for fetching")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """Each read/write may block at most until the deadline, so trickled bytes cannot stall us."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float):
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, self._deadline, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _clamp(timeout: float | None, deadline: float, error: type[Exception]) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("the fetch deadline has passed")
    return remaining if timeout is None else min(timeout, remaining)
