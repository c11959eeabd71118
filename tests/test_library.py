"""The Library (issue 14, part 1): everything a key made, newest first and paged, with its video;
a finished task can be deleted with its files; nobody sees or deletes another key's tasks."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import API_KEY, OTHER_KEY, SMALL, LiveServer, wait_for_terminal


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("library")) as live:  # its own database: only these tests' tasks
        yield live


def _client(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def made(server):
    """Three finished generations of the first key (oldest first) and one of the other key."""
    with _client(server, API_KEY) as mine, _client(server, OTHER_KEY) as theirs:
        ids = []
        for prompt in ("a red kite", "a blue kite", "a green kite"):
            ids.append(mine.post("/v1/generate", json={**SMALL, "prompt": prompt, "seed": 4}).json()["task_id"])
        other = theirs.post("/v1/generate", json={**SMALL, "prompt": "their kite"}).json()["task_id"]
        for task_id in ids:
            assert wait_for_terminal(mine, task_id)["status"] == "completed"
        assert wait_for_terminal(theirs, other)["status"] == "completed"
    return ids, other


def test_the_library_lists_your_tasks_newest_first_with_their_videos(server, made):
    ids, other = made
    with _client(server, API_KEY) as http:
        page = http.get("/v1/tasks").json()
        assert [t["task_id"] for t in page["tasks"]] == ids[::-1] and page["next_cursor"] is None
        newest = page["tasks"][0]
        assert (newest["title"], newest["feature"], newest["kind"]) == ("a green kite", "Generate", "t2v")
        assert (newest["model"], newest["seed"], newest["status"]) == ("tiny", 4, "completed")
        assert newest["duration_seconds"] == SMALL["duration_seconds"] and newest["error"] is None
        video = http.get(newest["video_url"])
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"
        assert http.get(newest["thumbnail_url"]).status_code == 200
    with _client(server, OTHER_KEY) as theirs:
        assert [t["task_id"] for t in theirs.get("/v1/tasks").json()["tasks"]] == [other]


def test_pages_follow_the_cursor_and_filters_narrow_them(server, made):
    ids, _ = made
    with _client(server, API_KEY) as http:
        first = http.get("/v1/tasks", params={"limit": 2}).json()
        assert [t["task_id"] for t in first["tasks"]] == ids[:0:-1] and first["next_cursor"]
        second = http.get("/v1/tasks", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [t["task_id"] for t in second["tasks"]] == ids[:1] and second["next_cursor"] is None
        assert len(http.get("/v1/tasks", params={"status": "completed", "kind": "t2v"}).json()["tasks"]) == 3
        assert http.get("/v1/tasks", params={"status": "failed"}).json()["tasks"] == []
        assert http.get("/v1/tasks", params={"kind": "inpaint"}).json()["tasks"] == []


@pytest.mark.parametrize("params", [{"cursor": "abc"}, {"status": "done"}, {"kind": "movie"}, {"limit": 0},
                                    {"limit": 101}])
def test_bad_library_queries_are_clear_400s(server, params):
    with _client(server, API_KEY) as http:
        response = http.get("/v1/tasks", params=params)
        assert response.status_code == 400, response.text
        assert set(response.json()) == {"error", "detail", "type"}


def test_a_finished_task_is_deleted_with_its_files_and_a_running_one_is_not(server, made):
    with _client(server, API_KEY) as http, _client(server, OTHER_KEY) as theirs:
        task_id = http.post("/v1/generate", json={**SMALL, "num_inference_steps": 60}).json()["task_id"]
        deadline = time.monotonic() + 60
        while http.get(f"/v1/status/{task_id}").json()["status"] == "pending":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        busy = http.delete(f"/v1/tasks/{task_id}")
        assert busy.status_code == 409 and "cancel it first" in busy.json()["detail"], busy.text
        http.post(f"/v1/cancel/{task_id}")
        wait_for_terminal(http, task_id)

        done = made[0][0]
        video_url = http.get(f"/v1/result/{done}").json()["video_url"]
        assert theirs.delete(f"/v1/tasks/{done}").status_code == 404  # not theirs: as if it did not exist
        assert http.delete(f"/v1/tasks/{done}").status_code == 204
        assert http.get(f"/v1/status/{done}").status_code == 404
        assert http.get(video_url).status_code == 404
        assert not server.studio.paths.video(done).exists()
        assert done not in [t["task_id"] for t in http.get("/v1/tasks").json()["tasks"]]
        assert http.delete(f"/v1/tasks/{done}").status_code == 404


# -- the Library tab, through the Gradio API ---------------------------------------------------

def test_the_library_tab_lists_plays_and_deletes_what_this_visitor_made(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False, download_files=False)
    try:
        job = client.submit("a paper boat", "blurry", 1.0, 12, "480p", "16:9", "cinematic", 6, 7.5, 10, "tiny",
                            api_name="/generate")
        task_id, *_, metadata = list(job)[-1]
        assert metadata["status"] == "completed"
        items, entries, cursor, line = client.predict(api_name="/library")
        assert entries == [task_id] and cursor == "" and line.startswith("1 video")  # only this visitor's
        assert items[0]["caption"] == "a paper boat"
        video, details, download = client.predict(task_id, api_name="/library_item")
        assert video["path"].endswith(f"{task_id}.mp4") and "“a paper boat”" in details
        assert "seed 6" in details
        assert client.predict(task_id, api_name="/delete_from_library") == f"Deleted {task_id}."
        assert client.predict(api_name="/library")[1] == []
    finally:
        client.close()


def test_continue_video_starts_generate_from_the_videos_last_frame(server):
    import numpy as np

    from components.library_tab import REUSED, _continue
    from studio.engine.request import parse_request
    from studio.media.video import read_frames

    studio = server.studio
    task_id = studio.submit(parse_request({**SMALL, "prompt": "a paper boat", "seed": 9})).task_id
    deadline = time.monotonic() + 60
    while not studio.store.get(task_id).is_terminal:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    inputs = [object() for _ in range(len(REUSED) + 3)]  # Generate's inputs: the reused ones come first
    first_frame = inputs[-2]
    values = _continue(studio, inputs, first_frame)(task_id)
    assert values[REUSED.index("prompt")] == "a paper boat"
    assert values[REUSED.index("seed")] == -1  # a new take on what comes next
    *_frames, last = read_frames(studio.paths.video(task_id))
    assert np.array_equal(values[len(inputs) - 2], last)
