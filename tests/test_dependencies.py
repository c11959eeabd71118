"""Task dependencies (``depends_on``): a scene's stitch waits for its shots whatever the queue
order, a failed or cancelled dependency fails its dependants, cancels follow the table."""

from __future__ import annotations

import sqlite3
import time

import pytest

from studio.config import Settings
from studio.core import Studio
from studio.engine.request import parse_request
from studio.errors import InvalidRequest
from studio.genius.scene import submit as scene_submit
from studio.genius.scene.schema import SceneEditRequest, SceneEditResponse
from studio.jobs import store as st
from studio.jobs.store import TaskStore
from tests.conftest import SMALL
from tests.test_db_layer import OLD_TASKS_WITHOUT_LATER_COLUMNS
from tests.test_jobs import wait_terminal

SETTINGS = {"fps": 12, "resolution": "480p", "num_inference_steps": 10, "seed": 4}


def event_time(store: TaskStore, task_id: str, type_: str) -> float:
    return next(e["created_at"] for e in store.events(task_id) if e["type"] == type_)


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, model="tiny")


@pytest.fixture()
def store(tmp_path):
    store = TaskStore(tmp_path / "tasks.db")
    yield store
    store.close()


def scene_edit(studio: Studio, scenes: int = 2) -> SceneEditResponse:
    request = SceneEditRequest.model_validate(
        {"scenes": [{"prompt": f"shot number {i}", "duration": 1} for i in range(scenes)],
         "transitions": [{"type": "crossfade"}] * (scenes - 1), "transition_duration_seconds": 0.25,
         "settings": SETTINGS})
    return scene_submit.submit(studio.services, request, "ui")


# -- the queue ----------------------------------------------------------------------------------

def test_a_task_is_not_claimed_before_its_dependencies_complete(store):
    shots = [store.create_task("t2v", {"n": i}, priority=1, owner="ui")[0].id for i in range(2)]
    # Higher priority and the oldest would put the stitch first by queue order alone.
    stitch, _ = store.create_task("scene", {"shots": shots}, priority=5, owner="ui", depends_on=shots)
    assert store.dependencies(stitch.id) == shots and store.dependants(shots[0]) == [stitch.id]
    first = store.claim_next()
    assert first.id == shots[0]
    second = store.claim_next()
    assert second.id == shots[1]
    assert store.claim_next() is None  # both shots run: the stitch waits
    store.finish(first.id, st.COMPLETED, result={"metadata": {}})
    assert store.claim_next() is None  # one shot still running
    store.finish(second.id, st.COMPLETED, result={"metadata": {}})
    assert store.claim_next().id == stitch.id


def test_a_failed_dependency_fails_its_dependants_with_a_reason(store):
    shot, _ = store.create_task("t2v", {}, owner="ui", webhook_url="https://example.com/hook")
    stitch, _ = store.create_task("scene", {}, owner="ui", depends_on=[shot.id], webhook_url="https://example.com/hook")
    after, _ = store.create_task("v2v", {}, owner="ui", depends_on=[stitch.id])  # two levels down
    assert store.claim_next().id == shot.id
    store.finish(shot.id, st.FAILED, error="out of memory", error_type="VramExceeded")
    ended = store.get(stitch.id)
    assert ended.status == st.FAILED and ended.error_type == st.DEPENDENCY_FAILED
    assert shot.id in ended.error and "failed (VramExceeded)" in ended.error
    assert [e["type"] for e in store.events(stitch.id)] == ["task.created", "task.failed"]
    assert [w["event"] for w in store.webhooks(stitch.id)] == ["task.created", "task.failed"]
    chained = store.get(after.id)
    assert chained.status == st.FAILED and chained.error_type == st.DEPENDENCY_FAILED and stitch.id in chained.error
    assert store.claim_next() is None


def test_a_cancelled_dependency_fails_its_dependants(store):
    shot, _ = store.create_task("t2v", {}, owner="ui")
    stitch, _ = store.create_task("scene", {}, owner="ui", depends_on=[shot.id])
    assert store.request_cancel(shot.id)
    ended = store.get(stitch.id)
    assert ended.status == st.FAILED and ended.error_type == st.DEPENDENCY_FAILED and "cancelled" in ended.error
    # A dependant created after its dependency already failed ends at once.
    late, _ = store.create_task("scene", {}, owner="ui", depends_on=[shot.id])
    assert late.status == st.FAILED and late.error_type == st.DEPENDENCY_FAILED


