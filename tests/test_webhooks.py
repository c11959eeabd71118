"""Signed webhooks from the durable outbox, checked by a receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from studio.jobs.store import TaskStore
from studio.jobs.webhooks import WebhookDispatcher
from studio.keys import KeyStore, env_webhook_secret
from studio.media.url_policy import FetchPolicy
from tests.conftest import API_KEY, OTHER_KEY, SMALL, wait_for_terminal

SECRET = env_webhook_secret(API_KEY)
OTHER_SECRET = env_webhook_secret(OTHER_KEY)


def verify_webhook(payload, signature, secret):
    """The seed's verification function, verbatim."""
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", signature)


class Receiver:
    """A webhook receiver that verifies both signatures and answers from a script."""

    def __init__(self, answer, secret: str = SECRET, delay: float = 0.0):
        self.answer = answer  # (event name, attempt number for that event) -> HTTP status
        self.deliveries: list[dict] = []
        self.arrivals: list[tuple[float, str, str]] = []  # (monotonic time, task id, event) on arrival
        self.in_flight = self.most_in_flight = 0
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload = json.loads(body)
                with lock:
                    receiver.arrivals.append((time.monotonic(), payload["task_id"], payload["event"]))
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                time.sleep(delay)  # a slow receiver: it answers only after ``delay`` seconds
                with lock:
                    receiver.in_flight -= 1
                try:
                    Webhook(secret).verify(body, headers)
                    standard_ok = True
                except WebhookVerificationError:
                    standard_ok = False
                attempt = 1 + sum(d["event"] == payload["event"] for d in receiver.deliveries)
                receiver.deliveries.append({
                    "event": payload["event"], "payload": payload, "id": headers["webhook-id"],
                    "seed_ok": verify_webhook(body, headers["x-echoel-signature"], secret),
                    "standard_ok": standard_ok})
                self.send_response(receiver.answer(payload["event"], attempt))
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, name: str) -> list[dict]:
        return [d for d in self.deliveries if d["event"] == name]

    def close(self):
        self.server.shutdown()


def wait_until(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_completed_webhook_is_retried_until_it_succeeds(http):
    receiver = Receiver(lambda event, attempt: 500 if event == "task.completed" and attempt <= 2 else 200)
    try:
        task_id = http.post("/v1/generate", json={**SMALL, "webhook_url": receiver.url}).json()["task_id"]
        assert wait_for_terminal(http, task_id)["status"] == "completed"
        wait_until(lambda: len(receiver.events("task.completed")) == 3)
        completed = receiver.events("task.completed")
        assert len({d["id"] for d in completed}) == 1  # one webhook id across retries
        assert all(d["seed_ok"] and d["standard_ok"] for d in receiver.deliveries)
        payload = completed[-1]["payload"]
        assert payload["task_id"] == task_id and payload["data"]["video_url"] == f"/v1/videos/{task_id}.mp4"
        assert payload["timestamp"].endswith("Z")
        names = [d["event"] for d in receiver.deliveries]
        assert names.index("task.created") < names.index("task.started") < names.index("task.completed")
        time.sleep(1.0)
        assert len(receiver.events("task.completed")) == 3  # and no more after success
    finally:
        receiver.close()


def test_410_stops_deliveries_for_that_task(http, live_server):
    receiver = Receiver(lambda event, attempt: 410)
    try:
        task_id = http.post("/v1/generate", json={**SMALL, "webhook_url": receiver.url}).json()["task_id"]
        assert wait_for_terminal(http, task_id)["status"] == "completed"
        wait_until(lambda: all(w["status"] not in ("pending", "sending")
                               for w in live_server.studio.store.webhooks(task_id)))
        assert len(receiver.deliveries) == 1  # the first answer was 410; nothing else was sent
        assert {w["status"] for w in live_server.studio.store.webhooks(task_id)} == {"gone"}
    finally:
        receiver.close()


@pytest.mark.usefixtures("cpu_host")  # asserts what a server without CUDA does
def test_a_failed_task_sends_task_failed(http):
    receiver = Receiver(lambda event, attempt: 200)
    try:
        body = {**SMALL, "model": "wan2.1-t2v-1.3b", "webhook_url": receiver.url}  # no GPU here: fails
        task_id = http.post("/v1/generate", json=body).json()["task_id"]
        assert wait_for_terminal(http, task_id)["status"] == "failed"
        wait_until(lambda: receiver.events("task.failed"))
        data = receiver.events("task.failed")[0]["payload"]["data"]
        assert data["error_type"] == "ModelUnavailable"
    finally:
        receiver.close()


def test_standard_webhooks_signature_rejects_tampering_and_replays():
    from studio.jobs.webhooks import signed_headers

    body = b'{"event":"task.completed"}'
    headers = signed_headers(SECRET, "msg_1", body, time.time())
    Webhook(SECRET).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"event":"task.failed"}', headers)
    old = signed_headers(SECRET, "msg_1", body, time.time() - 600)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, old)
    assert verify_webhook(body.decode(), headers["X-Echoel-Signature"], SECRET)


