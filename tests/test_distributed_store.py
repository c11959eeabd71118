"""The store's side of running tasks on Celery workers (issue 12), on SQLite, no processes:
queue-scoped claims, announcements of ready tasks, lost workers' tasks, runs that no longer own
their task, and the live channel falling back when Redis is down."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from studio.db.schema import workers
from studio.jobs import store as st
from studio.jobs.events import Event, EventBus
from studio.jobs.store import TaskStore
from studio.jobs.workers import (FAILED_LOST, LOST_AFTER_SECONDS, MAX_ATTEMPTS, WorkerRegistry,
                                 recover_lost_work)


@pytest.fixture()
def store(tmp_path):
    store = TaskStore(tmp_path / "studio.sqlite3")
    yield store
    store.close()


def _register(store: TaskStore, worker_id: str) -> WorkerRegistry:
    registry = WorkerRegistry(store.database)
    registry.register(worker_id, ["studio", "studio.tiny"], ["tiny"], "cpu", None)
    return registry


def _silence(store: TaskStore, worker_id: str) -> None:
    """As if ``worker_id`` had sent no heartbeat for longer than LOST_AFTER_SECONDS."""
    with store.database.connect() as db:
        db.execute(update(workers).where(workers.c.id == worker_id)
                   .values(last_seen=time.time() - LOST_AFTER_SECONDS - 1))


def test_a_worker_claims_only_from_the_queue_it_was_told_about(store):
    vace, _ = store.create_task("inpaint", {"x": 1}, queue="studio.tiny-vace")
    tiny, _ = store.create_task("t2v", {"x": 2}, queue="studio.tiny")
    claimed = store.claim_next(queue="studio.tiny", worker_id="w1")
    assert claimed.id == tiny.id and claimed.worker_id == "w1" and claimed.attempt == 1
    assert store.claim_next(queue="studio.tiny") is None  # vace's task is not on this queue
    assert store.claim_next(queue="studio.tiny-vace").id == vace.id


def test_tasks_that_become_ready_on_a_worker_are_announced_after_the_commit(store):
    announced: list[tuple[str, str]] = []
    store.on_ready = announced.extend
    shot, _ = store.create_task("t2v", {}, owner="k", queue="studio.tiny")
    stitch, _ = store.create_task("scene", {}, owner="k", depends_on=[shot.id], queue="studio")
    assert announced == []  # new tasks: their submit announces them, after measuring its reply
    assert store.ready_by_queue() == {"studio.tiny": 1} and store.ready_ids("studio.tiny", 5) == [shot.id]
    store.claim_next(queue="studio.tiny", worker_id="w1")
    store.finish(shot.id, st.COMPLETED, result={"metadata": {}})
    assert announced == [(stitch.id, "studio")]  # its last dependency completed
    claimed = store.claim_next(queue="studio", worker_id="w1")
    store.requeue(claimed.id, "server stopping")
    assert announced == [(stitch.id, "studio")] * 2


def test_a_lost_workers_task_runs_again_then_fails_once_after_the_last_attempt(store):
    announced: list[tuple[str, str]] = []
    store.on_ready = announced.extend
    task, _ = store.create_task("t2v", {}, owner="k", webhook_url="https://example.com/hook", queue="studio.tiny")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        worker_id = f"w{attempt}"
        registry = _register(store, worker_id)
        assert store.claim_next(queue="studio.tiny", worker_id=worker_id).attempt == attempt
        assert recover_lost_work(registry, store) == ([], [])  # alive: nothing to recover
        _silence(store, worker_id)
        requeued, failed = recover_lost_work(registry, store)
        if attempt < MAX_ATTEMPTS:
            assert (requeued, failed) == ([task.id], [])
            assert store.get(task.id).status == st.PENDING and announced[-1] == (task.id, "studio.tiny")
        else:
            assert (requeued, failed) == ([], [task.id])
    ended = store.get(task.id)
    assert ended.status == st.FAILED and ended.error_type == "WorkerLost" and ended.error == FAILED_LOST
    types = [e["type"] for e in store.events(task.id)]
    assert types.count("task.requeued") == MAX_ATTEMPTS - 1 and types.count("task.failed") == 1
    assert [d["event"] for d in store.webhooks(task.id)].count("task.failed") == 1
    assert recover_lost_work(registry, store) == ([], [])  # and never again
    assert not registry.alive() and {w.id for w in registry.all()} == {"w1", "w2", "w3"}


def test_a_run_that_lost_its_task_cannot_end_it(store):
    """A worker taken for lost (its task queued again and claimed by another) that comes back
    cannot end the new run's task."""
    task, _ = store.create_task("t2v", {}, queue="studio.tiny")
    first = store.claim_next(queue="studio.tiny", worker_id="old")
    store.requeue(task.id, "lost")
    second = store.claim_next(queue="studio.tiny", worker_id="new")
    assert not store.finish(task.id, st.FAILED, error="late", error_type="InternalError", attempt=first.attempt)
    assert store.get(task.id).status == st.LOADING_MODEL
    assert store.finish(task.id, st.COMPLETED, result={"metadata": {}}, attempt=second.attempt)


def test_the_dependency_order_is_kept_as_data(store):
    parents = [store.create_task("t2v", {}, owner="k")[0].id for _ in range(4)]
    child, _ = store.create_task("scene", {}, owner="k", depends_on=list(reversed(parents)))
    assert store.dependencies(child.id) == list(reversed(parents))


