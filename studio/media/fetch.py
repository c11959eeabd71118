"""The one guarded way the server fetches a URL that came from a user (webhooks, ``audio_url``, ...).

Threat model: the URL, its DNS answers and the server behind it are all hostile. So

* only ``http``/``https`` without userinfo, and the host is resolved exactly once; every address it
  resolves to must be public, or the URL is refused before any connection is made;
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
import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Iterable
from urllib.parse import quote, urljoin, urlsplit

import httpcore

from studio.errors import StudioError

__all__ = [
    "FetchFailed", "FetchPolicy", "FetchResponse", "PinnedURL", "URLRefused", "USER_AGENT",
    "fetch", "validate_url",
]

USER_AGENT = "EchoelmusicStudio/1.0"

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_URL_LENGTH = 8192
# Names that mean "this machine / this cloud" whatever DNS says (RFC 6761, ICANN .internal).
_BLOCKED_NAMES = ("localhost",)
_BLOCKED_SUFFIXES = (".localhost", ".internal")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
# Headers we own: framing and routing must match the pinned request, not the caller's wishes.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Credentials that must not follow a redirect to another origin.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_IPV6_LOOPBACK = IPv6Address("::1")


class URLRefused(StudioError):
    """The URL itself is not acceptable: bad scheme or shape, or it points at a non-public host."""

    status_code = 400
    title = "Invalid URL"
    type_name = "InvalidURL"


class FetchFailed(StudioError):
    """The exchange failed. ``retryable`` says whether trying again later could help."""

    status_code = 400
    title = "Fetch failed"
    type_name = "FetchFailed"

    def __init__(self, detail: str, *, retryable: bool = False):
        super().__init__(detail)
        self.retryable = retryable


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 50 * 2**20
    timeout_seconds: float = 30.0  # total deadline: DNS + connect + TLS + headers + whole body
    connect_timeout: float = 5.0  # DNS lookup and TCP connect, each (still within the total)
    allow_loopback: bool = False  # tests only: permits 127.0.0.0/8 and ::1, nothing else
    max_redirects: int = 3


@dataclass(frozen=True)
class PinnedURL:
    url: str  # normalized: scheme://host[:port]/path?query, fragment dropped
    scheme: str
    host: str  # lower-case ASCII (IDNA) name or canonical IP literal, no brackets
    port: int
    ip: str  # the one vetted address that will be connected to


@dataclass(frozen=True)
class FetchResponse:
    status_code: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    content: bytes  # as received (we ask for identity encoding and never decompress)
    url: str  # the final URL, after any redirects
    ip: str  # the address the final response came from


def validate_url(url: str, policy: FetchPolicy = FetchPolicy()) -> PinnedURL:
    """Parse ``url``, resolve its host once and vet every address; return it pinned to one.

    Raises URLRefused when the URL is malformed, not http(s), carries userinfo, cannot be
    resolved, or any address it resolves to is not public. A DNS lookup that times out or fails
    temporarily raises FetchFailed(retryable=True) instead, since the URL may well be fine.
    """
    return _pin(url, policy, time.monotonic() + policy.connect_timeout)


def fetch(url: str, policy: FetchPolicy = FetchPolicy(), *, method: str = "GET",
          content: bytes | None = None, headers: dict[str, str] | None = None,
          follow_redirects: bool = True) -> FetchResponse:
    """Make one guarded HTTP request and return the whole (capped) response.

    ``url`` is vetted like ``validate_url`` (URLRefused if it is not acceptable). Redirects are
    followed up to ``policy.max_redirects``, each target vetted again; a redirect to a refused
    target, too many redirects or a body over ``policy.max_bytes`` raise FetchFailed(retryable=False);
    timeouts, refused or reset connections raise FetchFailed(retryable=True). HTTP error statuses
    are returned, not raised. With ``follow_redirects=False`` a 3xx is returned as it came.
    """
    deadline = time.monotonic() + policy.timeout_seconds
    pinned = _pin(url, policy, deadline)
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


# --- parsing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parts:
    scheme: str
    host: str
    port: int
    target: str  # request target: path plus query, percent-encoded
    literal: IPv4Address | IPv6Address | None  # set when the host is an IP address

    @property
    def url(self) -> str:
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != _DEFAULT_PORTS[self.scheme]:
            netloc = f"{netloc}:{self.port}"
        return f"{self.scheme}://{netloc}{self.target}"


def _parse(url: str) -> _Parts:
    """Split and normalize a URL, refusing anything but plain http(s) with a sane host."""
    if not isinstance(url, str) or not url.strip():
        raise URLRefused("A URL is required")
    if len(url) > _MAX_URL_LENGTH:
        raise URLRefused(f"URL is longer than {_MAX_URL_LENGTH} characters")
    try:
        split = urlsplit(url.strip())
        port = split.port
    except ValueError:
        raise URLRefused("URL is malformed (bad host or port)") from None
    scheme = split.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise URLRefused(f"Only http and https URLs are allowed, not {scheme or 'a bare path'!r}")
    if "@" in split.netloc:
        raise URLRefused("URLs with credentials (user:password@) are not allowed")
    if not split.hostname:
        raise URLRefused("URL has no host")
    if port == 0:
        raise URLRefused("URL port must be between 1 and 65535")
    host, literal = _normalize_host(split.hostname, bracketed=split.netloc.startswith("["))
    target = quote(split.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if split.query:
        target += "?" + quote(split.query, safe="/?%:@!$&'()*+,;=-._~")
    return _Parts(scheme, host, port or _DEFAULT_PORTS[scheme], target, literal)


def _normalize_host(raw: str, *, bracketed: bool) -> tuple[str, IPv4Address | IPv6Address | None]:
    """Return the canonical host and, for IP literals (in any spelling), the address."""
    if bracketed:
        try:
            address = IPv6Address(raw)
        except ValueError:
            raise URLRefused("URL has a malformed IPv6 address") from None
        return str(address), address
    try:
        name = raw.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        raise URLRefused(f"URL host {raw!r} is not a valid host name") from None
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise URLRefused(f"URL host {raw!r} is not a valid host name")
    # Like browsers (WHATWG) and inet_aton: a host whose last label is a number is an IPv4
    # address in some spelling (2130706433, 0x7f000001, 0177.0.0.1, 127.1) - never a DNS name.
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        address = _parse_ipv4_loose(labels)
        return str(address), address
    return name, None


def _parse_ipv4_loose(labels: list[str]) -> IPv4Address:
    """inet_aton semantics: 1-4 parts, each decimal, 0x-hex or 0-octal; the last fills the rest."""
    if len(labels) > 4:
        raise URLRefused("URL host is a malformed IPv4 address")
    numbers = [_parse_ipv4_number(label) for label in labels]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise URLRefused("URL host is a malformed IPv4 address")
    return IPv4Address(sum(n << (8 * (3 - i)) for i, n in enumerate(head)) + last)


def _parse_ipv4_number(label: str) -> int:
    try:
        if label.startswith("0x"):
            return int(label[2:] or "0", 16)
        if len(label) > 1 and label.startswith("0"):
            return int(label, 8)
        return int(label, 10)
    except ValueError:
        raise URLRefused("URL host is a malformed IPv4 address") from None


# --- vetting addresses --------------------------------------------------------------------------


def _pin(url: str, policy: FetchPolicy, deadline: float) -> PinnedURL:
    """Parse, resolve once, vet every address and pin the first."""
    parts = _parse(url)
    if parts.literal is not None:
        addresses = [parts.literal]
        described = f"URL host {parts.host} is"
    else:
        _refuse_reserved_name(parts.host)
        addresses = _lookup(parts.host, parts.port, policy, deadline)
        described = f"URL host {parts.host!r} resolves to"
    for address in addresses:
        reason = _refusal(address, policy)
        if reason:
            # Name the category only: the resolved address itself would leak internal DNS.
            raise URLRefused(f"{described} {reason}; only public addresses are allowed")
    return PinnedURL(parts.url, parts.scheme, parts.host, parts.port, str(addresses[0]))


def _refuse_reserved_name(host: str) -> None:
    if host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES):
        raise URLRefused(f"URL host {host!r} is a local or internal name")


def _resolve(host: str, port: int) -> list[str]:
    """All addresses ``host`` resolves to, in the system's preference order (tests patch this)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[str] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in found:
            found.append(sockaddr[0])
    return found


