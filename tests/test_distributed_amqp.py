"""The distributed topology on a RabbitMQ broker (``ECHOEL_BROKER_URL=amqp://...``) instead of
Redis: one API process, one worker; a generation, a cancel, and reconciliation counting the
messages waiting in a RabbitMQ queue."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.conftest import AUTH, SMALL, wait_for_terminal
from tests.distributed import RABBITMQ, Topology, require_services


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    require_services(rabbitmq=True)
    with Topology(tmp_path_factory.mktemp("distributed-amqp"), broker="amqp") as topology:
        topology.start_api()
        topology.start_worker("worker1", models="tiny")
        yield topology


def test_generation_and_cancel_through_rabbitmq(topology):
    with httpx.Client(base_url=topology.url(), headers=AUTH, timeout=30) as http:
        done = http.post("/v1/generate", json=SMALL).json()["task_id"]
        assert wait_for_terminal(http, done, timeout=120)["status"] == "completed"
        assert http.get(f"/v1/videos/{done}.mp4").status_code == 200
        long = http.post("/v1/generate", json={**SMALL, "num_inference_steps": 150}).json()["task_id"]
        while http.get(f"/v1/status/{long}").json()["status"] == "pending":
            pass
        http.post(f"/v1/cancel/{long}")
        assert wait_for_terminal(http, long, timeout=60)["status"] == "cancelled"


def test_reconciliation_counts_the_messages_waiting_in_a_rabbitmq_queue():
    from studio.jobs.celery_app import make_app, publish, waiting_messages

    require_services(rabbitmq=True)
    app = make_app(RABBITMQ)
    queue = f"studio.test-count-{uuid.uuid4().hex[:8]}"
    try:
        assert waiting_messages(app, queue) == 0  # never declared: nothing waits there
        publish(app, queue, "t-1")
        publish(app, queue, "t-2")
        # The broker enqueues a published message a moment later; the count catches up.
        deadline = time.monotonic() + 10
        while waiting_messages(app, queue) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting_messages(app, queue) == 2
    finally:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
