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
from studio.keys import env_webhook_secret
from tests.conftest import API_KEY, SMALL, wait_for_terminal

SECRET = env_webhook_secret(API_KEY)


def verify_webhook(payload, signature, secret):
    """The seed's verification function, verbatim."""
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", signature)


class Receiver:
    """A webhook receiver that verifies both signatures and answers from a script."""

    def __init__(self, answer):
        self.answer = answer  # (event name, attempt number for that event) -> HTTP status
        self.deliveries: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(SECRET).verify(body, headers)
                    standard_ok = True
                except WebhookVerificationError:
                    standard_ok = False
                payload = json.loads(body)
                attempt = 1 + sum(d["event"] == payload["event"] for d in receiver.deliveries)
                receiver.deliveries.append({
                    "event": payload["event"], "payload": payload, "id": headers["webhook-id"],
                    "seed_ok": verify_webhook(body, headers["x-echoel-signature"], SECRET),
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