def test_deliveries_interrupted_by_a_crash_are_sent_again(tmp_path):
    store = TaskStore(tmp_path / "s.sqlite3")
    task, _ = store.create_task("t2v", {}, owner="k", webhook_url="http://example.com/hook")
    claimed = store.claim_due_webhooks()
    assert [c["event"] for c in claimed] == ["task.created"]
    store.close()
    store = TaskStore(tmp_path / "s.sqlite3")  # a new process
    assert store.requeue_interrupted_webhooks() == 1
    again = store.claim_due_webhooks()
    assert [c["id"] for c in again] == [claimed[0]["id"]]


# -- the dispatcher on its own (a store in a temp folder, receivers on loopback) ---------------


@pytest.fixture()
def outbox(tmp_path):
    """A task store, the keys of both test API keys, and a dispatcher factory; all stopped after."""
    store = TaskStore(tmp_path / "s.sqlite3")
    keys = KeyStore(tmp_path / "s.sqlite3", (API_KEY, OTHER_KEY))
    dispatchers: list[WebhookDispatcher] = []

    def start(**options) -> WebhookDispatcher:
        dispatcher = WebhookDispatcher(store, keys, FetchPolicy(allow_loopback=True), retry_base_seconds=0.2,
                                       poll_seconds=0.05, **options)
        dispatcher.start()
        dispatchers.append(dispatcher)
        return dispatcher

    yield store, keys, start
    for dispatcher in dispatchers:
        dispatcher.stop(timeout=15)
    store.close()
    keys.close()


def run_task(store: TaskStore, owner: str, url: str) -> str:
    """A task that is created, started and completed at once: three webhooks queued in order."""
    task, _ = store.create_task("t2v", {}, owner=owner, webhook_url=url)
    assert store.claim_next().id == task.id
    store.finish(task.id, "completed", result={"video_url": f"/v1/videos/{task.id}.mp4"})
    return task.id


LIFECYCLE = ["task.created", "task.started", "task.completed"]


def test_a_slow_receiver_does_not_delay_another_keys_webhooks(outbox):
    store, keys, start = outbox
    slow = Receiver(lambda event, attempt: 200, delay=2.0)
    fast = Receiver(lambda event, attempt: 200, secret=OTHER_SECRET)
    try:
        start()
        slow_task = run_task(store, keys.lookup(API_KEY).id, slow.url)
        wait_until(lambda: slow.arrivals, timeout=10)  # the slow receiver is now holding a delivery
        submitted = time.monotonic()
        fast_task = run_task(store, keys.lookup(OTHER_KEY).id, fast.url)
        wait_until(lambda: len(fast.deliveries) == 3, timeout=10)
        # One sender served everybody before: the fast receiver waited >= 6 s (three 2 s answers).
        created_after = fast.arrivals[0][0] - submitted
        all_after = fast.arrivals[-1][0] - submitted
        assert created_after < 1.0 and all_after < 1.5, (created_after, all_after)
        assert [d["event"] for d in fast.deliveries] == LIFECYCLE
        assert all(d["seed_ok"] and d["standard_ok"] for d in fast.deliveries)
        wait_until(lambda: len(slow.deliveries) == 3, timeout=15)
        assert [e for _, t, e in slow.arrivals if t == slow_task] == LIFECYCLE  # per-task order kept
        wait_until(lambda: {w["status"] for w in store.webhooks(fast_task) + store.webhooks(slow_task)}
                   == {"delivered"}, timeout=5)  # marked once each reply is back
    finally:
        slow.close()
        fast.close()


def test_a_tasks_later_events_wait_for_its_retried_earlier_event(outbox):
    store, keys, start = outbox
    receiver = Receiver(lambda event, attempt: 503 if event == "task.created" and attempt <= 2 else 200)
    try:
        task_id = run_task(store, keys.lookup(API_KEY).id, receiver.url)
        start()
        wait_until(lambda: len(receiver.deliveries) == 5, timeout=15)
        # Never task.started (or task.completed) before the receiver accepted task.created.
        assert [d["event"] for d in receiver.deliveries] == ["task.created"] * 3 + LIFECYCLE[1:]
        # The receiver counts a delivery when it arrives; the outbox marks it once the reply is back.
        wait_until(lambda: {w["status"] for w in store.webhooks(task_id)} == {"delivered"}, timeout=5)
    finally:
        receiver.close()


def test_concurrent_destinations_are_bounded(outbox):
    store, keys, start = outbox
    receivers = [Receiver(lambda event, attempt: 200, delay=0.5) for _ in range(3)]  # three origins
    try:
        owner = keys.lookup(API_KEY).id
        for receiver in receivers:
            run_task(store, owner, receiver.url)
        busiest = 0

        def sample() -> bool:
            nonlocal busiest
            busiest = max(busiest, sum(r.in_flight for r in receivers))
            return all(len(r.deliveries) == 3 for r in receivers)

        start(max_destinations=2)
        wait_until(sample, timeout=20)
        assert busiest <= 2
        assert max(r.most_in_flight for r in receivers) == 1  # one delivery at a time per receiver
    finally:
        for receiver in receivers:
            receiver.close()
