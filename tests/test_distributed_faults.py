"""Faults in the distributed topology (issue 12, "Nothing lost", "Fair, shared limits"): every
part is its own process, killed for real.

- ``kill -9`` of the worker running a task: another worker runs it again; exactly one terminal
  event and one terminal webhook are recorded.
- ``kill -9`` of an API process mid-task: the worker finishes; a new API process serves the result.
- Two API replicas: one rate-limit budget per key.
- A broker that lost its messages (Redis restarted without persistence): reconciliation
  announces the pending tasks again and they run.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import AUTH, OTHER_KEY, SMALL, wait_for_terminal
from tests.distributed import Topology, require_services
from tests.test_webhooks import Receiver

LONG = {**SMALL, "num_inference_steps": 150}  # a few seconds on the tiny model: long enough to interrupt
SMALL_SETTINGS = {k: v for k, v in SMALL.items() if k != "prompt"}
STRICT = "generate=5 per 10 seconds;batch=1000 per 1 second;default=10000 per 1 second"


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    require_services()
    with Topology(tmp_path_factory.mktemp("distributed-faults"), rate_limits=STRICT) as topology:
        topology.start_api("api1")
        topology.start_api("api2")
        yield topology


def _client(topology: Topology, api: str = "api1", headers: dict | None = None) -> httpx.Client:
    return httpx.Client(base_url=topology.url(api), headers=headers or AUTH, timeout=30)


def _task_row(topology: Topology, task_id: str):
    from studio.db import Database
    from studio.db.schema import tasks

    database = Database(topology.database_url)
    try:
        with database.connect() as db:
            return db.execute(tasks.select().where(tasks.c.id == task_id)).one()
    finally:
        database.dispose()


def _events(topology: Topology, task_id: str) -> list[str]:
    from studio.db import Database
    from studio.db.schema import events

    database = Database(topology.database_url)
    try:
        with database.connect() as db:
            return list(db.execute(events.select().with_only_columns(events.c.type)
                                   .where(events.c.task_id == task_id).order_by(events.c.id)).scalars())
    finally:
        database.dispose()


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _running_on(topology: Topology, task_id: str) -> str | None:
    row = _task_row(topology, task_id)
    return row.worker_id if row.status == "generating_base" else None


def test_a_killed_workers_task_runs_again_on_another_worker_with_one_terminal_event(topology):
    topology.start_worker("worker-a")
    receiver = Receiver(lambda event, attempt: 200)
    try:
        with _client(topology) as http:
            task_id = http.post("/v1/generate", json={**LONG, "webhook_url": receiver.url}).json()["task_id"]
            first_worker = _wait(lambda: _running_on(topology, task_id), 60, "the task to run")
            topology.kill("worker-a")  # kill -9, the Celery parent and its child together
            topology.start_worker("worker-b")
            final = wait_for_terminal(http, task_id, timeout=180)
            assert final["status"] == "completed", final
            row = _task_row(topology, task_id)
            assert row.worker_id != first_worker and row.attempt == 2
            assert http.get(f"/v1/videos/{task_id}.mp4").status_code == 200
        kinds = _events(topology, task_id)
        assert kinds.count("task.requeued") == 1
        assert [k for k in kinds if k in ("task.completed", "task.failed", "task.cancelled")] == ["task.completed"]
        _wait(lambda: receiver.events("task.completed"), 30, "the completed webhook")
        time.sleep(1.0)
        assert len(receiver.events("task.completed")) == 1 and not receiver.events("task.failed")
    finally:
        receiver.close()
        topology.kill("worker-b")


def test_killing_an_api_process_loses_nothing_running_on_the_workers(topology):
    topology.start_worker("worker-c")
    try:
        with _client(topology, "api2") as http:
            task_id = http.post("/v1/generate", json=LONG).json()["task_id"]
        _wait(lambda: _running_on(topology, task_id), 60, "the task to run")
        topology.kill("api2")  # kill -9 while the worker runs it
        topology.start_api("api2")
        with _client(topology, "api2") as http:
            assert wait_for_terminal(http, task_id, timeout=180)["status"] == "completed"
            assert http.get(f"/v1/result/{task_id}").status_code == 200
    finally:
        topology.kill("worker-c")


def test_two_api_replicas_share_one_rate_limit_budget(topology):
    """``generate`` allows 5 per 10 s per key: six requests spread over both replicas admit 5."""
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    codes = []
    with _client(topology, "api1", other) as one, _client(topology, "api2", other) as two:
        for i in range(6):
            codes.append((one if i % 2 == 0 else two).post("/v1/generate", json=SMALL).status_code)
        refused = two.post("/v1/generate", json=SMALL)
    assert codes.count(202) == 5 and codes[-1] == 429, codes
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["type"] == "RateLimitExceeded" or "rate" in refused.json()["error"].lower()


def test_tasks_whose_messages_the_broker_lost_still_run(topology):
    """No worker runs while two tasks are queued; the broker then loses every message (a Redis
    without persistence restarted). A worker that starts later still gets both: the API's
    reconciliation sees ready tasks without waiting messages and announces them again."""
    import redis

    with _client(topology) as http:
        ids = [http.post("/v1/generate", json=SMALL).json()["task_id"] for _ in range(2)]
        redis.Redis.from_url(topology.env["ECHOEL_BROKER_URL"]).flushdb()
        topology.start_worker("worker-d")
        try:
            assert [wait_for_terminal(http, t, timeout=120)["status"] for t in ids] == ["completed", "completed"]
        finally:
            topology.kill("worker-d")


def test_a_task_waits_for_a_worker_that_serves_its_model(topology):
    """Model affinity: a worker serving only ``tiny-vace`` never takes a ``tiny`` generation;
    the task's status says why it waits, and a worker for ``tiny`` runs it once it starts."""
    # Workers killed by the tests above count as alive until their heartbeats are LOST_AFTER_SECONDS old.
    _wait(lambda: not any("studio.tiny" in w.queues for w in topology.alive_workers()), 30, "the killed workers")
    topology.start_worker("worker-vace", models="tiny-vace")
    try:
        vace_workers = {w.id for w in topology.alive_workers()}
        with _client(topology) as http:
            task_id = http.post("/v1/generate", json=SMALL).json()["task_id"]
            time.sleep(3)
            status = http.get(f"/v1/status/{task_id}").json()
            assert status["status"] == "pending", status
            assert "no running worker serves queue studio.tiny" in status["current_step"]
            topology.start_worker("worker-tiny", models="tiny")
            assert wait_for_terminal(http, task_id, timeout=120)["status"] == "completed"
        assert _task_row(topology, task_id).worker_id not in vace_workers
    finally:
        topology.kill("worker-vace")
        if "worker-tiny" in topology.processes:
            topology.kill("worker-tiny")


