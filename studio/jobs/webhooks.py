"""Webhook delivery from the durable outbox in the task store.

Lifecycle events queue their webhook in the same transaction that records them (see
``TaskStore._add_event``); this dispatcher, a thread of its own so it never blocks the worker,
sends what is due. Every delivery is signed twice with the key's secret:

- the seed's ``X-Echoel-Signature: sha256=<hex HMAC-SHA256 of the body>`` (the secret string's
  bytes as the HMAC key, exactly what the seed's ``verify_webhook`` computes), and
- Standard Webhooks' ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` (via the
  ``standardwebhooks`` library), so receivers can reject replays and old messages.

5xx, 408, 429, timeouts and connection errors are retried with exponential backoff and jitter
(base x 4^attempt, +-20%) up to ``WEBHOOK_MAX_ATTEMPTS``; 410 stops all further deliveries of
that task to that URL; other answers end the delivery. The id stays the same on every retry.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time
from datetime import datetime, timezone

from standardwebhooks.webhooks import Webhook

from studio.jobs.store import TaskStore
from studio.keys import KeyStore
from studio.media.fetch import FetchFailed, FetchPolicy, URLRefused, fetch

log = logging.getLogger(__name__)

USER_AGENT = "EchoelmusicStudio-Webhooks/1.0"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DELIVERY_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 64 * 1024  # receivers answer briefly; we never need more than the status


def seed_signature(secret: str, body: bytes) -> str:
    """The seed's ``X-Echoel-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, delivery_id: str, body: bytes, now: float) -> dict[str, str]:
    """All headers of one delivery attempt."""
    timestamp = datetime.fromtimestamp(int(now), timezone.utc)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Echoel-Signature": seed_signature(secret, body),
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": Webhook(secret).sign(delivery_id, timestamp, body.decode()),
    }


class WebhookDispatcher:
    """Sends due outbox rows on a background thread."""

    def __init__(self, store: TaskStore, keys: KeyStore, policy: FetchPolicy, retry_base_seconds: float,
                 poll_seconds: float = 0.5):
        self.store, self.keys = store, keys
        self.policy = FetchPolicy(max_bytes=MAX_RESPONSE_BYTES, timeout_seconds=DELIVERY_TIMEOUT_SECONDS,
                                  connect_timeout=min(5.0, DELIVERY_TIMEOUT_SECONDS),
                                  allow_loopback=policy.allow_loopback, max_redirects=0)
        self.retry_base_seconds = retry_base_seconds
        self.poll_seconds = poll_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.store.requeue_interrupted_webhooks()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="studio-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            due = self.store.claim_due_webhooks()
            gone: set[tuple[str, str]] = set()  # (task, url) that answered 410 within this batch
            for delivery in due:
                target = (delivery["task_id"], delivery["url"])
                if target in gone:
                    self.store.settle_webhook(delivery["id"], "gone", "receiver answered 410 Gone earlier")
                elif self.deliver(delivery) == "gone":
                    gone.add(target)
            if not due:
                self._stopping.wait(self.poll_seconds)

    def deliver(self, delivery: dict) -> str:
        """One attempt at one outbox row; records and returns the outcome."""
        key = self.keys.get(delivery["owner"])
        if key is None:
            self.store.settle_webhook(delivery["id"], "failed", "the API key that created the task no longer exists")
            return "failed"
        body = delivery["payload"].encode()
        headers = signed_headers(key.webhook_secret, delivery["id"], body, time.time())
        try:
            response = fetch(delivery["url"], self.policy, method="POST", content=body, headers=headers,
                             follow_redirects=False)
        except URLRefused as error:
            self.store.settle_webhook(delivery["id"], "failed", error.detail)
            return "failed"
        except FetchFailed as error:
            return self._retry_or_fail(delivery, error.detail, error.retryable)
        status = response.status_code
        if 200 <= status < 300:
            self.store.settle_webhook(delivery["id"], "delivered")
            return "delivered"
        if status == 410:
            self.store.settle_webhook(delivery["id"], "gone", "receiver answered 410 Gone")
            return "gone"
        return self._retry_or_fail(delivery, f"receiver answered {status}", status in RETRY_STATUSES)

    def _retry_or_fail(self, delivery: dict, reason: str, retryable: bool) -> str:
        attempt = delivery["attempts"] + 1
        if not retryable or attempt >= delivery["max_attempts"]:
            self.store.settle_webhook(delivery["id"], "failed", reason)
            return "failed"
        delay = self.retry_base_seconds * 4 ** (attempt - 1) * random.uniform(0.8, 1.2)
        self.store.settle_webhook(delivery["id"], "pending", reason, retry_at=time.time() + delay)
        log.info("webhook %s attempt %d failed (%s); retrying in %.1f s", delivery["id"], attempt, reason, delay)
        return "pending"
