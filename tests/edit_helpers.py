"""Shared helpers for the video-side feature tests: make a source video task, read results."""

from __future__ import annotations

import io
import time

import av
import numpy as np

from studio.media.video import Mp4Writer


def textured_background(width: int = 192, height: int = 128, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8), (width, height),
                      interpolation=cv2.INTER_CUBIC)


def square_box(i: int) -> tuple[int, int, int, int]:
    """Where ``moving_square_clip``'s square is in frame ``i``: (x1, y1, x2, y2)."""
    return 20 + 3 * i, 40, 52 + 3 * i, 72


def moving_square_clip(frames: int = 16, width: int = 192, height: int = 128, seed: int = 0) -> list[np.ndarray]:
    """A smooth textured background with a bright square moving right 3 px per frame."""
    background = textured_background(width, height, seed)
    clip = []
    for i in range(frames):
        frame = background.copy()
        x = 20 + 3 * i
        frame[40:72, x:x + 32] = (240, 60, 40)
        frame[48:64, x + 8:x + 24] = (30, 200, 220)
        clip.append(frame)
    return clip


def source_task(studio, owner: str, clip: list[np.ndarray], fps: int = 12) -> str:
    """A completed task of ``owner`` whose video is ``clip`` (as if generated), for edits to use."""
    store = studio.store
    with store._transaction() as db:  # inserted already completed, so the worker never claims it
        task_id = store._insert_task(db, "t2v", {"prompt": "test clip"}, 0, None, owner, None, None, time.time())
        db.exec_driver_sql("UPDATE tasks SET status = 'completed', progress = 1 WHERE id = ?", (task_id,))
    with Mp4Writer(studio.paths.video(task_id), clip[0].shape[1], clip[0].shape[0], fps) as writer:
        for frame in clip:
            writer.write(frame)
    return task_id


def decoded(http, task_id: str) -> list[np.ndarray]:
    with av.open(io.BytesIO(http.get(f"/v1/videos/{task_id}.mp4").content)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def wait_result(http, task_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"/v1/status/{task_id}").json()
        if status["status"] in ("completed", "failed", "cancelled"):
            assert status["status"] == "completed", status
            return http.get(f"/v1/result/{task_id}").json()
        time.sleep(0.1)
    raise TimeoutError(task_id)



def run_old_row(http, studio, owner: str, kind: str, row: dict, timeout: float = 240) -> dict:
    """Put ``row`` in the store as a task of ``kind`` the way an older version left it (its
    request in that version's shape, queued), let the worker run it, and return its result."""
    task, _ = studio.store.create_task(kind, row, priority=1, estimated_seconds=1.0, owner=owner)
    studio.worker.wake()
    return wait_result(http, task.id, timeout=timeout)
