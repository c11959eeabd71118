"""Shutdown and idle followers: a stopping server requeues (never cancels) the running task,
claims nothing more, closes websockets with 1012 at once; followers that wait hold no thread."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from studio.config import Settings
from studio.core import Studio
from studio.engine.request import parse_request
from studio.jobs import store as st
from studio.jobs.worker import REQUEUED_STEP
from tests.conftest import API_KEY, AUTH, OTHER_KEY, SMALL, LiveServer, free_port
from tests.test_jobs import wait_terminal

ROOT = Path(__file__).resolve().parent.parent
# Long enough on the tiny model that it is still denoising when the test stops the server.
LONG = {**SMALL, "duration_seconds": 4.0, "fps": 24, "num_inference_steps": 150}


def wait_for(condition, timeout: float = 60, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        time.sleep(0.02)


def event_types(studio: Studio, task_id: str) -> list[str]:
    return [e["type"] for e in studio.store.events(task_id)]


def test_stopping_requeues_the_running_task_and_starts_nothing_new(tmp_path):
    settings = Settings(data_dir=tmp_path, model="tiny")
    studio = Studio(settings)
    studio.start()
    running = studio.submit(parse_request({**LONG, "seed": 1})).task_id
    queued = studio.submit(parse_request({**SMALL, "seed": 2})).task_id
    wait_for(lambda: studio.store.get(running).status == st.GENERATING, message="the run to start")
    started = time.monotonic()
    studio.stop()
    assert time.monotonic() - started < 10  # stops at the next step, not after the run

    store = st.TaskStore(settings.db_path)
    try:
        task = store.get(running)
        assert task.status == st.PENDING and task.current_step == REQUEUED_STEP and task.error_type is None
        types = [e["type"] for e in store.events(running)]
        assert types[-1] == "task.requeued" and "task.cancelled" not in types and "task.failed" not in types
        assert "task.started" not in [e["type"] for e in store.events(queued)]  # never claimed
        assert not (tmp_path / "media" / "videos" / f"{running}.mp4").exists()
    finally:
        store.close()

    restarted = Studio(settings)
    restarted.start()
    try:
        assert wait_terminal(restarted, running, timeout=180).status == st.COMPLETED
        assert wait_terminal(restarted, queued).status == st.COMPLETED
        assert restarted.store.get(running).attempt == 2
    finally:
        restarted.stop()


def test_a_user_cancel_is_still_a_cancel(tmp_path):
    studio = Studio(Settings(data_dir=tmp_path, model="tiny"))
    studio.start()
    try:
        task_id = studio.submit(parse_request({**LONG, "seed": 3})).task_id
        wait_for(lambda: studio.store.get(task_id).status == st.GENERATING, message="the run to start")
        studio.cancel(task_id)
        ended = wait_terminal(studio, task_id)
        assert ended.status == st.CANCELLED and ended.error_type == "TaskCancelled"
    finally:
        studio.stop()


def test_websocket_followers_get_a_close_frame_at_once_when_the_server_stops(tmp_path):
    with LiveServer(tmp_path) as server:
        server.studio.worker._next_task = lambda: None  # keep the task queued
        task_id = httpx.post(f"{server.url}/v1/generate", json=SMALL, headers=AUTH).json()["task_id"]
        with connect(server.url.replace("http", "ws") + f"/v1/ws/{task_id}", additional_headers=AUTH,
                     open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "progress"
            server.studio.begin_shutdown()
            started = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert time.monotonic() - started < 2
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012


def test_idle_followers_do_not_delay_another_clients_websocket(tmp_path):
    with LiveServer(tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        server.studio.worker._next_task = lambda: None  # every task stays queued: followers wait
        ws_base = server.url.replace("http", "ws") + "/v1/ws/"
        followers = []
        try:
            for seed in range(12):  # twice the default executor's 6 threads on 2 cores
                task_id = client.post("/v1/generate", json={**SMALL, "seed": seed}, headers=AUTH).json()["task_id"]
                ws = connect(ws_base + task_id, additional_headers=AUTH, open_timeout=10)
                followers.append(ws)
                assert json.loads(ws.recv(timeout=10))["status"] == "pending"
            other = {"Authorization": f"Bearer {OTHER_KEY}"}
            latencies = []
            for seed in range(3):
                task_id = client.post("/v1/generate", json={**SMALL, "seed": 100 + seed}, headers=other).json()["task_id"]
                started = time.monotonic()
                with connect(ws_base + task_id, additional_headers=other, open_timeout=10) as ws:
                    json.loads(ws.recv(timeout=10))
                latencies.append(time.monotonic() - started)
            health_started = time.monotonic()
            assert client.get("/v1/health", headers=other).status_code == 200
            health_seconds = time.monotonic() - health_started
        finally:
            for ws in followers:
                ws.close()
        # A client that leaves stops its follower now, not at the task's next event (hours, queued).
        wait_for(lambda: server.studio.bus.subscriber_count() == 0, timeout=3, message="followers to end")
        # Idle, the first message takes ~0.01 s; a follower holding a thread made it 7 s or never.
        assert max(latencies) < 1.0, latencies
        assert health_seconds < 1.0


def test_sigterm_requeues_the_run_closes_websockets_and_exits_promptly(tmp_path):
    port = free_port()
    env = {**os.environ, "ECHOEL_API_KEYS": API_KEY, "ECHOEL_DATA_DIR": str(tmp_path), "ECHOEL_MODEL": "tiny",
           "ECHOEL_PORT": str(port), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{url}/v1/health", headers=AUTH).status_code == 200
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                return False

        wait_for(up, timeout=120, message="the server to start")
        running = httpx.post(f"{url}/v1/generate", json={**LONG, "seed": 5}, headers=AUTH).json()["task_id"]
        queued = httpx.post(f"{url}/v1/generate", json={**SMALL, "seed": 6}, headers=AUTH).json()["task_id"]
        wait_for(lambda: httpx.get(f"{url}/v1/status/{running}", headers=AUTH).json()["status"] == st.GENERATING,
                 message="the run to start")
        closes = []

        def follow(task_id: str) -> None:
            with connect(f"ws://127.0.0.1:{port}/v1/ws/{task_id}", additional_headers=AUTH, open_timeout=10) as ws:
                try:
                    while True:
                        ws.recv(timeout=30)
                except ConnectionClosed as closed:
                    closes.append(closed.rcvd.code if closed.rcvd else None)

        followers = [threading.Thread(target=follow, args=(t,)) for t in (running, queued)]
        for thread in followers:
            thread.start()
        time.sleep(0.5)
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutdown_seconds = time.monotonic() - started
        for thread in followers:
            thread.join(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    assert shutdown_seconds < 10, shutdown_seconds
    assert closes == [1012, 1012]
    with sqlite3.connect(tmp_path / "studio.sqlite3") as db:
        rows = dict(db.execute("SELECT id, status FROM tasks").fetchall())
        types = [r[0] for r in db.execute("SELECT type FROM events WHERE task_id = ? ORDER BY id", (running,))]
    assert rows == {running: "pending", queued: "pending"}
    assert types[-1] == "task.requeued" and "task.cancelled" not in types


def test_a_ui_follower_does_not_cancel_its_task_when_the_server_stops(tmp_path):
    from components.edit_common import SERVER_RESTARTING, follow

    studio = Studio(Settings(data_dir=tmp_path, model="tiny"))
    studio.start()
    try:
        studio.worker._next_task = lambda: None  # keep the task queued
        task_id = studio.submit(parse_request({**SMALL, "seed": 7}), owner="ui:visitor").task_id
        updates = []
        reader = threading.Thread(target=lambda: updates.extend(follow(studio, task_id, "ui:visitor")))
        reader.start()
        wait_for(lambda: updates, message="the first update")
        studio.begin_shutdown()
        reader.join(5)
        assert not reader.is_alive()
        assert updates[-1][0] == SERVER_RESTARTING
        assert studio.store.get(task_id).status == st.PENDING  # not cancelled by the page going away
    finally:
        studio.stop()
