"""The hardened API contract: keys, ownership, rate limits, idempotency, caps, maintenance, errors."""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import API_KEY, AUTH, OTHER_KEY, SMALL, LiveServer, wait_for_terminal

OTHER = {"Authorization": f"Bearer {OTHER_KEY}"}


# -- keys -------------------------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Basic dGVzdDp0ZXN0", f"Token {API_KEY}", "Bearer forged-key",
    "Bearer " + "x" * 1_000_000, "Bearer kéy",
])
def test_missing_or_invalid_keys_are_401(live_server, header):
    headers = {} if header is None else {"Authorization": header}
    try:
        response = httpx.get(f"{live_server.url}/v1/models", headers=headers, timeout=30)
    except (UnicodeEncodeError, httpx.LocalProtocolError):
        pytest.skip("httpx refuses to send this header value itself")
    except httpx.ReadError:  # the HTTP server drops requests with oversized headers outright
        assert len(header or "") > 64 * 1024
        return
    assert response.status_code in (400, 401, 431), response.text
    if response.status_code == 401:
        body = response.json()
        assert body["type"] == "AuthenticationError" and set(body) == {"error", "detail", "type"}


def test_scheme_is_case_insensitive(live_server):
    response = httpx.get(f"{live_server.url}/v1/models", headers={"Authorization": f"bearer {API_KEY}"})
    assert response.status_code == 200


def test_created_keys_work_until_revoked(live_server):
    created = live_server.studio.keys.create("ci")
    assert created.key.startswith("ek_") and created.record.webhook_secret.startswith("whsec_")
    headers = {"Authorization": f"Bearer {created.key}"}
    assert httpx.get(f"{live_server.url}/v1/genres", headers=headers).status_code == 200
    # only a hash is stored
    with live_server.studio.database.connect() as db:
        raw = db.exec_driver_sql("SELECT * FROM api_keys WHERE id = ?", (created.record.id,)).first()
    assert created.key not in json.dumps(dict(raw._mapping))
    live_server.studio.keys.revoke(created.record.id)
    revoked = httpx.get(f"{live_server.url}/v1/genres", headers=headers)
    assert revoked.status_code == 403 and revoked.json()["type"] == "PermissionDenied"


def test_cli_creates_lists_and_revokes_keys(tmp_path, capsys):
    from studio.__main__ import main

    assert main(["--data-dir", str(tmp_path), "keys", "create", "--name", "alice"]) == 0
    printed = capsys.readouterr().out
    key_id = printed.split("id:")[1].split()[0]
    assert "api key:" in printed and "webhook secret:" in printed
    assert main(["--data-dir", str(tmp_path), "keys", "list"]) == 0
    assert key_id in capsys.readouterr().out
    assert main(["--data-dir", str(tmp_path), "keys", "revoke", key_id]) == 0
    main(["--data-dir", str(tmp_path), "keys", "list"])
    assert "revoked" in capsys.readouterr().out


# -- ownership --------------------------------------------------------------------------------

def test_another_key_cannot_see_a_task(http, live_server):
    task_id = http.post("/v1/generate", json=SMALL).json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    with httpx.Client(base_url=live_server.url, headers=OTHER) as other:
        for path in (f"/v1/status/{task_id}", f"/v1/result/{task_id}", f"/v1/videos/{task_id}.mp4",
                     f"/v1/thumbnails/{task_id}.jpg"):
            response = other.get(path)
            assert response.status_code == 404 and response.json()["type"] == "TaskNotFound", path
        assert other.post(f"/v1/cancel/{task_id}").status_code == 404
    ws_url = live_server.url.replace("http", "ws") + f"/v1/ws/{task_id}"
    with connect(ws_url, additional_headers=OTHER, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["error"] == "Task not found"
    assert http.get(f"/v1/videos/{task_id}.mp4").status_code == 200  # the owner still can


def test_websocket_without_a_key_is_refused_at_the_handshake(live_server):
    with pytest.raises(InvalidStatus) as refused:
        with connect(live_server.url.replace("http", "ws") + "/v1/ws/anything", open_timeout=10):
            pass
    assert refused.value.response.status_code == 401


def test_ui_tasks_are_invisible_to_api_keys(http, live_server):
    from studio.engine.request import parse_request

    ui_task = live_server.studio.submit(parse_request({**SMALL, "num_inference_steps": 10}))
    assert http.get(f"/v1/status/{ui_task.task_id}").status_code == 404


# -- rate limits ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    from studio.config import DEFAULT_RATE_LIMITS

    with LiveServer(tmp_path_factory.mktemp("strict"), rate_limits=dict(DEFAULT_RATE_LIMITS)) as server:
        yield server


def test_a_burst_of_six_generates_admits_exactly_five(strict_server):
    body = {**SMALL, "num_inference_steps": 10}
    with httpx.Client(base_url=strict_server.url, headers=AUTH, timeout=30) as client:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda _: client.post("/v1/generate", json=body), range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] * 5 + [429]
    accepted = [r for r in responses if r.status_code == 202]
    refused = next(r for r in responses if r.status_code == 429)
    assert {r.headers["X-RateLimit-Limit"] for r in responses} == {"5"}
    assert sorted(int(r.headers["X-RateLimit-Remaining"]) for r in accepted) == [0, 1, 2, 3, 4]
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    resets = {int(r.headers["X-RateLimit-Reset"]) for r in responses}
    assert max(resets) - min(resets) <= 1 and min(resets) > time.time()
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    assert refused.json()["type"] == "RateLimitExceeded"
    # the limit is per key: another key is not affected
    other = httpx.post(f"{strict_server.url}/v1/generate", json=body, headers=OTHER, timeout=30)
    assert other.status_code == 202


