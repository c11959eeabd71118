"""The status line always ends in the task's real end state, and user errors are one log line
(issue 10 items 18 and 19), through gradio_client against the launched app."""

from __future__ import annotations

import logging
import time

import pytest

from tests.conftest import SMALL

GENERATE = ["", 1.0, 12, "480p", "16:9", "cinematic", 1, 7.5]


def _statuses(job) -> list[str]:
    return [update[2] for update in job.outputs() if isinstance(update[2], str)]


def test_a_refused_request_says_failed_not_the_last_runs_done(client):
    done = client.submit(SMALL["prompt"], *GENERATE, 10, "tiny", api_name="/generate")
    done.result()
    assert _statuses(done)[-1].startswith("Done")
    job = client.submit("   ", *GENERATE, 10, "tiny", api_name="/generate")
    with pytest.raises(Exception, match="prompt must not be blank"):
        job.result()
    assert _statuses(job)[-1] == "Failed (Validation error): prompt must not be blank"


def test_a_task_that_fails_ends_its_status_line_in_failed(client, monkeypatch):
    # Without CUDA (forced here, so a GPU host behaves the same) and offline (HF_HUB_OFFLINE=1)
    # a hub model can never load: the task fails, truthfully.
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    job = client.submit(SMALL["prompt"], *GENERATE, 10, "wan2.1-t2v-1.3b", api_name="/generate")
    with pytest.raises(Exception):
        job.result()
    assert _statuses(job)[-1].startswith("Failed (ModelUnavailable)"), _statuses(job)


def test_a_cancelled_run_ends_in_cancelled(client, live_server):
    job = client.submit(SMALL["prompt"], *GENERATE, 150, "tiny", api_name="/generate")
    deadline = time.monotonic() + 60
    while not any(s.startswith("Denoising step") for s in _statuses(job)):
        assert time.monotonic() < deadline, _statuses(job)
        time.sleep(0.05)
    task_id = job.outputs()[-1][0]
    client.predict(task_id, api_name="/cancel")
    job.result(timeout=60)
    statuses = _statuses(job)
    assert statuses[-1] == "Cancelled.", statuses
    assert live_server.studio.store.get(task_id).status == "cancelled"
    # the running line carries the task's own elapsed time, not a timer stuck at 0.0 s
    elapsed = [float(s.split(" · ")[1].split(" s")[0]) for s in statuses if " s elapsed" in s]
    assert elapsed and elapsed[-1] > 0.0 and elapsed == sorted(elapsed), statuses


def test_user_errors_are_one_log_line_without_a_traceback(client, caplog, capfd):
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="studio.ui"):
        with pytest.raises(Exception, match="no task with id"):
            client.predict("no-such-task", api_name="/status")
    lines = [r for r in caplog.records if r.name == "studio.ui"]
    assert len(lines) == 1 and "no task with id 'no-such-task'" in lines[0].getMessage()
    assert "\n" not in lines[0].getMessage() and lines[0].exc_info is None
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out


def test_startup_banner_names_url_model_device_and_data_dir(tmp_path, caplog):
    from fastapi.testclient import TestClient

    from app import build_app
    from studio.config import Settings

    settings = Settings(host="0.0.0.0", port=7861, model="tiny", data_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="studio"):
        with TestClient(build_app(settings)):
            pass
    banners = [r.getMessage() for r in caplog.records if "Echoelmusic Video Studio is up" in r.getMessage()]
    assert len(banners) == 1, [r.getMessage() for r in caplog.records]
    banner = banners[0]
    assert "http://127.0.0.1:7861/" in banner and "bound to 0.0.0.0" in banner
    assert "model:    tiny (offline, untrained" in banner
    assert "device:   cpu" in banner or "device:   cuda" in banner
    assert f"data dir: {tmp_path}" in banner


def test_status_lines_say_what_the_estimate_rests_on_and_the_time_left(client):
    job = client.submit(SMALL["prompt"], *GENERATE, 40, "tiny", api_name="/generate")
    job.result(timeout=120)
    statuses = _statuses(job)
    queued = statuses[0]
    assert queued.startswith("Queued (position") and ("rough estimate" in queued or "measured run" in queued), queued
    left = [float(s.split("about ")[1].split(" s left")[0]) for s in statuses if s.endswith(" s left")]
    assert left, statuses  # the running line counts down from this run's own step times
    assert statuses[-1].startswith("Done")
