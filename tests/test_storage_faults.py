"""A full disk and a failing task store: tasks end truthfully, the worker survives, clients get
507/503 in the seed's shape, health says what is wrong, and all of it recovers without a restart."""

from __future__ import annotations

import shutil
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from studio.config import Settings
from studio.core import Studio
from studio.engine.request import parse_request
from studio.errors import EncodingFailed, StorageFull
from studio.jobs import store as st
from studio.media.video import Mp4Writer, probe_video
from tests.conftest import AUTH, SMALL, LiveServer
from tests.test_jobs import wait_terminal


@pytest.fixture()
def small_disk(tmp_path):
    """A real 48 MiB filesystem (tmpfs) to fill; skipped where mounting is not allowed."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount_point)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path, leave_bytes: int = 0, name: str = "filler.bin") -> Path:
    """Fill ``folder``'s filesystem until at most ``leave_bytes`` are free; returns the filler."""
    filler = folder / name
    chunk = b"\0" * 2**20
    with open(filler, "ab") as out:
        try:
            while True:
                free = shutil.disk_usage(folder).free
                if free <= leave_bytes:
                    break
                out.write(chunk[: max(1, min(len(chunk), free - leave_bytes))])
                out.flush()
        except OSError:
            pass  # ENOSPC: full
    return filler


# -- the encoder: a file is only ever final when it holds every frame ---------------------------------

def encode(target: Path, count: int, size: int = 64) -> Path:
    """Write ``count`` noise frames of ``size`` x ``size`` through ``Mp4Writer``."""
    rng = np.random.default_rng(0)
    with Mp4Writer(target, size, size, 12) as writer:
        for _ in range(count):
            writer.write(rng.integers(0, 255, (size, size, 3), np.uint8))
    return target


def test_an_encode_that_runs_out_of_disk_raises_storage_full_and_leaves_no_file(small_disk):
    fill(small_disk, leave_bytes=64 * 1024)
    target = small_disk / "video.mp4"
    with pytest.raises(StorageFull):
        encode(target, 200, 256)
    assert not target.exists() and not target.with_name("video.mp4.part").exists()


@pytest.fixture()
def fake_ffmpeg(tmp_path, monkeypatch):
    """Make ``Mp4Writer`` run a shell script of the test's instead of ffmpeg."""
    import imageio_ffmpeg

    def install(script: str) -> None:
        path = tmp_path / "ffmpeg"
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(path))

    return install


def test_an_encoder_that_exits_with_an_error_fails_the_write(tmp_path, fake_ffmpeg):
    fake_ffmpeg("cat >/dev/null; exit 1\n")
    with pytest.raises(EncodingFailed, match="exit 1"):
        encode(tmp_path / "video.mp4", 5)
    assert not (tmp_path / "video.mp4").exists()


def test_an_encoder_that_exits_cleanly_without_a_playable_file_fails_the_write(tmp_path, fake_ffmpeg):
    # Exit status 0, but the "mp4" it leaves is garbage: a clean exit alone must not complete a task.
    fake_ffmpeg('for last; do :; done; cat >/dev/null; echo junk > "$last"; exit 0\n')
    with pytest.raises(EncodingFailed, match="0 of 5 frames"):
        encode(tmp_path / "video.mp4", 5)
    assert not (tmp_path / "video.mp4").exists()


def test_a_clean_encode_holds_every_frame(tmp_path):
    assert probe_video(encode(tmp_path / "video.mp4", 7)).frames == 7


# -- the worker and the store ---------------------------------------------------------------------

def test_a_store_that_cannot_record_a_failure_does_not_kill_the_worker(tmp_path, monkeypatch):
    studio = Studio(Settings(data_dir=tmp_path, model="tiny"))
    real_finish = studio.store.finish
    refusals = {"left": 3}

    def finish_when_the_disk_allows(task_id, status, **kwargs):
        if status == st.FAILED and refusals["left"] > 0:
            refusals["left"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return real_finish(task_id, status, **kwargs)

    def broken_run(*args, **kwargs):
        raise OSError(5, "Input/output error")

    import studio.jobs.generation as generation_module

    monkeypatch.setattr(studio.store, "finish", finish_when_the_disk_allows)
    real_run = generation_module.run_group
    monkeypatch.setattr(generation_module, "run_group", broken_run)
    studio.start()
    try:
        failing = studio.submit(parse_request({**SMALL, "seed": 1}))
        ended = wait_terminal(studio, failing.task_id, timeout=60)
        assert ended.status == st.FAILED and ended.error_type == "InternalError"
        assert refusals["left"] == 0  # recorded only after the store took it, by a later loop
        assert studio.worker.alive
        monkeypatch.setattr(generation_module, "run_group", real_run)
        healthy = studio.submit(parse_request({**SMALL, "seed": 2}))
        assert wait_terminal(studio, healthy.task_id).status == st.COMPLETED
    finally:
        studio.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_health_says_when_the_worker_is_not_running(tmp_path, monkeypatch):
    studio = Studio(Settings(data_dir=tmp_path, model="tiny"))
    assert not studio.health().worker_running  # not started yet
    studio.start()
    try:
        health = studio.health()
        assert health.status == "ok" and health.worker_running and health.problems == []

        def die(*_):
            raise SystemExit  # what no handler catches: the thread ends

        monkeypatch.setattr(studio.worker, "_next_task", die)
        studio.worker.wake()
        studio.worker._thread.join(30)
        health = studio.health()
        assert health.status == "degraded" and not health.worker_running
        assert any("worker is not running" in problem for problem in health.problems)
    finally:
        studio.stop()


# -- from outside: a server whose data disk fills up during a run -----------------------------------

def wait_status(client: httpx.Client, task_id: str, done, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while not done(status := client.get(f"/v1/status/{task_id}").json()):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    return status


def test_a_disk_that_fills_during_a_run_fails_the_task_and_everything_recovers(small_disk):
    with LiveServer(small_disk / "data", min_free_mb=1) as server, httpx.Client(base_url=server.url, headers=AUTH,
                                                                                    timeout=30) as client:
        assert client.get("/v1/health").json()["status"] == "ok"
        # Room to accept the task (over min_free_mb) but not for its video: the run's writes hit ENOSPC.
        first_filler = fill(small_disk, leave_bytes=int(1.5 * 2**20))
        large = {**SMALL, "duration_seconds": 6.0, "fps": 24, "resolution": "720p", "seed": 3}
        task_id = client.post("/v1/generate", json=large).json()["task_id"]
        ended = wait_status(client, task_id, lambda s: s["status"] in ("completed", "failed", "cancelled"))
        assert ended["status"] == "failed" and ended["error_type"] == "StorageFull", ended
        assert client.get(f"/v1/videos/{task_id}.mp4").status_code == 404  # no half-written file served
        assert not list((small_disk / "data" / "media" / "videos").glob(f"{task_id}*"))

        second_filler = fill(small_disk, name="filler-2.bin")  # now completely full
        refused = client.post("/v1/generate", json=SMALL)
        assert refused.status_code == 507, refused.text
        assert refused.json()["type"] == "StorageFull" and set(refused.json()) == {"error", "detail", "type"}
        health = client.get("/v1/health").json()
        assert health["status"] == "degraded" and any("disk" in p for p in health["problems"])
        assert health["worker_running"]

        first_filler.unlink()  # space is back: no restart needed
        second_filler.unlink()
        assert client.get("/v1/health").json()["status"] == "ok"
        again = client.post("/v1/generate", json={**SMALL, "seed": 4})
        assert again.status_code == 202, again.text
        wait_status(client, again.json()["task_id"], lambda s: s["status"] == "completed")
