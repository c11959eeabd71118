"""The API docs work with no network (issue 10, item 11): Swagger UI at /docs and ReDoc at
/redoc load their assets from this server, and the bearer scheme is declared so that
"Authorize" and "Try it out" work. The browser tests block every request that leaves
127.0.0.1, as on a machine with no network."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import httpx

from tests.conftest import API_KEY
from tests.test_browser_tabs import browser  # noqa: F401  (the module-scoped Chromium fixture)


def test_docs_pages_reference_only_local_assets(live_server):
    for page in ("/docs", "/redoc"):
        html = httpx.get(live_server.url + page, timeout=30)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"], page
        assert not re.findall(r"https?://", html.text), f"{page} loads something from outside: {html.text}"
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets, page
        for asset in assets:
            response = httpx.get(live_server.url + asset, timeout=30)
            assert response.status_code == 200 and len(response.content) > 1000, asset


def test_openapi_declares_the_bearer_scheme(live_server):
    schema = httpx.get(live_server.url + "/openapi.json", timeout=30).json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer",
        "description": "An API key: `python -m studio keys create --name me` prints one."}
    operations = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    assert len(operations) > 20
    for path, method, op in operations:  # every documented operation needs the key
        assert op.get("security") == [{"ApiKey": []}], (method, path)


def _offline_page(browser, blocked: list[str]):
    """A page whose requests to anything but 127.0.0.1 are aborted (and recorded)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(20_000)

    def route(request_route):
        host = urlparse(request_route.request.url).hostname
        if host == "127.0.0.1":
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    return page


def test_swagger_ui_renders_and_tries_a_call_offline(live_server, browser):
    blocked: list[str] = []
    page = _offline_page(browser, blocked)
    page.goto(live_server.url + "/docs", wait_until="domcontentloaded")
    page.wait_for_selector(".opblock-summary-path")
    paths = page.locator(".opblock-summary-path").evaluate_all("els => els.map(e => e.dataset.path)")
    assert {"/v1/generate", "/v1/status/{task_id}", "/v1/models", "/v1/genius/scene/edit"} <= set(paths), paths

    # Authorize with the key, then "Try it out" on GET /v1/models: the call carries the key.
    page.locator("button.authorize").first.click()
    page.locator(".modal-ux input").first.fill(API_KEY)
    page.locator(".modal-ux button.authorize").click()
    page.locator(".modal-ux button.btn-done").click()
    operation = page.locator(".opblock", has=page.locator('.opblock-summary-path[data-path="/v1/models"]'))
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    assert '"tiny"' in operation.locator(".live-responses-table tbody .response-col_description").first.inner_text()
    assert blocked == [], blocked


def test_redoc_renders_offline(live_server, browser):
    blocked: list[str] = []
    page = _offline_page(browser, blocked)
    page.goto(live_server.url + "/redoc", wait_until="domcontentloaded")
    page.get_by_text("/v1/genius/scene/edit").first.wait_for(state="attached")
    assert page.locator("h2").count() > 20  # one heading per operation
    assert blocked == [], blocked
