"""The contract tests again, against the distributed topology (issue 12, "Same contract"): one
API process (``python app.py --role api``), two Celery worker processes
(``python -m studio worker``), PostgreSQL and Redis, every part its own process.

The tests are the embedded suite's own functions, imported: this module's ``live_server``
fixture replaces the embedded server, so each runs unchanged over HTTP and websockets against
the API process. Tests that reach into the in-process ``Studio`` stay embedded-only. Behaviour
that exists only here (a scene's shots spread over two workers) is tested below them.
"""

from __future__ import annotations

import pytest

from tests.distributed import Topology, require_services
from tests.test_api_contract import (  # noqa: F401  (collected here too)
    test_another_key_cannot_see_a_task,
    test_concurrent_duplicates_create_one_task,
    test_idempotent_replay_returns_the_same_task,
    test_missing_or_invalid_keys_are_401,
    test_scheme_is_case_insensitive,
    test_webhook_url_to_a_private_address_is_refused_at_submit,
    test_websocket_without_a_key_is_refused_at_the_handshake,
)
from tests.test_batch import (  # noqa: F401
    test_bad_batches_are_400,
    test_batch_runs_every_prompt_as_a_task,
    test_same_shaped_batch_tasks_share_one_pipeline_call_and_text_encodings,
)
from tests.test_edit_gradio import (  # noqa: F401
    clip_file,
    test_inpaint_an_uploaded_video,
    test_inpaint_without_a_source_is_a_clear_error,
)
from tests.test_gradio_api import test_invalid_input_is_a_clear_error  # noqa: F401
from tests.test_rest_api import (  # noqa: F401
    test_cancel_running_task_stops_within_a_step,
    test_catalog_routes_and_docs,
    test_frame_count_follows_duration_and_fps,
    test_generate_status_result_and_video,
    test_same_seed_gives_the_same_video,
    test_unknown_things_are_404_in_the_seed_shape,
    test_websocket_for_unknown_task_says_so,
    test_websocket_sends_the_seed_events,
)
from tests.test_scene_task import (  # noqa: F401
    test_bad_edits_are_clear_errors,
    test_cancelling_the_edit_cancels_its_shots,
    test_edit_generates_each_shot_and_stitches_them,
)
from tests.test_streaming import (  # noqa: F401
    test_a_late_client_gets_the_current_state_first,
    test_stream_announces_previews_and_finals_that_can_be_fetched,
    test_stream_of_an_ended_task_says_how_it_ended,
    test_streams_are_private_to_their_key,
)
from tests.test_webhooks import (  # noqa: F401
    test_a_failed_task_sends_task_failed,
    test_completed_webhook_is_retried_until_it_succeeds,
)


class DistributedServer:
    """What the imported tests use of a live server: its URL (and the topology behind it)."""

    def __init__(self, topology: Topology, url: str):
        self.topology, self.url = topology, url


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    require_services()
    with Topology(tmp_path_factory.mktemp("distributed")) as topology:
        url = topology.start_api()
        topology.start_worker("worker1")
        topology.start_worker("worker2")
        yield DistributedServer(topology, url)


def test_cancel_pending_task_is_immediate(http):
    """A task still waiting behind busy workers is cancelled on the spot (the embedded test's
    premise, one worker busy, needs both busy here)."""
    from tests.conftest import SMALL, wait_for_terminal

    busy = [http.post("/v1/generate", json={**SMALL, "num_inference_steps": 150}).json()["task_id"] for _ in range(2)]
    waiting = http.post("/v1/generate", json=SMALL).json()
    assert waiting["queue_position"] >= 1
    assert http.post(f"/v1/cancel/{waiting['task_id']}").json()["status"] == "cancelled"
    assert http.post(f"/v1/cancel/{waiting['task_id']}").json()["status"] == "cancelled"  # twice is fine
    for task_id in busy:
        http.post(f"/v1/cancel/{task_id}")
    assert [wait_for_terminal(http, t)["status"] for t in busy] == ["cancelled", "cancelled"]


def test_a_scenes_shots_run_on_both_workers_and_the_stitch_waits_for_them(http, live_server):
    """Shots are separate tasks announced on the model's queue; two idle workers take one each,
    and the stitch (``depends_on`` the shots) starts only once both have completed."""
    from studio.db import Database
    from studio.db.schema import tasks
    from tests.edit_helpers import wait_result

    body = {"scenes": [{"prompt": "a red fox running through snow", "duration": 1},
                       {"prompt": "sunset over ocean waves", "duration": 1}],
            "settings": {"fps": 12, "resolution": "480p", "num_inference_steps": 40, "seed": 4}}
    reply = http.post("/v1/genius/scene/edit", json=body)
    assert reply.status_code == 202, reply.text
    reply = reply.json()
    wait_result(http, reply["task_id"], timeout=180)
    database = Database(live_server.topology.database_url)
    try:
        with database.connect() as db:
            rows = {r.id: r for r in db.execute(tasks.select().where(
                tasks.c.id.in_([reply["task_id"], *reply["shot_task_ids"]]))).all()}
    finally:
        database.dispose()
    shots = [rows[t] for t in reply["shot_task_ids"]]
    stitch = rows[reply["task_id"]]
    assert len({s.worker_id for s in shots}) == 2, "each worker ran one shot"
    assert all(s.worker_id for s in shots) and stitch.worker_id
    assert stitch.started_at >= max(s.finished_at for s in shots), "the stitch started after both shots"
    done = {w.id: w.tasks_done for w in live_server.topology.alive_workers()}
    assert all(done[s.worker_id] >= 1 for s in shots), "each worker counts the tasks it ran"


def test_the_api_process_sees_every_worker(http, live_server):
    """/v1/health counts the Celery workers' heartbeats; /metrics exports each worker and queue
    (the SLA monitor of a process that runs no task itself)."""
    from tests.test_distributed_store import _samples

    health = http.get("/v1/health").json()
    assert health["status"] == "ok" and health["worker_running"] and health["problems"] == []
    samples = _samples(http.get("/metrics").text)
    assert samples[("echoel_workers_alive", ())] == 2
    workers = {dict(labels)["worker"] for name, labels in samples if name == "echoel_worker_tasks_done"}
    assert workers == {w.id for w in live_server.topology.alive_workers()}


def test_generate_through_the_gradio_api(client):
    """The Generate tab's API on an API process: its frame strip and status follow a run on a
    worker in another process (events and stream frames through Redis)."""
    from tests.conftest import SMALL

    job = client.submit(SMALL["prompt"], "blurry", 1.0, 12, "480p", "16:9", "cinematic", 5, 7.5, 20, "tiny",
                        api_name="/generate")
    task_id, preview, status, video, thumbnail, metadata = list(job)[-1]
    assert metadata["status"] == "completed" and metadata["metadata"]["seed"] == 5 and task_id
    assert video["path"].endswith(".mp4") and thumbnail["path"].endswith(".jpg") and "Done" in status
    assert [frame["caption"] for frame in preview] == [f"#{i} final" for i in range(12)]