def test_live_events_reach_this_process_while_redis_is_down(caplog):
    from studio.jobs.live import RedisLive

    bus = EventBus()
    live = RedisLive("redis://127.0.0.1:1/0", bus)  # nothing listens there
    bus.relay = live
    with bus.subscribe("t1") as sub:
        bus.publish(Event("t1", "progress", {"progress": 0.5}))
        event = sub.get(timeout=1)
    assert event is not None and event.data == {"progress": 0.5}
    assert "Redis is unreachable" in caplog.text


def _worker(worker_id: str, device: str = "NVIDIA H100", total: float | None = 80.0, used: float | None = 20.0,
            done: int = 0, task: str | None = None):
    from studio.jobs.workers import WorkerInfo

    now = time.time()
    return WorkerInfo(id=worker_id, hostname="h", pid=1, queues=["studio", "studio.tiny"], models=["tiny"],
                      device=device, memory_total_gb=total, memory_used_gb=used, loaded_model=None,
                      current_task=task, tasks_done=done, busy_seconds=done * 1.5, started_at=now, last_seen=now,
                      stopped_at=None)


def test_the_orchestrator_budgets_with_the_largest_worker_gpu():
    from studio.genius.orchestrator.selection import device_of_workers
    from studio.models.loader import DeviceMemory

    assert device_of_workers([]) is None  # tasks run in this process: it reads its own device
    cpu = device_of_workers([DeviceMemory("cpu", None, None)] * 2)
    assert not cpu.cuda and cpu.free_vram_gb is None
    best = device_of_workers([DeviceMemory("NVIDIA L4", 24.0, 3.0), DeviceMemory("NVIDIA H100", 80.0, 60.0)])
    assert best.cuda and best.free_vram_gb == 80.0 and "H100" in best.name


def _samples(text: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_sla_monitor_exports_every_worker_and_queue(tmp_path):
    from studio.genius.sla import SlaMonitor

    workers = [_worker("w1", done=3, task="t1"), _worker("w2", device="cpu", total=None, used=None)]
    monitor = SlaMonitor(tmp_path / "sla.sqlite3", workers=lambda: workers,
                         ready_by_queue=lambda: {"studio.tiny": 4, "studio": 1},
                         gpu_memory=lambda: int(sum(w.memory_used_gb or 0 for w in workers) * 2**30))
    samples = _samples(monitor.exporter.text().decode())
    assert samples[("echoel_workers_alive", ())] == 2
    assert samples[("echoel_worker_tasks_done", (("worker", "w1"),))] == 3
    assert samples[("echoel_worker_running", (("worker", "w1"),))] == 1
    assert samples[("echoel_worker_running", (("worker", "w2"),))] == 0
    assert samples[("echoel_worker_gpu_memory_bytes", (("device", "NVIDIA H100"), ("worker", "w1")))] == 20 * 2**30
    assert samples[("echoel_queue_ready", (("queue", "studio.tiny"),))] == 4
    assert samples[("echoel_gpu_memory_bytes", ())] == 20 * 2**30


def test_an_embedded_monitor_exports_no_worker_gauges(tmp_path):
    from studio.genius.sla import SlaMonitor

    text = SlaMonitor(tmp_path / "sla.sqlite3").exporter.text().decode()
    assert "echoel_workers_alive" not in text and "echoel_queue_ready" not in text


def test_api_processes_on_different_machines_sign_the_same_ui_cookies(tmp_path):
    """The owner-cookie secret lives in the database: two API processes with data folders of
    their own accept each other's cookies; a secret an earlier version kept in its data folder
    is adopted, so its visitors keep their tasks."""
    from studio.db import Database
    from studio.db.state import StudioState
    from studio.ui_access import OwnerCookies

    legacy = tmp_path / "machine-a"
    legacy.mkdir()
    old = OwnerCookies.load(legacy)  # an earlier version: the secret in ui_owner.key
    cookie = old.issue()
    database = Database.for_file(tmp_path / "studio.sqlite3")
    try:
        a = OwnerCookies.load(legacy, StudioState(database))
        (tmp_path / "machine-b").mkdir()
        b = OwnerCookies.load(tmp_path / "machine-b", StudioState(database))
        assert a.owner(cookie) == b.owner(cookie) == old.owner(cookie) is not None
        assert b.owner(b.issue()) is not None and a.owner(b.issue()) is not None
    finally:
        database.dispose()


def test_maintenance_is_one_switch_for_every_api_process(tmp_path, monkeypatch, capsys):
    from studio.__main__ import main
    from studio.config import Settings
    from studio.core import Studio

    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    monkeypatch.setenv("ECHOEL_DATABASE_URL", url)
    assert main(["--data-dir", str(tmp_path / "admin"), "maintenance", "on"]) == 0
    assert "on (new work gets 503)" in capsys.readouterr().out
    studio = Studio(Settings(model="tiny", data_dir=tmp_path / "api-b", database_url=url))
    try:
        assert studio.draining  # a process whose data folder has no flag file
        assert main(["--data-dir", str(tmp_path / "admin"), "maintenance", "off"]) == 0
        assert not studio.draining
    finally:
        studio.database.dispose()