def test_a_dependency_left_running_by_a_dead_process_fails_its_dependants(store):
    shot, _ = store.create_task("t2v", {}, owner="ui")
    stitch, _ = store.create_task("scene", {}, owner="ui", depends_on=[shot.id])
    store.claim_next()
    assert store.fail_interrupted("gone") == [shot.id]
    ended = store.get(stitch.id)
    assert ended.status == st.FAILED and ended.error_type == st.DEPENDENCY_FAILED and "WorkerLost" in ended.error


def test_unknown_or_foreign_dependencies_are_refused(store):
    mine, _ = store.create_task("t2v", {}, owner="key-a")
    theirs, _ = store.create_task("t2v", {}, owner="key-b")
    with pytest.raises(InvalidRequest, match="no task with id 'nope'"):
        store.create_task("scene", {}, owner="key-a", depends_on=[mine.id, "nope"])
    with pytest.raises(InvalidRequest, match=theirs.id):
        store.create_task("scene", {}, owner="key-a", depends_on=[theirs.id])
    assert [t.id for t in store.tasks_ahead()] == [mine.id, theirs.id]  # nothing half-created


def test_queue_position_of_a_waiting_task_counts_its_dependencies(store):
    shots = [store.create_task("t2v", {}, priority=1, owner="ui", estimated_seconds=10)[0].id for _ in range(2)]
    stitch, _ = store.create_task("scene", {}, priority=5, owner="ui", estimated_seconds=1, depends_on=shots)
    # The stitch is not "next": both shots start before it, and it is counted ahead of neither.
    assert store.queue_position(stitch.id) == 3
    assert [store.queue_position(s) for s in shots] == [1, 2]
    assert {t.id for t in store.tasks_ahead(stitch.id)} == set(shots)
    assert store.tasks_ahead(shots[0]) == []
    store.claim_next()
    assert store.queue_position(stitch.id) == 2 and store.queue_position(shots[1]) == 1


# -- scene edits ----------------------------------------------------------------------------------

def test_the_stitch_waits_for_its_shots_even_when_queued_first(settings):
    studio = Studio(settings)
    try:
        reply = scene_edit(studio)
        # Put the stitch at the head of the queue: only its dependencies may hold it back.
        with studio.database.connect() as db:
            db.exec_driver_sql("UPDATE tasks SET priority = 9 WHERE id = ?", (reply.task_id,))
        assert studio.store.dependencies(reply.task_id) == reply.shot_task_ids
        assert reply.queue_position == 3 and studio.status(reply.task_id).queue_position == 3
        studio.start()
        stitch = wait_terminal(studio, reply.task_id, timeout=180)
        assert stitch.status == st.COMPLETED, stitch.error
        started = event_time(studio.store, reply.task_id, "task.started")
        assert all(event_time(studio.store, s, "task.completed") <= started for s in reply.shot_task_ids)
    finally:
        studio.stop()


def test_cancelling_the_scene_cancels_its_shots_and_ends_the_stitch(settings):
    studio = Studio(settings)  # not started: everything stays queued
    try:
        reply = scene_edit(studio)
        other = scene_edit(studio)
        # A task of its own that also waits on one of the first edit's shots keeps that shot alive.
        shared = reply.shot_task_ids[1]
        keeper, _ = studio.store.create_task("scene", {"shots": [shared]}, owner="ui", depends_on=[shared])
        assert studio.cancel(reply.task_id).status == st.CANCELLED
        assert studio.store.get(reply.shot_task_ids[0]).status == st.CANCELLED
        assert studio.store.get(shared).status == st.PENDING
        assert all(studio.store.get(t).status == st.PENDING for t in [other.task_id, *other.shot_task_ids])
        # Cancelling a shot ends what depends on it, with the reason.
        studio.cancel(shared)
        ended = studio.store.get(keeper.id)
        assert ended.status == st.FAILED and ended.error_type == st.DEPENDENCY_FAILED and shared in ended.error
    finally:
        studio.stop()


