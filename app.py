"""Echoelmusic Video Studio: the web UI at ``/``, the REST API at ``/v1``, docs at ``/docs``.

    python app.py [--host 127.0.0.1] [--port 7860] [--model auto|tiny|wan2.1-t2v-1.3b|...] [--data-dir data]
                  [--role all|api]

Environment: ECHOEL_HOST, ECHOEL_PORT, ECHOEL_MODEL, ECHOEL_DATA_DIR, ECHOEL_PRODUCTION; for several
processes (README, "Scale out"): ECHOEL_DATABASE_URL, ECHOEL_BROKER_URL, ECHOEL_REDIS_URL.
"""

from __future__ import annotations

# isort: off
try:  # Hugging Face ZeroGPU needs ``spaces`` imported before torch (README, "Hugging Face Space")
    import spaces
except ImportError:  # not on a Space: nothing to do
    spaces = None
# isort: on

import argparse
import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType

import gradio as gr
import uvicorn
from fastapi import FastAPI, Request
from starlette.routing import Match, Mount

from components.ui import build_ui
from studio.api import (
    genius_batch,
    genius_consistency,
    genius_decoder,
    genius_inpaint,
    genius_lipsync,
    genius_orchestrator,
    genius_scene,
    genius_sla,
    genius_stream,
    genius_v2v,
    loras,
)
from studio.api.auth import standing_rate_headers
from studio.api.docs import install_docs
from studio.api.errors import install_error_handlers
from studio.api.metrics_middleware import MetricsMiddleware
from studio.api.middleware import BodySizeLimit, RateHeaders, UnknownMethods
from studio.api.ratelimit import RateLimiter
from studio.api.routes import router
from studio.config import Settings
from studio.core import Studio
from studio.errors import MethodNotAllowed, RouteNotFound
from studio.ui_access import OwnerCookieMiddleware

ASSETS = Path(__file__).resolve().parent / "assets"
log = logging.getLogger("studio")
GRACEFUL_SHUTDOWN_SECONDS = 10  # open HTTP streams get this long to finish once a shutdown starts
UI_QUEUE_SIZE = 1024  # Gradio events waiting at once on ZeroGPU (elsewhere unbounded)
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


def build_app(settings: Settings) -> FastAPI:
    """The ASGI app: REST routes first, then the Gradio UI mounted at ``/``."""
    studio = Studio(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        studio.start()
        log.info("%s", startup_banner(settings, studio))
        try:
            yield
        finally:
            studio.stop()

    api = FastAPI(title="Echoelmusic Video Studio API", version="1.0.0", lifespan=lifespan,
                  description="Text-to-video generation on Wan 2.x. Errors are `{error, detail, type}`.",
                  docs_url=None, redoc_url=None)  # the CDN pages; install_docs serves local ones
    api.state.studio = studio
    api.state.rate_limiter = RateLimiter(settings.rate_limits, storage_url=settings.redis_url)
    install_error_handlers(api)
    install_docs(api)
    api.include_router(router)
    api.include_router(genius_batch.router)
    api.include_router(loras.router)
    api.include_router(genius_scene.router)
    # A LoRA upload's multipart body: the file plus a few KB of form fields.
    api.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       larger={"/v1/loras": settings.max_lora_mb * 2**20 + 2**16})
    api.add_middleware(OwnerCookieMiddleware, cookies=studio.ui_cookies)  # each UI visitor its own owner
    api.add_middleware(UnknownMethods, known=ALL_METHODS, allowed=lambda scope: _allowed_methods(api, scope))
    api.add_middleware(RateHeaders, standing=standing_rate_headers)  # outside those above: their 413/405 too
    api.add_middleware(MetricsMiddleware, monitor=studio.sla)  # outermost: times 413s too

    api.include_router(genius_decoder.router)
    api.include_router(genius_orchestrator.router)
    api.include_router(genius_sla.router)
    api.include_router(genius_stream.router)
    api.include_router(genius_inpaint.router)
    api.include_router(genius_lipsync.router)
    api.include_router(genius_consistency.router)
    api.include_router(genius_v2v.router)
    api.include_router(genius_sla.metrics_router)  # GET /metrics (Prometheus; API key required)

    @api.api_route("/v1/{path:path}", methods=ALL_METHODS, include_in_schema=False)
    def unknown_route(path: str, request: Request):
        # Without this, unknown /v1 paths and methods would fall through to the UI mounted at "/".
        allowed = _allowed_methods(api, request.scope)
        if allowed:
            raise MethodNotAllowed(f"{request.method} is not allowed here; use {', '.join(allowed)}",
                                   headers={"Allow": ", ".join(allowed)})
        raise RouteNotFound(f"no route {path[:100]!r} under /v1; see /docs")

    if spaces is not None:
        # On Spaces, Gradio may wrap every event function in spaces.GPU: ours only follow tasks
        # (for minutes); the runs themselves take the GPU (studio.jobs.zero_gpu).
        spaces.disable_gradio_auto_wrap()
    demo = build_ui(studio)
    # On ZeroGPU Gradio's queue would hold one waiting event by default; ours are light (tasks
    # wait in the studio's own queue), so visitors' clicks must not be refused.
    demo.queue(api_open=False, max_size=UI_QUEUE_SIZE if settings.zero_gpu else None)
    return gr.mount_gradio_app(
        api, demo, path="/",
        theme=gr.themes.Soft(), css_paths=[ASSETS / "style.css"],
        # No allowed_paths: Gradio's file route would serve every task's media (REST tenants'
        # too) to anyone who knows an id. The UI hands its own files over (components.session).
        blocked_paths=[str(settings.data_dir)],
        max_file_size="50mb",
        show_error=not settings.production,
        enable_monitoring=False,
        footer_links=["api", "settings"],
        mcp_server=settings.mcp_server,
    )


