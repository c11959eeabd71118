"""Every /v1 response carries ``X-RateLimit-*`` headers (issue 10, item 9): file downloads,
stream frames, 204s, and the 404/405/413 answered before any rate-limited route ran."""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import AUTH, GENEROUS_LIMITS, SMALL, wait_for_terminal

RATE = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
DEFAULT_LIMIT = GENEROUS_LIMITS["default"].split()[0]


def assert_rate_headers(response: httpx.Response, limit: str = DEFAULT_LIMIT) -> None:
    """All three headers, once each, with the limit of the bucket the response belongs to."""
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    for name in RATE:
        assert len(response.headers.get_list(name)) == 1, f"{name} on {where}: {response.headers}"
    assert response.headers["X-RateLimit-Limit"] == limit, where
    assert int(response.headers["X-RateLimit-Remaining"]) >= 0, where
    assert int(response.headers["X-RateLimit-Reset"]) > 0, where


@pytest.fixture(scope="module")
def finished(live_server) -> tuple[str, str]:
    """A completed task and a stream session opened on it before it ran (so it has frames)."""
    with httpx.Client(base_url=live_server.url, headers=AUTH, timeout=60) as http:
        task_id = http.post("/v1/generate", json=SMALL).json()["task_id"]
        session = http.post("/v1/genius/stream/start", json={"task_id": task_id})
        assert session.status_code == 200, session.text
        assert wait_for_terminal(http, task_id)["status"] == "completed"
    return task_id, session.json()["session_id"]


def test_media_downloads_carry_rate_headers(http, finished):
    finished_task = finished[0]
    for path in (f"/v1/videos/{finished_task}.mp4", f"/v1/thumbnails/{finished_task}.jpg"):
        response = http.get(path)
        assert response.status_code == 200, path
        assert_rate_headers(response)
    # The preview of a finished task may be gone: its 200 or its 404 carries them the same way.
    preview = http.get(f"/v1/previews/{finished_task}.jpg")
    assert preview.status_code in (200, 404)
    assert_rate_headers(preview)
    assert_rate_headers(http.head(f"/v1/videos/{finished_task}.mp4"))


def test_stream_frames_carry_rate_headers(http, finished):
    base = f"/v1/genius/stream/frames/{finished[1]}/0.jpg?quality=final"
    for path in (base, base + "&width=32"):  # a FileResponse and a plain Response
        response = http.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg", path
        assert_rate_headers(response)


def test_204_carries_rate_headers(http):
    rng = np.random.default_rng(9)
    image = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), (5, 5), 0)
    png = base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()
    entity = http.post("/v1/genius/consistency/register-entity",
                       json={"name": "rate-headers-204", "reference_image_base64": png})
    assert entity.status_code == 201, entity.text
    deleted = http.delete(f"/v1/genius/consistency/entities/{entity.json()['entity_id']}")
    assert deleted.status_code == 204
    assert_rate_headers(deleted)


@pytest.mark.parametrize("headers", [AUTH, {}, {"Authorization": "Bearer not-a-key"}], ids=["key", "none", "bad"])
def test_unknown_routes_and_methods_carry_rate_headers(live_server, headers):
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as client:
        unknown = client.get("/v1/no/such/route")
        assert unknown.status_code == 404 and set(unknown.json()) == {"error", "detail", "type"}
        assert_rate_headers(unknown)
        wrong_method = client.put("/v1/models")  # a real route, a method it does not take
        assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["Allow"]
        assert_rate_headers(wrong_method)
        no_such_method = client.request("QUERY", "/v1/models")  # answered by UnknownMethods
        assert no_such_method.status_code == 405
        assert_rate_headers(no_such_method)


def test_uncharged_responses_do_not_spend_the_budget(live_server, http):
    """A 404 from an unknown route reports the caller's default bucket without counting."""
    before = int(http.get("/v1/no/such/route").headers["X-RateLimit-Remaining"])
    after = int(http.get("/v1/no/such/route").headers["X-RateLimit-Remaining"])
    assert after >= before


def test_413_carries_rate_headers(live_server):
    cap = live_server.settings.max_body_bytes
    with httpx.Client(base_url=live_server.url, headers={**AUTH, "content-type": "application/json"},
                      timeout=60) as client:
        declared = client.post("/v1/generate", content=b" " * (cap + 1))  # refused from Content-Length
        assert declared.status_code == 413 and declared.json()["type"] == "PayloadTooLarge"
        assert_rate_headers(declared)

        def chunks():  # no Content-Length: counted while it streams
            for _ in range(cap // (1 << 20) + 2):
                yield b" " * (1 << 20)

        streamed = client.post("/v1/generate", content=chunks())
        assert streamed.status_code == 413
        assert_rate_headers(streamed)


def test_uncaught_errors_carry_rate_headers(live_server, http, monkeypatch):
    """A route's unexpected exception is answered (500) outside the middleware stack."""
    studio = live_server.studio

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(studio, "health", broken)
    response = http.get("/v1/health")
    assert response.status_code == 500 and response.json()["type"] == "InternalError"
    assert_rate_headers(response)


def test_storage_faults_before_any_charge_carry_rate_headers(live_server, http, monkeypatch):
    """A key store that fails during the auth dependency: nothing was charged, yet the 503
    says where the caller stands (by address, since the key could not be looked up)."""
    import sqlite3

    def failing(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(live_server.studio.keys, "lookup", failing)
    response = http.get("/v1/models")
    assert response.status_code == 503 and response.json()["type"] == "StoreUnavailable", response.text
    assert_rate_headers(response)


def test_metrics_carries_rate_headers(http):
    response = http.get("/metrics")  # outside /v1, but keyed and charged like it
    assert response.status_code == 200
    assert_rate_headers(response)


# -- which budget each route spends (issue 10, item 10) ----------------------------------------

GPU_WORK_POSTS = {"/v1/generate", "/v1/genius/scene/edit", "/v1/genius/inpaint/process",
                  "/v1/genius/lipsync/generate", "/v1/genius/v2v/transform",
                  "/v1/genius/consistency/track/{task_id}"}


def _api_routes():
    """Every route of the REST routers (FastAPI keeps included routers nested, so they are
    walked from their modules rather than from ``app.routes``)."""
    import importlib
    import pkgutil

    import studio.api
    from fastapi import APIRouter
    from fastapi.routing import APIRoute

    for info in pkgutil.iter_modules(studio.api.__path__):
        module = importlib.import_module(f"studio.api.{info.name}")
        for router in (value for value in vars(module).values() if isinstance(value, APIRouter)):
            yield from (route for route in router.routes if isinstance(route, APIRoute))


def _rate_kinds(route) -> set[str]:
    return {getattr(d.call, "rate_kind", None) for d in route.dependant.dependencies} - {None}


def test_routes_on_the_generate_budget_say_so_in_openapi(live_server):
    charged = {route.path for route in _api_routes() if "generate" in _rate_kinds(route)}
    assert charged == GPU_WORK_POSTS
    paths = live_server.app.openapi()["paths"]
    for path in charged:
        description = paths[path]["post"]["description"]
        assert "``/generate`` budget" in description and "5 per 10 s" in description, path


def test_readme_names_the_routes_on_the_generate_budget():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("**Rate limits**"):readme.index("**Webhooks**")]
    for name in ("scene edit", "lip-sync", "inpaint", "V2V", "consistency tracking", "/v1/genius/scene/edit"):
        assert name in section, name
