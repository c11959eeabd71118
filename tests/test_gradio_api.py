"""The Generate tab's functions through gradio_client against the launched app."""

from __future__ import annotations

import time

import pytest

from studio.engine.request import parse_request
from tests.conftest import SMALL, client_owner


def _value(output):
    """An output that carries a value (not empty, not a "leave unchanged" update)."""
    return output if output and not (isinstance(output, dict) and output.get("__type__") == "update") else None


def test_generate_streams_previews_then_the_video(client, live_server):
    # 40 steps: the run must outlast two of the strip's 0.4 s refresh intervals even on a fast,
    # idle machine (10 steps of the tiny model can finish within one).
    job = client.submit(SMALL["prompt"], "blurry", 1.0, 12, "480p", "16:9", "cinematic", 5, 7.5, 40, "tiny",
                        api_name="/generate")
    updates = list(job)
    task_id, preview, status, video, thumbnail, metadata = updates[-1]
    assert metadata["status"] == "completed" and metadata["metadata"]["seed"] == 5
    assert video["path"].endswith(".mp4") and thumbnail["path"].endswith(".jpg")
    first_video = next(i for i, u in enumerate(updates) if _value(u[3]))
    strips = [u[1] for u in updates[:first_video] if _value(u[1])]
    assert len(strips) >= 2, f"{len(strips)} frame strips before the video"
    assert any(" preview" in frame["caption"] for strip in strips for frame in strip)
    assert all(frame["image"]["path"].endswith(".jpg") for strip in strips for frame in strip)
    # the last strip: every one of the 12 output frames, final
    assert [frame["caption"] for frame in preview] == [f"#{i} final" for i in range(12)]
    assert "Done" in status and task_id == metadata["task_id"]
    # the same task is visible through REST-equivalent core calls
    assert live_server.studio.status(task_id, client_owner(live_server.studio, client)).status == "completed"


def test_status_and_cancel_endpoints(client, live_server):
    submitted = live_server.studio.submit(parse_request({**SMALL, "num_inference_steps": 150}),
                                          owner=client_owner(live_server.studio, client))
    cancelled = client.predict(submitted.task_id, api_name="/cancel")
    assert cancelled["task_id"] == submitted.task_id
    status = client.predict(submitted.task_id, api_name="/status")
    assert status["task_id"] == submitted.task_id
    deadline = time.monotonic() + 30
    while not live_server.studio.store.get(submitted.task_id).is_terminal:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.predict(submitted.task_id, api_name="/status")["status"] == "cancelled"


def test_invalid_input_is_a_clear_error(client):
    with pytest.raises(Exception, match="prompt must not be blank"):
        client.predict("   ", "", 1.0, 12, "480p", "16:9", "cinematic", -1, 7.5, 10, "tiny",
                       api_name="/generate")
    with pytest.raises(Exception, match="greater than maximum value 60"):  # checked by the slider
        client.predict("a cat", "", 100.0, 12, "480p", "16:9", "cinematic", -1, 7.5, 10, "tiny",
                       api_name="/generate")
