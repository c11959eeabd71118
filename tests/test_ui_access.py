"""UI visitors own their tasks, anonymous UI work is limited, keyed work gets its share of the
queue, and Gradio's file route never serves the media folder (issue 10 items 7 and 8)."""

from __future__ import annotations

import time
from contextlib import contextmanager

import httpx
import pytest
from gradio_client import Client

from studio.engine.request import parse_request
from studio.errors import RateLimited
from studio.jobs.store import TaskStore
from studio.ui_access import COOKIE_NAME, AnonymousLimits, OwnerCookies, resolve_owner
from tests.conftest import AUTH, SMALL, client_owner, wait_for_terminal

LONG = [SMALL["prompt"], "", 1.0, 12, "480p", "16:9", "cinematic", 1, 7.5, 150, "tiny"]


@contextmanager
def _client(live_server):
    c = Client(live_server.url, verbose=False, download_files=False)
    try:
        yield c
    finally:
        c.close()


def _first_task_id(job, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for update in job.outputs():
            if update and update[0]:
                return update[0]
        time.sleep(0.05)
    raise TimeoutError("no task id")


def _wait_terminal(studio, task_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not studio.store.get(task_id).is_terminal:
        assert time.monotonic() < deadline, "task did not end"
        time.sleep(0.05)


# -- owners ---------------------------------------------------------------------------------

def test_two_gradio_clients_cannot_see_or_cancel_each_others_tasks(live_server):
    studio = live_server.studio
    with _client(live_server) as alice, _client(live_server) as bob:
        assert client_owner(studio, alice) != client_owner(studio, bob)
        job = alice.submit(*LONG, api_name="/generate")
        task_id = _first_task_id(job)
        try:
            assert studio.store.get(task_id).owner == client_owner(studio, alice)
            with pytest.raises(Exception, match="no task with id"):
                bob.predict(task_id, api_name="/status")
            with pytest.raises(Exception, match="no task with id"):
                bob.predict(task_id, api_name="/cancel")
            assert not studio.store.get(task_id).cancel_requested
            assert alice.predict(task_id, api_name="/status")["task_id"] == task_id
        finally:
            alice.predict(task_id, api_name="/cancel")
            _wait_terminal(studio, task_id)


def test_the_page_sets_a_signed_persistent_owner_cookie(live_server):
    page = httpx.get(live_server.url + "/")
    cookie = page.cookies.get(COOKIE_NAME)
    owner = live_server.studio.ui_cookies.owner(cookie)
    assert owner and owner.startswith("ui:")
    header = page.headers["set-cookie"]
    assert "HttpOnly" in header and "Max-Age=" in header
    # a returning browser keeps its owner (no new cookie); REST responses never set one
    again = httpx.get(live_server.url + "/", cookies={COOKIE_NAME: cookie})
    assert COOKIE_NAME not in again.cookies
    assert COOKIE_NAME not in httpx.get(live_server.url + "/v1/health", headers=AUTH).cookies


def test_forged_or_foreign_cookies_are_not_owners(tmp_path):
    cookies = OwnerCookies.load(tmp_path)
    value = cookies.issue()
    anon_id, signature = value.split(".")
    assert cookies.owner(value) == f"ui:{anon_id}"
    assert cookies.owner(f"{'0' * 32}.{signature}") is None  # someone else's id, my signature
    assert OwnerCookies(b"another server's secret").owner(value) is None
    assert OwnerCookies.load(tmp_path).owner(value) == f"ui:{anon_id}"  # same secret after a restart
    # no cookie: each Gradio session is its own owner; a login wins over both
    assert resolve_owner(cookies, None, "s1", None) != resolve_owner(cookies, None, "s2", None)
    assert resolve_owner(cookies, value, "s1", "alice") == "ui:user:alice"


# -- anonymous limits -----------------------------------------------------------------------

def test_anonymous_limit_refuses_the_next_task_with_a_clear_message(live_server):
    studio = live_server.studio
    limits = studio.ui_limits
    saved = limits.max_active
    limits.max_active = 2
    jobs, ids = [], []
    try:
        with _client(live_server) as c:
            for _ in range(2):
                jobs.append(c.submit(*LONG, api_name="/generate"))
                ids.append(_first_task_id(jobs[-1]))
            with pytest.raises(Exception, match="anonymous UI limit: at most 2 unfinished tasks per visitor"):
                c.predict(*LONG, api_name="/generate")
            assert studio.store.active_count([client_owner(studio, c)]) == 2
            for task_id in ids:
                c.predict(task_id, api_name="/cancel")
            for task_id in ids:
                _wait_terminal(studio, task_id)
            # room again once they ended
            with limits.admit(client_owner(studio, c), "127.0.0.1"):
                pass
    finally:
        limits.max_active = saved


def test_the_per_ip_limit_covers_every_session_of_one_address():
    active: dict[str, int] = {}
    limits = AnonymousLimits(lambda owners: sum(active.get(o, 0) for o in owners), max_active=2,
                             max_active_per_ip=3)

    def submit(owner: str, ip: str | None, n: int = 1) -> None:
        with limits.admit(owner, ip, new_tasks=n):
            active[owner] = active.get(owner, 0) + n

    submit("a", "10.0.0.1")
    submit("a", "10.0.0.1")
    with pytest.raises(RateLimited, match="at most 2 unfinished tasks per visitor"):
        submit("a", "10.0.0.1")
    submit("b", "10.0.0.1")  # a second session of the same address: 3 in all
    with pytest.raises(RateLimited, match="at most 3 unfinished tasks from one network address") as refused:
        submit("c", "10.0.0.1")  # a third session does not lift the limit
    assert refused.value.status_code == 429 and refused.value.body()["type"] == "RateLimitExceeded"
    submit("c", "10.0.0.2")  # another address is not affected
    with pytest.raises(RateLimited):
        submit("d", None, n=3)  # a batch larger than the allowance


# -- fair share -----------------------------------------------------------------------------

def test_a_keyed_task_is_claimed_before_the_ui_crowd_finishes(tmp_path):
    store = TaskStore(tmp_path / "q.sqlite3")
    ui = [store.create_task("t2v", {"n": i}, priority=1, owner=f"ui:visitor{i % 5}")[0].id for i in range(20)]
    keyed = store.create_task("t2v", {"n": "k"}, priority=1, owner="key-abc")[0].id
    order = []
    while (task := store.claim_next()) is not None:
        order.append(task.id)
    assert order.index(keyed) <= 1, f"keyed task claimed {order.index(keyed) + 1}th of {len(order)}"
    assert [t for t in order if t != keyed] == ui  # the UI's own order is kept
    store.close()


def test_keyed_and_ui_claims_alternate(tmp_path):
    store = TaskStore(tmp_path / "q.sqlite3")
    for i in range(3):
        store.create_task("t2v", {"n": i}, priority=1, owner="ui:v")
    for i in range(3):
        store.create_task("t2v", {"n": i}, priority=1, owner="env-k")
    owners = []
    while (task := store.claim_next()) is not None:
        owners.append(task.owner)
    assert owners == ["ui:v", "env-k"] * 3
    store.close()


def test_queue_positions_follow_the_fair_claim_order(tmp_path):
    import random

    store = TaskStore(tmp_path / "q.sqlite3")
    rng = random.Random(7)
    for i in range(24):  # a mix of UI and keyed tasks, owners and priorities
        owner = rng.choice(["ui:a", "ui:b", "ui", "key-x", "env-y"])
        store.create_task("t2v", {"n": i}, priority=rng.choice([0, 1, 1, 2]), owner=owner)
    for _ in range(3):  # a few claims first, so the alternation is mid-way
        store.claim_next()
    pending = [t.id for t in store.tasks_ahead() if t.status == "pending"]
    predicted = sorted(pending, key=store.queue_position)
    assert sorted(store.queue_position(t) for t in pending) == list(range(1, len(pending) + 1))
    ahead = {t: len([a for a in store.tasks_ahead(t) if a.status == "pending"]) for t in pending}
    claimed = []
    while (task := store.claim_next()) is not None:
        claimed.append(task.id)
    assert claimed == predicted
    assert all(ahead[t] == claimed.index(t) for t in pending)
    store.close()


# -- media ----------------------------------------------------------------------------------

def test_rest_task_files_are_not_served_by_gradios_file_route(live_server, http):
    task_id = http.post("/v1/generate", json=SMALL).json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    paths = live_server.studio.paths
    assert http.get(f"/v1/videos/{task_id}.mp4").status_code == 200  # with the key it is there
    anonymous = httpx.Client(base_url=live_server.url, timeout=30)
    for path in (paths.video(task_id), paths.thumbnail(task_id), paths.preview(task_id)):
        assert path.is_file()
        for url in (f"/gradio_api/file={path}", f"/file={path}"):
            response = anonymous.get(url)
            assert response.status_code in (403, 404), (url, response.status_code)
            assert response.content[:4] not in (b"\x00\x00\x00\x18", b"\xff\xd8\xff\xe0")
    for frame in (live_server.settings.media_dir / "stream").rglob("*.jpg"):
        assert anonymous.get(f"/gradio_api/file={frame}").status_code in (403, 404)
        break


def test_ui_media_comes_from_gradios_cache_not_the_data_folder(live_server):
    with _client(live_server) as c:
        updates = list(c.submit(SMALL["prompt"], "", 1.0, 12, "480p", "16:9", "cinematic", 3, 7.5, 10, "tiny",
                                api_name="/generate"))
        task_id, strip, status, video, thumbnail, metadata = updates[-1]
        data_dir = str(live_server.settings.data_dir)
        for file in (video, thumbnail, *[frame["image"] for frame in strip]):
            assert not file["path"].startswith(data_dir), file["path"]
            assert file["url"] and data_dir not in file["url"]
            assert httpx.get(file["url"]).status_code == 200
        assert data_dir not in repr(updates)  # no server path of the data folder anywhere in the outputs
