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

Receivers never wait on each other: deliveries are grouped by destination (the URL's origin,
scheme + host + port) and each destination has its own sender thread, so one slow or dead
receiver holds up only its own deliveries. At most ``MAX_DESTINATIONS`` destinations are served
at once (the others wait for a free slot), and each holds at most ``DESTINATION_BACKLOG`` claimed
rows. Order per task is kept by the store, which hands out only the oldest unfinished delivery
of each (task, URL): a task's events reach a receiver in order, even across retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections import deque
from datetime import datetime, timezone
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from studio.jobs.events import completion
from studio.jobs.store import TaskStore
from studio.keys import KeyStore
from studio.media.fetch import fetch
from studio.media.url_policy import FetchFailed, FetchPolicy, URLRefused

log = logging.getLogger(__name__)

USER_AGENT = "EchoelmusicStudio-Webhooks/1.0"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
DELIVERY_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 64 * 1024  # receivers answer briefly; we never need more than the status
# A sender thread per destination, so this bounds the threads (and sockets) webhooks may hold.
MAX_DESTINATIONS = 16
# Claimed rows one destination may hold in memory; the rest wait in the outbox (durably).
DESTINATION_BACKLOG = 32


def destination(url: str) -> str:
    """The origin (``scheme://host:port``) a delivery goes to: the unit of concurrency."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a malformed port: its own destination; the fetcher will refuse the URL
        return url
    port = port or {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def outgoing_body(delivery: dict) -> bytes:
    """The body sent for an outbox row: its stored payload, and for ``task.completed`` the media
    URLs, made here at the edge (as every reply makes them) rather than stored with the task."""
    if delivery["event"] != "task.completed":
        return delivery["payload"].encode()
    payload = json.loads(delivery["payload"])
    urls = completion(delivery["task_id"], None)
    payload["data"] = {**payload["data"], "video_url": urls["video_url"], "thumbnail_url": urls["thumbnail_url"]}
    return json.dumps(payload, separators=(",", ":")).encode()


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
    """Sends due outbox rows: one claiming thread, plus one sender thread per busy destination."""

    def __init__(self, store: TaskStore, keys: KeyStore, policy: FetchPolicy, retry_base_seconds: float,
                 poll_seconds: float = 0.5, max_destinations: int = MAX_DESTINATIONS,
                 destination_backlog: int = DESTINATION_BACKLOG):
        self.store, self.keys = store, keys
        self.policy = FetchPolicy(max_bytes=MAX_RESPONSE_BYTES, timeout_seconds=DELIVERY_TIMEOUT_SECONDS,
                                  connect_timeout=min(5.0, DELIVERY_TIMEOUT_SECONDS),
                                  allow_loopback=policy.allow_loopback, max_redirects=0)
        self.retry_base_seconds = retry_base_seconds
        self.poll_seconds = poll_seconds
        self.max_destinations = max_destinations
        self.destination_backlog = destination_backlog
        self._stopping = threading.Event()
        self._wake = threading.Event()  # a delivery settled: its task's next event may be due now
        self._thread: threading.Thread | None = None
        self._lanes_lock = threading.Lock()
        self._lanes: dict[str, deque[dict]] = {}  # destination -> claimed rows not yet sent
        self._senders: dict[str, threading.Thread] = {}

    def start(self) -> None:
        """Requeue what a previous process was sending, then start claiming."""
        self.store.requeue_interrupted_webhooks()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="studio-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop claiming and let each sender finish its current attempt (rows still queued stay
        ``sending`` and go out again at the next start)."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._thread:
            self._thread.join(timeout)
        with self._lanes_lock:
            senders = list(self._senders.values())
        for sender in senders:
            sender.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            planned: dict[str, int] = {}  # rows accepted in this claim, per destination
            try:
                due = self.store.claim_due_webhooks(limit=self.max_destinations * self.destination_backlog,
                                                    accept=lambda row: self._has_room(row, planned))
            except Exception:  # a store error (busy, disk full) must not end deliveries for good
                log.exception("claiming due webhooks failed")
                due = []
            for delivery in due:
                self._enqueue(delivery)
            if not due:
                self._wake.wait(self.poll_seconds)

    def _has_room(self, delivery: dict, planned: dict[str, int]) -> bool:
        """Whether ``delivery``'s destination can take one more row without exceeding the bounds."""
        where = destination(delivery["url"])
        with self._lanes_lock:
            busy = self._lanes.keys() | planned.keys()
            if where not in busy and len(busy) >= self.max_destinations:
                return False
            if len(self._lanes.get(where, ())) + planned.get(where, 0) >= self.destination_backlog:
                return False
        planned[where] = planned.get(where, 0) + 1
        return True

    def _enqueue(self, delivery: dict) -> None:
        where = destination(delivery["url"])
        with self._lanes_lock:
            lane = self._lanes.get(where)
            if lane is not None:
                lane.append(delivery)
                return
            self._lanes[where] = deque([delivery])
            sender = threading.Thread(target=self._send_all, args=(where,), daemon=True,
                                      name=f"studio-webhooks-{len(self._senders) + 1}")
            self._senders[where] = sender
        sender.start()

    def _send_all(self, where: str) -> None:
        """Sender thread of one destination: its rows one at a time, then it ends."""
        while True:
            with self._lanes_lock:
                lane = self._lanes[where]
                if not lane or self._stopping.is_set():
                    del self._lanes[where]
                    del self._senders[where]
                    return
                delivery = lane.popleft()
            try:
                self.deliver(delivery)
            except Exception:  # never leave a row ``sending`` (blocking its task) for a bug
                log.exception("webhook %s: sending failed", delivery["id"])
                try:
                    self._retry_or_fail(delivery, "internal error while sending", retryable=True)
                except Exception:
                    log.exception("webhook %s: could not record the failure", delivery["id"])
            self._wake.set()

    def deliver(self, delivery: dict) -> str:
        """One attempt at one outbox row; records and returns the outcome."""
        key = self.keys.get(delivery["owner"])
        if key is None:
            self.store.settle_webhook(delivery["id"], "failed", "the API key that created the task no longer exists")
            return "failed"
        body = outgoing_body(delivery)
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