def test_celery_workers_claim_in_priority_order(topology):
    """The broker only wakes workers; the database decides what runs next, as with the embedded
    worker: queued while no worker runs, a high-priority batch starts before an earlier low one."""
    _wait(lambda: not any("studio.tiny" in w.queues for w in topology.alive_workers()), 30, "the killed workers")
    with _client(topology) as http:
        low = http.post("/v1/genius/batch/submit", json={"prompts": ["a quiet pond", "a quiet lake"],
                                                         "priority": "low", "settings": SMALL_SETTINGS})
        high = http.post("/v1/genius/batch/submit", json={"prompts": ["a storm at sea"], "priority": "high",
                                                          "settings": SMALL_SETTINGS})
        assert low.status_code == high.status_code == 202, (low.text, high.text)
        ids = low.json()["task_ids"] + high.json()["task_ids"]
        topology.start_worker("worker-p", models="tiny")
        try:
            assert {wait_for_terminal(http, t, timeout=120)["status"] for t in ids} == {"completed"}
        finally:
            topology.kill("worker-p")
    started = sorted(ids, key=lambda t: _task_row(topology, t).started_at)
    assert started[0] == high.json()["task_ids"][0], "the high-priority task ran first"


def test_an_idempotency_key_holds_across_api_replicas(topology):
    """The same request with the same Idempotency-Key sent to both replicas at once: one task."""
    from concurrent.futures import ThreadPoolExecutor

    headers = {**AUTH, "Idempotency-Key": f"replicas-{time.time_ns()}"}

    def send(api: str) -> httpx.Response:
        with _client(topology, api, headers) as http:
            return http.post("/v1/generate", json=SMALL)

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(send, ["api1", "api2"]))
    assert [r.status_code for r in replies] == [202, 202], [r.text for r in replies]
    assert replies[0].json()["task_id"] == replies[1].json()["task_id"]
