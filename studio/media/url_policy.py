"""Which URLs the server may fetch for a user (webhooks, ``audio_url``, ...), pinned to one vetted address.

Threat model: the URL, its DNS answers and the server behind it are all hostile. So

* only ``http``/``https`` without userinfo, and the host is resolved exactly once; every address it
  resolves to must be public, or the URL is refused before any connection is made;
* the result is a ``PinnedURL``: the downloader (``studio.media.fetch``) connects to that vetted
  address, never to the name again, so a resolver that answers differently the second time (DNS
  rebinding) cannot steer it anywhere else; every redirect target is vetted here the same way.

Host names are normalized like browsers do (IDNA, trailing dot, any IPv4 spelling such as
``2130706433`` or ``0x7f000001``), and IPv6 forms that carry an IPv4 destination (mapped, NAT64,
6to4, Teredo) are judged by that destination.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from urllib.parse import quote, urlsplit

from studio.errors import StudioError

__all__ = [
    "DEFAULT_PORTS", "FetchFailed", "FetchPolicy", "PinnedURL", "URLRefused", "pin_url", "validate_url",
]

DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_URL_LENGTH = 8192
# Names that mean "this machine / this cloud" whatever DNS says (RFC 6761, ICANN .internal).
_BLOCKED_NAMES = ("localhost",)
_BLOCKED_SUFFIXES = (".localhost", ".internal")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
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


def validate_url(url: str, policy: FetchPolicy = FetchPolicy()) -> PinnedURL:
    """Parse ``url``, resolve its host once and vet every address; return it pinned to one.

    Raises URLRefused when the URL is malformed, not http(s), carries userinfo, cannot be
    resolved, or any address it resolves to is not public. A DNS lookup that times out or fails
    temporarily raises FetchFailed(retryable=True) instead, since the URL may well be fine.
    """
    return pin_url(url, policy, time.monotonic() + policy.connect_timeout)


def pin_url(url: str, policy: FetchPolicy, deadline: float) -> PinnedURL:
    """Parse, resolve once (by ``deadline``, a ``time.monotonic()`` value), vet every address and
    pin the first; the errors are those of ``validate_url``."""
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
        if self.port != DEFAULT_PORTS[self.scheme]:
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
    if scheme not in DEFAULT_PORTS:
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
    return _Parts(scheme, host, port or DEFAULT_PORTS[scheme], target, literal)


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
