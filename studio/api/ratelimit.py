"""Per-key, per-endpoint-class request limits with the ``limits`` library.

The seed describes token buckets (rate + burst). ``limits`` offers moving windows; a window of
``burst`` requests per ``burst / rate`` seconds admits the same burst and the same long-run rate
(e.g. /generate: 5 per 10 s = burst 5, 1 per 2 s). Its in-memory storage takes a lock per key
around check-and-add, so concurrent requests can never be over-admitted.

Several API replicas share one budget per (kind, identity) when given the same Redis
(``ECHOEL_REDIS_URL``): ``limits`` keeps the moving window there and checks-and-adds in one Lua
script, so replicas cannot over-admit either. A Redis outage fails open (see ``RateLimiter``).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)

# Every counter key in Redis starts with this (``limits`` adds ``LIMITER/<kind>/<identity>/<limit>``):
# the same on every replica, so they share a budget, and apart from other users of the same Redis.
REDIS_KEY_PREFIX = "echoel-ratelimit"
# A request waits at most this long for Redis before the limiter gives up on it (fails open).
REDIS_TIMEOUT_SECONDS = 0.5
# After Redis failed, requests skip it (admitted) this long before it is tried again: an outage
# must not add a connect timeout to every request, nor a warning per request to the log.
OUTAGE_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # Unix time when the oldest counted request leaves the window

    @property
    def headers(self) -> dict[str, str]:
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                   "X-RateLimit-Reset": str(math.ceil(self.reset))}
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.reset - time.time())))
        return headers


class RateLimiter:
    """One moving-window limit per endpoint class (``generate``, ``batch``, ``default``).

    Args:
        config: the limit of each endpoint class, in ``limits``' notation (``"5/10 seconds"``).
        storage_url: where the counters live. None: this process's memory (one API process).
            A ``limits`` storage URL, e.g. ``redis://host:6379/0`` (``ECHOEL_REDIS_URL``): every
            ``RateLimiter`` on the same Redis counts into the same keys, so N API replicas share
            one budget per (kind, identity) instead of admitting N times the limit.

    A shared storage that cannot be reached (down, timing out after ``REDIS_TIMEOUT_SECONDS``)
    fails open: the request is admitted, with headers showing a full budget, and a warning is
    logged. A rate limiter outage must not take the whole API down with 500s; during one the API
    is briefly unlimited, which is the lesser harm. After a failure Redis is left alone for
    ``OUTAGE_BACKOFF_SECONDS`` (requests admitted at once, no connect timeout each), then tried again.
    """

    def __init__(self, config: dict[str, str], storage_url: str | None = None):
        self.items = {kind: parse(text) for kind, text in config.items()}
        self.storage_url = storage_url
        self._limiter = MovingWindowRateLimiter(_storage(storage_url))
        self._down_until = 0.0  # time.monotonic() before which the storage is not tried (after a failure)

    def hit(self, kind: str, identity: str) -> RateDecision:
        """Count one request of ``identity`` against ``kind``'s limit (refused ones don't count)."""
        item = self.items.get(kind, self.items["default"])
        if self._storage_down():
            return _open(item)
        try:
            allowed = self._limiter.hit(item, kind, identity)
            reset, remaining = self._limiter.get_window_stats(item, kind, identity)
        except StorageError as error:
            return self._failed_open(item, error)
        self._storage_back()
        return RateDecision(allowed, item.amount, max(0, remaining), reset)

    def peek(self, kind: str, identity: str) -> RateDecision:
        """``identity``'s standing against ``kind``'s limit without counting a request.

        For responses no rate-limited route produced (unknown route, 405, 413 refused before the
        body was read): they are not charged, yet still say where the caller stands.
        """
        item = self.items.get(kind, self.items["default"])
        if self._storage_down():
            return _open(item)
        try:
            reset, remaining = self._limiter.get_window_stats(item, kind, identity)
        except StorageError as error:
            return self._failed_open(item, error)
        self._storage_back()
        return RateDecision(remaining > 0, item.amount, max(0, remaining), reset)

    # -- a shared storage's outage: fail open ---------------------------------------------------

    def _storage_down(self) -> bool:
        return self._down_until > 0 and time.monotonic() < self._down_until

    def _failed_open(self, item: RateLimitItem, error: StorageError) -> RateDecision:
        if self._down_until == 0:  # the first failure of this outage: say so once, not per request
            log.warning("rate limits not enforced: their storage %s failed (%s); admitting requests and "
                        "retrying every %.0f s", _redacted(self.storage_url), error.storage_error,
                        OUTAGE_BACKOFF_SECONDS)
        self._down_until = time.monotonic() + OUTAGE_BACKOFF_SECONDS
        return _open(item)

    def _storage_back(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            log.warning("rate limits enforced again: their storage %s answers", _redacted(self.storage_url))


def _storage(url: str | None) -> Storage:
    """The counters' storage for ``RateLimiter(storage_url=url)``."""
    if url is None:
        return MemoryStorage()
    options: dict[str, float | str | bool] = {}
    if url.startswith(("redis", "valkey")):  # options only the Redis storages take
        options = {"key_prefix": REDIS_KEY_PREFIX, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                   "socket_timeout": REDIS_TIMEOUT_SECONDS}
    # wrap_exceptions: every driver error arrives as limits' StorageError, the one we fail open on.
    return storage_from_string(url, wrap_exceptions=True, **options)


def _open(item: RateLimitItem) -> RateDecision:
    """The decision while the storage is out: admitted, nothing counted."""
    return RateDecision(True, item.amount, item.amount, time.time())


def _redacted(url: str | None) -> str:
    """``url`` without a password, for the log."""
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url or "memory")
