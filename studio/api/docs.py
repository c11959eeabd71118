"""API docs that work offline: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, served from here.

FastAPI's default pages load Swagger UI and ReDoc from a CDN, so with no network ``/docs`` is
a blank page. This follows FastAPI's documented self-hosting (``docs_url=None``,
``redoc_url=None``, then ``get_swagger_ui_html`` / ``get_redoc_html`` pointing at a
``StaticFiles`` mount) with the asset files of the pinned ``fastapi-offline`` package (Swagger
UI 5, which reads FastAPI's OpenAPI 3.1, and ReDoc 2). Only its files are used, not its app.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def install_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the docs pages and their assets from this process.

    ``app`` must be built with ``docs_url=None, redoc_url=None`` (the CDN versions); register
    this before anything mounted at ``/`` (the Gradio UI), which would otherwise answer first.
    """
    missing = [name for name in ASSET_FILES if not (ASSETS_DIR / name).is_file()]
    if missing:  # a fastapi-offline release that moved its files: fail at start, not as a blank page
        raise RuntimeError(f"fastapi-offline ships no {', '.join(missing)} in {ASSETS_DIR}")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    oauth2_redirect_url = f"{docs_url}/oauth2-redirect"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            # persistAuthorization: the key entered under "Authorize" survives a reload;
            # validatorUrl None: no badge fetched from swagger.io's online validator
            swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None,
                                   **(app.swagger_ui_parameters or {})})

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False)  # fonts from a CDN too; the system fonts do
        # ReDoc's sidebar shows its vendor's logo from a CDN (and hides it when that fails):
        # refuse outside images so the page never reaches out, online or not.
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page
