"""Shared fixtures: an offline environment, a studio in a temp folder, a launched server."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub or gradio: no network, no telemetry.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("ECHOEL_MODEL", "tiny")

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from studio.config import Settings

API_KEY = "test-key-1"
OTHER_KEY = "test-key-2"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Limits high enough that the suite's own traffic never trips them; tests of the limits
# themselves start a server with the defaults.
GENEROUS_LIMITS = {"generate": "1000 per 1 second", "batch": "1000 per 1 second", "default": "10000 per 1 second"}

# A small request that still exercises every stage (resize, resample, encode) in about a second.
SMALL = {"prompt": "a red fox running through snow", "duration_seconds": 1.0, "fps": 12,
         "resolution": "480p", "num_inference_steps": 10}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The real app (REST + Gradio) served by uvicorn on a loopback port in a thread."""

    def __init__(self, data_dir: Path, **overrides):
        from app import build_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = {"api_keys": (API_KEY, OTHER_KEY), "rate_limits": GENEROUS_LIMITS, "allow_loopback_urls": True,
                   "webhook_retry_base_seconds": 0.2, **overrides}
        self.settings = Settings(host="127.0.0.1", port=self.port, model="tiny", data_dir=data_dir, **options)
        self.app = build_app(self.settings)
        # Bounded like app.py's server: a closed gradio_client's heartbeat stream stays open until
        # its next beat, and uvicorn would otherwise wait for it (30 s at the end of every run).
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def studio(self):
        return self.app.state.studio

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> LiveServer:
    with LiveServer(tmp_path_factory.mktemp("studio-data")) as server:
        yield server


@pytest.fixture()
def http(live_server) -> httpx.Client:
    with httpx.Client(base_url=live_server.url, timeout=60, headers=AUTH) as client:
        yield client


@pytest.fixture(scope="module")
def client(live_server):
    """A gradio_client for the live server's Gradio API (one per test module)."""
    from gradio_client import Client

    c = Client(live_server.url, verbose=False, download_files=False)
    yield c
    c.close()


def wait_for_terminal(http: httpx.Client, task_id: str, timeout: float = 120) -> dict:
    """Poll /v1/status until the task ends; returns the last status body."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = http.get(f"/v1/status/{task_id}").json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        time.sleep(0.1)
    raise TimeoutError(f"task {task_id} did not finish in {timeout} s")


def client_owner(studio, gradio_client) -> str:
    """The owner a gradio_client's calls run as: the signed cookie its first request received
    (``studio.ui_access``)."""
    from studio.ui_access import COOKIE_NAME

    owner = studio.ui_cookies.owner(gradio_client.cookies.get(COOKIE_NAME))
    assert owner is not None, "the client got no owner cookie"
    return owner


@pytest.fixture()
def cpu_host(monkeypatch) -> None:
    """For a test that means "a server with no CUDA GPU" (hub models refused with the CUDA
    reason, ``auto`` picking ``tiny``): on a GPU host it sees none. Every availability check
    reads ``torch.cuda.is_available`` when it runs (the worker thread's too), and the offline
    tiny models run on the CPU either way, so the rest of the server is unchanged."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
