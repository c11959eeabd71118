"""Per-key, per-endpoint-class request limits with the ``limits`` library.

The seed describes token buckets (rate + burst). ``limits`` offers moving windows; a window of
``burst`` requests per ``burst / rate`` seconds admits the same burst and the same long-run rate
(e.g. /generate: 5 per 10 s = burst 5, 1 per 2 s). Its in-memory storage takes a lock per key
around check-and-add, so concurrent requests can never be over-admitted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


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
    """One moving-window limit per endpoint class (``generate``, ``batch``, ``default``)."""

    def __init__(self, config: dict[str, str]):
        self.items = {kind: parse(text) for kind, text in config.items()}
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, kind: str, identity: str) -> RateDecision:
        """Count one request of ``identity`` against ``kind``'s limit (refused ones don't count)."""
        item = self.items.get(kind, self.items["default"])
        allowed = self._limiter.hit(item, kind, identity)
        reset, remaining = self._limiter.get_window_stats(item, kind, identity)
        return RateDecision(allowed, item.amount, max(0, remaining), reset)

    def peek(self, kind: str, identity: str) -> RateDecision:
        """``identity``'s standing against ``kind``'s limit without counting a request.

        For responses no rate-limited route produced (unknown route, 405, 413 refused before the
        body was read): they are not charged, yet still say where the caller stands.
        """
        item = self.items.get(kind, self.items["default"])
        reset, remaining = self._limiter.get_window_stats(item, kind, identity)
        return RateDecision(remaining > 0, item.amount, max(0, remaining), reset)