def startup_banner(settings: Settings, studio: Studio) -> str:
    """What an operator needs to see at start: where it listens, which model, device and data."""
    from studio.models.catalog import CATALOG
    from studio.models.loader import cuda_available

    device = "cpu (no CUDA device)"
    if cuda_available():
        import torch

        device = f"cuda ({torch.cuda.get_device_name(0)})"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # a URL one can open
    trained = "" if CATALOG[studio.default_model].trained else " (offline, untrained: noise-like output)"
    workers = "this process (a thread)" if not settings.distributed else \
        f"Celery workers on {_hidden_password(settings.broker_url)}"
    return (f"Echoelmusic Video Studio is up\n"
            f"  URL:      http://{host}:{settings.port}/  (REST /v1, docs /docs; bound to {settings.host})\n"
            f"  model:    {studio.default_model}{trained}\n"
            f"  device:   {device}\n"
            f"  tasks:    run by {workers}; database {studio.database.url.render_as_string(hide_password=True)}\n"
            f"  data dir: {settings.data_dir}")


def _hidden_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show its scheme only
        return url.split("://", 1)[0] + "://..."


def _allowed_methods(api: FastAPI, scope: dict) -> list[str]:
    """Methods some real /v1 route accepts at this path (the catch-all and the UI mount aside)."""
    routes = [r for r in api.router.routes
              if not isinstance(r, Mount) and getattr(r, "path", None) != "/v1/{path:path}"]
    return [method for method in ALL_METHODS
            if any(r.matches({**scope, "method": method})[0] == Match.FULL for r in routes)]


def parse_args(argv: list[str] | None = None) -> Settings:
    env = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=env.host)
    parser.add_argument("--port", type=int, default=env.port)
    parser.add_argument("--model", default=env.model, help="default model id, or 'auto'")
    parser.add_argument("--data-dir", type=Path, default=env.data_dir)
    parser.add_argument("--role", choices=["all", "api"], default="all",
                        help="all: HTTP and the in-process worker (or HTTP alone with ECHOEL_BROKER_URL); "
                             "api: HTTP only, tasks run on Celery workers (python -m studio worker)")
    args = parser.parse_args(argv)
    return replace(env, host=args.host, port=args.port, model=args.model, data_dir=args.data_dir.resolve(),
                   role=args.role)


class StudioServer(uvicorn.Server):
    """Uvicorn that tells the studio about SIGTERM / Ctrl-C at once, before it waits for open
    connections to close: the worker claims nothing more, the running task is requeued (it
    starts over after restart; nobody cancelled it), new work gets 503, and every websocket
    follower ends with close code 1012, so nothing holds the shutdown open."""

    def __init__(self, config: uvicorn.Config, studio: Studio):
        super().__init__(config)
        self.studio = studio

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # On a thread of its own: the signal may interrupt code that holds the locks it takes.
        threading.Thread(target=self.studio.begin_shutdown, name="studio-shutdown", daemon=True).start()
        super().handle_exit(sig, frame)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse_args(argv)
    app = build_app(settings)
    # Bounded: a browser tab's open event stream must not keep a stopping server up.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, workers=1,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
    StudioServer(config, app.state.studio).run()


if __name__ == "__main__":
    main()