def test_every_response_carries_rate_limit_headers(strict_server):
    with httpx.Client(base_url=strict_server.url, headers=AUTH, timeout=30) as client:
        for response in (client.get("/v1/models"), client.get("/v1/status/nope"),
                         client.post("/v1/generate", json={"prompt": ""})):
            assert response.headers["X-RateLimit-Limit"] and "X-RateLimit-Remaining" in response.headers, \
                response.status_code
    assert httpx.get(f"{strict_server.url}/v1/models").headers.get("X-RateLimit-Limit") == "50"  # 401 too


# -- idempotency ------------------------------------------------------------------------------

def test_idempotent_replay_returns_the_same_task(http, live_server):
    headers = {"Idempotency-Key": "order-42"}
    first = http.post("/v1/generate", json=SMALL, headers=headers)
    second = http.post("/v1/generate", json=SMALL, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["task_id"] == second.json()["task_id"]
    changed = http.post("/v1/generate", json={**SMALL, "fps": 24}, headers=headers)
    assert changed.status_code == 422 and changed.json()["type"] == "IdempotencyConflict"
    # another key's identical idempotency key is independent
    other = httpx.post(f"{live_server.url}/v1/generate", json=SMALL, headers={**OTHER, **headers})
    assert other.status_code == 202 and other.json()["task_id"] != first.json()["task_id"]


def test_concurrent_duplicates_create_one_task(http):
    headers = {"Idempotency-Key": "burst-7"}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(lambda _: http.post("/v1/generate", json=SMALL, headers=headers).json()["task_id"],
                           range(4)))
    assert len(ids) == 1


# -- bodies, errors, maintenance ------------------------------------------------------------------

def test_oversized_bodies_are_413(live_server):
    big = {"prompt": "x" * (live_server.settings.max_body_bytes + 10)}
    declared = httpx.post(f"{live_server.url}/v1/generate", json=big, headers=AUTH, timeout=60)
    assert declared.status_code == 413 and declared.json()["type"] == "PayloadTooLarge"

    def chunks():
        for _ in range(live_server.settings.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    streamed = httpx.post(f"{live_server.url}/v1/generate", content=chunks(), timeout=60,
                          headers={**AUTH, "content-type": "application/json"})
    assert streamed.status_code == 413


def test_unexpected_errors_leak_nothing(http, live_server, monkeypatch):
    def broken():
        raise RuntimeError("/srv/secret/path exploded")

    monkeypatch.setattr(live_server.studio, "list_genres", broken)
    response = http.get("/v1/genres")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal error", "detail": "an unexpected error occurred; it was logged",
                               "type": "InternalError"}


def test_maintenance_refuses_new_work_and_keeps_answering(http, live_server):
    flag = live_server.settings.maintenance_flag
    running = http.post("/v1/generate", json={**SMALL, "num_inference_steps": 40}).json()["task_id"]
    flag.touch()
    try:
        refused = http.post("/v1/generate", json=SMALL)
        assert refused.status_code == 503 and refused.json()["type"] == "ServiceUnavailable"
        assert http.get("/v1/health").json()["status"] == "maintenance"
        assert wait_for_terminal(http, running)["status"] == "completed"  # running work finishes
    finally:
        flag.unlink()
    assert http.post("/v1/generate", json=SMALL).status_code == 202


def test_webhook_url_to_a_private_address_is_refused_at_submit(http):
    for url in ("http://10.0.0.5/hook", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:10.0.0.1]/"):
        response = http.post("/v1/generate", json={**SMALL, "webhook_url": url})
        assert response.status_code == 400 and response.json()["type"] == "InvalidURL", url


def test_gradio_surface_is_locked_down(live_server):
    for path in ("/gradio_api/file=/etc/passwd", f"/gradio_api/file={live_server.settings.db_path}",
                 "/gradio_api/file=..%2F..%2Fetc%2Fpasswd"):
        response = httpx.get(live_server.url + path)
        assert response.status_code in (403, 404), path
        assert "root:" not in response.text
    assert httpx.get(live_server.url + "/monitoring").status_code != 200
    # the queue can't be skipped: /run is closed when api_open is False
    assert httpx.post(live_server.url + "/gradio_api/run/generate", json={"data": ["x"]}).status_code >= 400