def test_a_failed_shot_fails_the_scene_edit(settings, monkeypatch):
    import studio.jobs.generation as generation_module

    real_run = generation_module.run_group

    def failing(model, plans, *args, **kwargs):
        if plans[0].prompt.startswith("shot number 0"):
            raise RuntimeError("boom")
        return real_run(model, plans, *args, **kwargs)

    monkeypatch.setattr(generation_module, "run_group", failing)
    studio = Studio(settings)
    try:
        reply = scene_edit(studio)
        studio.start()
        stitch = wait_terminal(studio, reply.task_id)
        assert stitch.status == st.FAILED and stitch.error_type == st.DEPENDENCY_FAILED
        assert reply.shot_task_ids[0] in stitch.error
        assert studio.status(reply.task_id).error_type == st.DEPENDENCY_FAILED
        assert "task.started" not in [e["type"] for e in studio.store.events(reply.task_id)]
    finally:
        studio.stop()


# -- an existing database -------------------------------------------------------------------------

# The task table of the oldest versions (no owner, webhook_url, batch_id; no dependency table).
OLD_TASKS = OLD_TASKS_WITHOUT_LATER_COLUMNS


def test_a_database_without_the_dependency_table_loads_and_runs(settings):
    import json

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    request = parse_request({**SMALL, "model": "tiny", "seed": 1}).model_dump()
    with sqlite3.connect(settings.db_path) as old:
        old.executescript(OLD_TASKS)
        old.execute("INSERT INTO tasks (id, kind, status, priority, request, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    ("old-task", "t2v", "pending", 1, json.dumps(request), time.time()))
    old.close()
    studio = Studio(settings)
    try:
        assert studio.store.dependencies("old-task") == [] and studio.store.queue_position("old-task") == 1
        studio.start()
        assert wait_terminal(studio, "old-task").status == st.COMPLETED
    finally:
        studio.stop()


def test_a_scene_queued_before_dependencies_existed_waits_for_its_shots(settings):
    """Its stitch (a row of the old shape, shots named only in its request) gets its dependency
    rows when the database is migrated: it is not claimable while its shots are queued, and the
    shots are claimed first even though the stitch is older and of higher priority."""
    import json

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    shot_request = parse_request({**SMALL, "model": "tiny", "seed": 1}).model_dump()
    with sqlite3.connect(settings.db_path) as old:
        old.executescript(OLD_TASKS)
        insert = "INSERT INTO tasks (id, kind, status, priority, request, created_at) VALUES (?, ?, ?, ?, ?, ?)"
        old.execute(insert, ("old-stitch", "scene", "pending", 2, json.dumps({"shots": ["old-shot"]}), 1.0))
        old.execute(insert, ("old-shot", "t2v", "pending", 1, json.dumps(shot_request), 2.0))
    old.close()
    studio = Studio(settings)  # migrates; not started, so the test claims by hand
    try:
        assert studio.store.dependencies("old-stitch") == ["old-shot"]
        assert studio.store.claim_next().id == "old-shot"
        assert studio.store.claim_next() is None  # the stitch waits: its shot has not completed
    finally:
        studio.store.close()
        studio.keys.close()


def test_followers_of_a_dependant_hear_its_failure_at_once(settings):
    import threading

    studio = Studio(settings)  # not started: nothing runs, so only the cascade can end the task
    try:
        shot = studio.store.create_task("t2v", {"n": 1}, owner="ui")[0].id
        stitch = studio.store.create_task("scene", {"n": 2}, owner="ui", depends_on=[shot])[0].id
        events = []
        follower = threading.Thread(target=lambda: events.extend(studio.follow(stitch, "ui", poll_seconds=60)))
        follower.start()
        time.sleep(0.3)  # subscribed
        started = time.monotonic()
        studio.store.request_cancel(shot)
        follower.join(10)
        assert not follower.is_alive() and time.monotonic() - started < 2  # not at the next 60 s poll
        assert events[-1].type == "error" and events[-1].data["error_type"] == "DependencyFailed"
        assert shot in events[-1].data["detail"]
    finally:
        studio.store.close()
        studio.keys.close()
