"""The edges build what is theirs: media URLs are made when a reply or an event is made, never
stored with a task, so the same rows can be served under another host, prefix or CDN later."""

from __future__ import annotations

from tests.conftest import SMALL, wait_for_terminal


def test_a_finished_tasks_row_holds_no_url_and_its_replies_do(http, live_server):
    task_id = http.post("/v1/generate", json={**SMALL, "seed": 21}).json()["task_id"]
    status = wait_for_terminal(http, task_id)
    assert status["status"] == "completed", status

    row = live_server.studio.store.get(task_id)
    assert "video_url" not in row.result and "thumbnail_url" not in row.result
    assert row.preview_path and "/v1/" not in row.preview_path  # a media file, not a URL

    result = http.get(f"/v1/result/{task_id}").json()
    assert result["video_url"] == f"/v1/videos/{task_id}.mp4"
    assert result["thumbnail_url"] == f"/v1/thumbnails/{task_id}.jpg"
    assert status["preview_url"].startswith(f"/v1/previews/{task_id}")
    assert http.get(result["video_url"]).status_code == 200


def test_a_row_stored_with_urls_by_an_older_version_still_reads(http, live_server, monkeypatch):
    """Rows written before URLs left the store carry theirs: the reply is made afresh."""
    import dataclasses

    task_id = http.post("/v1/generate", json={**SMALL, "seed": 22}).json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    store = live_server.studio.store
    row = store.get(task_id)
    old = dataclasses.replace(row, result={**row.result, "video_url": "/old/v.mp4", "thumbnail_url": "/old/t.jpg"},
                              preview_path=f"/v1/previews/{task_id}.jpg")
    monkeypatch.setattr(store, "get", lambda wanted: old if wanted == task_id else None)
    result = http.get(f"/v1/result/{task_id}").json()
    assert (result["video_url"], result["thumbnail_url"]) == (f"/v1/videos/{task_id}.mp4",
                                                              f"/v1/thumbnails/{task_id}.jpg")
