"""Rate limits shared by API replicas through Redis (``ECHOEL_REDIS_URL``): two ``RateLimiter``s
on the same Redis count one budget per (kind, identity); in-memory ones count their own; a Redis
that cannot be reached fails open (requests admitted, a warning logged) instead of a 500.

Every test uses identities of its own (random), so runs in parallel or one after another never
share counters and nothing needs flushing: the keys expire with their window."""

from __future__ import annotations

import os
import logging
import socket
import threading
import time
import uuid

import pytest
from limits.errors import StorageError

from studio.api import ratelimit
from studio.api.ratelimit import RateLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once
LIMITS = {"generate": "3 per 60 seconds", "default": "5 per 60 seconds"}


def _redis_up() -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


# Skipped only outside CI: scripts/test.sh starts Redis, so in CI a missing one is a failure.
needs_redis = pytest.mark.skipif(not _redis_up() and not os.environ.get("CI"), reason="no Redis on 127.0.0.1:6379 to share the counters")


def _identity() -> str:
    return "test-" + uuid.uuid4().hex


@needs_redis
def test_two_limiters_on_one_redis_share_one_budget():
    """What one replica admitted counts against the other: 3 /generate requests in all, not 3 each."""
    first, second = RateLimiter(LIMITS, storage_url=REDIS_URL), RateLimiter(LIMITS, storage_url=REDIS_URL)
    who = _identity()
    assert first.hit("generate", who).allowed and second.hit("generate", who).allowed
    third = first.hit("generate", who)
    assert third.allowed and third.remaining == 0
    refused = second.hit("generate", who)
    assert not refused.allowed and refused.remaining == 0 and "Retry-After" in refused.headers
    assert not first.hit("generate", who).allowed
    assert first.peek("generate", who).remaining == second.peek("generate", who).remaining == 0
    # The budget is per (kind, identity): another kind and another caller are untouched.
    assert second.hit("default", who).remaining == 4
    assert second.hit("generate", _identity()).remaining == 2


@needs_redis
def test_concurrent_replicas_never_admit_more_than_the_limit():
    """Check-and-add is one Lua script in Redis: 40 simultaneous requests through two limiters
    (as two API processes would send) admit exactly the limit."""
    limiters = [RateLimiter(LIMITS, storage_url=REDIS_URL) for _ in range(2)]
    who, admitted, lock = _identity(), [], threading.Lock()
    start = threading.Barrier(40)

    def request(n: int) -> None:
        start.wait()
        decision = limiters[n % 2].hit("generate", who)
        with lock:
            admitted.append(decision.allowed)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 3 and len(admitted) == 40


def test_two_in_memory_limiters_count_apart():
    """Without a storage URL each process keeps its own counters (the single-process default)."""
    first, second = RateLimiter(LIMITS), RateLimiter(LIMITS)
    who = _identity()
    assert all(first.hit("generate", who).allowed for _ in range(3))
    assert not first.hit("generate", who).allowed
    assert second.hit("generate", who).allowed and second.peek("generate", who).remaining == 2


def test_an_unreachable_redis_fails_open_with_one_warning(caplog):
    """A rate-limiter outage must not take the API down: every request is admitted (past the
    limit too) with a full budget in its headers, and the log says so once, not per request."""
    limiter = RateLimiter(LIMITS, storage_url=UNREACHABLE_REDIS_URL)
    who = _identity()
    with caplog.at_level(logging.WARNING, logger=ratelimit.__name__):
        decisions = [limiter.hit("generate", who) for _ in range(10)] + [limiter.peek("generate", who)]
    assert all(d.allowed and d.limit == 3 and d.remaining == 3 for d in decisions)
    assert "Retry-After" not in decisions[-1].headers
    warnings = [r for r in caplog.records if "rate limits not enforced" in r.getMessage()]
    assert len(warnings) == 1 and "127.0.0.1:1" in warnings[0].getMessage()


@needs_redis
def test_limits_are_enforced_again_when_redis_answers_again(monkeypatch, caplog):
    """One failure opens the gate for ``OUTAGE_BACKOFF_SECONDS`` without asking Redis; after it,
    Redis is asked again and the shared budget (with what was counted before) applies."""
    limiter = RateLimiter(LIMITS, storage_url=REDIS_URL)
    who = _identity()
    assert limiter.hit("generate", who).remaining == 2
    real_hit, calls = limiter._limiter.hit, []

    def broken(*args, **kwargs):
        calls.append(args)
        raise StorageError(ConnectionError("Redis went away"))

    monkeypatch.setattr(limiter._limiter, "hit", broken)
    with caplog.at_level(logging.WARNING, logger=ratelimit.__name__):
        assert all(limiter.hit("generate", who).allowed for _ in range(5))
        assert len(calls) == 1  # the backoff: the other four did not wait on Redis
        monkeypatch.setattr(limiter._limiter, "hit", real_hit)
        limiter._down_until = time.monotonic()  # the backoff is over
        assert limiter.hit("generate", who).remaining == 1  # the one counted before the outage, and this one
    assert any("enforced again" in r.getMessage() for r in caplog.records)