def _lookup(host: str, port: int, policy: FetchPolicy, deadline: float) -> list[IPv4Address | IPv6Address]:
    """Resolve via ``_resolve`` within the connect timeout and the deadline (getaddrinfo has none)."""
    timeout = min(policy.connect_timeout, deadline - time.monotonic())
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["found"] = _resolve(host, port)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    # A daemon thread: a resolver that never answers costs one parked thread, not the caller.
    worker = threading.Thread(target=work, name="studio-fetch-dns", daemon=True)
    worker.start()
    worker.join(max(timeout, 0.0))
    if worker.is_alive():
        raise FetchFailed(f"DNS lookup for {host!r} timed out", retryable=True)
    error = outcome.get("error")
    if isinstance(error, socket.gaierror) and error.errno == socket.EAI_AGAIN:
        raise FetchFailed(f"DNS lookup for {host!r} failed temporarily", retryable=True)
    if error is not None or not outcome.get("found"):
        raise URLRefused(f"URL host {host!r} could not be resolved")
    try:
        return [ipaddress.ip_address(found) for found in outcome["found"]]
    except ValueError:
        raise URLRefused(f"URL host {host!r} could not be resolved") from None


def _refusal(address: IPv4Address | IPv6Address, policy: FetchPolicy) -> str | None:
    """Why ``address`` must not be contacted, or None when it is public (or allowed loopback)."""
    if policy.allow_loopback and _is_plain_loopback(address):
        return None
    if isinstance(address, IPv6Address):
        if address.scope_id:
            return "a scoped IPv6 address"
        if address.ipv4_mapped is not None or address in _NAT64:
            # These only carry an IPv4 destination: that address is what must be public.
            inner = _category(IPv4Address(int(address) & 0xFFFFFFFF))
            return f"an IPv6 form of {inner}" if inner else None
        # 6to4 / Teredo: the outer address must be public too (Teredo never is), and so the inner.
        tunnelled = _tunnelled_ipv4(address)
        inner = _category(tunnelled) if tunnelled is not None else None
        if inner:
            return f"an IPv6 tunnel to {inner}"
    return _category(address)


def _tunnelled_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo is not None else None


def _is_plain_loopback(address: IPv4Address | IPv6Address) -> bool:
    """127.0.0.0/8 or ::1 written as such (not ::ffff:127.0.0.1, whatever the Python version)."""
    return address == _IPV6_LOOPBACK if isinstance(address, IPv6Address) else address.is_loopback


def _category(address: IPv4Address | IPv6Address) -> str | None:
    """A short name for a non-public address (None for public): loopback, private, ..."""
    checks = [
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (isinstance(address, IPv4Address) and address in _CGNAT, "a shared (CGNAT) address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (isinstance(address, IPv6Address) and address.is_site_local, "a site-local address"),
        # ipaddress' is_global misses some of these on older Pythons (multicast, ::/8, fec0::/10).
        (address.is_reserved or not address.is_global, "a reserved or non-public address"),
    ]
    return next((name for hit, name in checks if hit), None)


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
        return _pin(target, policy, deadline)
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
    return host if pinned.port == _DEFAULT_PORTS[pinned.scheme] else f"{host}:{pinned.port}"


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
