"""Progressive Streaming across processes (issue 12): the worker's frame board and the API
process's board share a folder and a relay; no Redis here, the relay is a list."""

from __future__ import annotations

import numpy as np

from studio.media import frame_boards
from studio.media.frame_boards import FINAL, PREVIEW, StreamHub


class ListRelay:
    """A relay in one process: what ``RedisLive`` carries, kept in lists."""

    def __init__(self):
        self.streamed: set[str] = set()
        self.notices: list[dict] = []
        self.asked = 0

    def mark_streamed(self, task_id: str, seconds: float) -> None:
        self.streamed.add(task_id)

    def is_streamed(self, task_id: str) -> bool:
        self.asked += 1
        return task_id in self.streamed

    def send_stream_notice(self, notice: dict) -> None:
        self.notices.append(notice)


def test_frames_a_worker_writes_reach_the_api_processs_stream(tmp_path, monkeypatch):
    relay = ListRelay()
    api = StreamHub(tmp_path / "api-stream", relay=relay)
    worker = StreamHub(tmp_path / "worker-stream", relay=relay)  # another process on another machine
    assert worker.board("t1") is None  # nobody streams t1: the engine writes no frames
    monkeypatch.setattr(frame_boards, "REMOTE_CHECK_SECONDS", 0.0)
    session, api_board = api.start("t1", owner="k")
    writer = worker.board("t1")
    assert writer is not None

    frame = np.full((16, 24, 3), 200, np.uint8)
    writer.put(0, PREVIEW, frame, 0.25)
    writer.put(0, FINAL, frame, 0.9)
    for notice in relay.notices:
        api.apply(notice)
    version, changed, outcome = api_board.changes_since(0)
    assert [(i, s.quality, s.width, s.height) for i, s in changed] == [(0, FINAL, 24, 16)]
    assert api_board.path(0, FINAL).read_bytes() == writer.path(0, FINAL).read_bytes() and outcome is None

    worker.finish("t1", {"type": "complete", "task_id": "t1", "total_frames": 1})
    api.apply(relay.notices[-1])
    assert api_board.changes_since(version)[2] == {"type": "complete", "task_id": "t1", "total_frames": 1}


def test_a_worker_asks_the_relay_at_most_every_check_interval(tmp_path):
    relay = ListRelay()
    worker = StreamHub(tmp_path / "stream", relay=relay)
    for _ in range(50):  # every denoising step asks; the relay hears of it once per interval
        assert worker.board("t2") is None
    assert relay.asked == 1


def test_a_shared_stream_folder_is_not_wiped_by_a_process_that_starts(tmp_path):
    (tmp_path / "stream" / "t3").mkdir(parents=True)
    StreamHub(tmp_path / "stream", relay=ListRelay())
    assert (tmp_path / "stream" / "t3").is_dir()
    StreamHub(tmp_path / "stream")  # one process alone: frames of an earlier run are stale
    assert not (tmp_path / "stream" / "t3").exists()
