"""The durable queue: restarts, failures that must not stop the worker, ordering, event buffers."""

from __future__ import annotations

import time

import pytest
import torch

from studio.config import Settings
from studio.core import Studio
from studio.engine.request import parse_request
from studio.jobs import store as st
from studio.jobs.events import Event, EventBus
from studio.jobs.store import TaskStore
from tests.conftest import SMALL


def wait_terminal(studio: Studio, task_id: str, timeout: float = 120) -> st.Task:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = studio.store.get(task_id)
        if task.is_terminal:
            return task
        time.sleep(0.05)
    raise TimeoutError(task_id)


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, model="tiny")


def test_restart_fails_tasks_left_running_and_runs_pending_ones(settings):
    # A previous process stored two tasks and died while running the first.
    store = TaskStore(settings.db_path)
    request = parse_request({**SMALL, "model": "tiny", "seed": 1}).model_dump()
    running, _ = store.create_task("t2v", request, owner="ui")
    pending, _ = store.create_task("t2v", request, owner="ui")
    assert store.claim_next().id == running.id
    store.set_status(running.id, st.GENERATING, "Denoising step 3/10")
    store.close()

    studio = Studio(settings)
    studio.start()
    try:
        lost = studio.status(running.id)
        assert lost.status == "failed" and lost.error_type == "WorkerLost" and "submit it again" in lost.error
        assert wait_terminal(studio, pending.id).status == "completed"
        assert [e["type"] for e in studio.store.events(running.id)] == ["task.created", "task.started", "task.failed"]
    finally:
        studio.stop()


def test_out_of_memory_fails_the_task_and_the_worker_keeps_serving(settings, monkeypatch):
    import studio.jobs.generation as generation_module

    real_run = generation_module.run_group
    calls = []

    def run_once_out_of_memory(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(generation_module, "run_group", run_once_out_of_memory)
    studio = Studio(settings)
    studio.start()
    try:
        first = studio.submit(parse_request(SMALL))
        second = studio.submit(parse_request(SMALL))
        failed = wait_terminal(studio, first.task_id)
        assert failed.status == "failed" and failed.error_type == "VramExceeded"
        assert "ran out of memory" in failed.error
        assert wait_terminal(studio, second.task_id).status == "completed"
    finally:
        studio.stop()


def test_unexpected_errors_do_not_leak_internals(settings, monkeypatch):
    import studio.jobs.generation as generation_module

    def broken(*args, **kwargs):
        raise RuntimeError("/secret/path/to/weights.safetensors is corrupt")

    monkeypatch.setattr(generation_module, "run_group", broken)
    studio = Studio(settings)
    studio.start()
    try:
        task = wait_terminal(studio, studio.submit(parse_request(SMALL)).task_id)
        assert task.status == "failed" and task.error_type == "InternalError"
        assert "/secret" not in task.error
    finally:
        studio.stop()


def test_queue_order_is_priority_then_age(tmp_path):
    store = TaskStore(tmp_path / "q.sqlite3")
    low, _ = store.create_task("t2v", {"n": 1}, priority=0)
    high, _ = store.create_task("t2v", {"n": 2}, priority=5)
    low2, _ = store.create_task("t2v", {"n": 3}, priority=0)
    assert [store.queue_position(t.id) for t in (high, low, low2)] == [1, 2, 3]
    assert [store.claim_next().id for _ in range(3)] == [high.id, low.id, low2.id]
    assert store.claim_next() is None
    assert store.queue_position(low.id) == 0


def test_finishing_twice_keeps_the_first_outcome(tmp_path):
    store = TaskStore(tmp_path / "q.sqlite3")
    task, _ = store.create_task("t2v", {})
    assert store.finish(task.id, st.CANCELLED, error="Task cancelled")
    assert not store.finish(task.id, st.COMPLETED, result={"video_url": "x"})
    assert store.get(task.id).status == st.CANCELLED


def test_a_slow_subscriber_keeps_the_newest_events_and_the_final_one():
    bus = EventBus(buffer_size=4)
    sub = bus.subscribe("t")
    for i in range(10):
        bus.publish(Event("t", "progress", {"i": i}))
    bus.publish(Event("t", "complete", {}))
    received = []
    while (event := sub.get(timeout=0.01)) is not None:
        received.append(event)
    assert [e.data.get("i") for e in received] == [7, 8, 9, None]
    assert received[-1].type == "complete" and sub.dropped == 7
    sub.close()
    bus.publish(Event("t", "progress", {}))  # nobody listening: no error


def test_hub_model_offline_and_uncached_is_a_clear_error(tmp_path, monkeypatch):
    from studio.errors import ModelUnavailable
    from studio.models import loader
    from studio.models.catalog import CATALOG

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match="not in the local Hugging Face cache"):
        loader._download(CATALOG["wan2.1-t2v-1.3b"], lambda fraction, message: None)
