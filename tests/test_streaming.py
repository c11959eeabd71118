"""Progressive Streaming: per-frame previews while denoising, final frames while decoding,
announced over a websocket whose pace never holds the engine back."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from websockets.sync.client import connect

from studio.engine.plan import make_plan
from studio.engine.request import parse_request
from studio.engine.t2v import QuietHooks, run_text_to_video
from studio.genius.stream.sender import AdaptiveSender
from studio.media.frame_boards import FINAL, PREVIEW, FrameBoard, StreamSession
from studio.models.catalog import get_spec
from studio.models.loader import ModelCache
from tests.conftest import AUTH, OTHER_KEY, SMALL, wait_for_terminal


def _image(value: int, width: int = 64, height: int = 36) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def _session(**kw) -> StreamSession:
    return StreamSession(id="s1", task_id="t1", owner="k", initial_quality=kw.get("quality", PREVIEW),
                         enable_adaptive=kw.get("adaptive", True))


# -- the board and the sender -----------------------------------------------------------------

def test_board_keeps_the_newest_frame_per_index_and_never_downgrades_a_final(tmp_path):
    board = FrameBoard("t1", tmp_path)
    board.put(0, PREVIEW, _image(10), 0.1)
    board.put(0, PREVIEW, _image(20), 0.2)  # supersedes the first preview
    board.put(4, PREVIEW, _image(30), 0.2)
    board.put(4, FINAL, _image(40), 0.95)
    board.put(4, PREVIEW, _image(50), 0.3)  # a late preview never replaces a final
    _, changed, outcome = board.changes_since(0)
    assert [(i, s.quality) for i, s in changed] == [(0, PREVIEW), (4, FINAL)]
    assert outcome is None
    assert abs(int(cv2.imread(str(board.path(0, PREVIEW))).mean()) - 20) <= 2


def test_slow_reader_gets_only_the_newest_state(tmp_path):
    board = FrameBoard("t1", tmp_path)
    sender = AdaptiveSender(_session())
    board.put(0, PREVIEW, _image(10), 0.1)
    first, _ = sender.messages(board)
    for step in range(5):  # the engine moves on while this reader is busy elsewhere
        board.put(0, PREVIEW, _image(20 + step), 0.2 + step / 10)
        board.put(1, PREVIEW, _image(20 + step), 0.2 + step / 10)
    board.finish({"type": "complete", "total_frames": 2})
    later, outcome = sender.messages(board)
    assert [m["frame_index"] for m in first] == [0]
    assert [(m["frame_index"], m["progress"]) for m in later] == [(0, 0.6), (1, 0.6)]
    assert outcome == {"type": "complete", "total_frames": 2}


def test_final_only_sessions_skip_previews(tmp_path):
    board = FrameBoard("t1", tmp_path)
    board.put(0, PREVIEW, _image(10), 0.1)
    board.put(1, FINAL, _image(10), 0.95)
    messages, _ = AdaptiveSender(_session(quality=FINAL)).messages(board)
    assert [(m["frame_index"], m["quality"]) for m in messages] == [(1, FINAL)]


def test_adaptive_sender_shrinks_previews_for_a_lagging_client_and_recovers(tmp_path):
    board = FrameBoard("t1", tmp_path)
    sender = AdaptiveSender(_session())
    sender.record_burst(1.0, full_width=256)
    sender.record_burst(1.0, full_width=256)
    assert sender.preview_width == 64
    board.put(0, PREVIEW, _image(10, width=256, height=144), 0.1)
    board.put(1, FINAL, _image(10, width=256, height=144), 0.95)
    messages, _ = sender.messages(board)
    assert messages[0]["url"].endswith("&width=64") and (messages[0]["width"], messages[0]["height"]) == (64, 36)
    assert "width=" not in messages[1]["url"]  # finals always at full size
    sender.record_burst(0.0, full_width=256)
    sender.record_burst(0.0, full_width=256)
    assert sender.preview_width is None
    fixed = AdaptiveSender(_session(adaptive=False))
    fixed.record_burst(1.0, full_width=256)
    assert fixed.preview_width is None


# -- the engine ---------------------------------------------------------------------------------

class StreamingHooks(QuietHooks):
    """Engine hooks that stream, recording each frame and whether the mp4 existed yet."""

    def __init__(self, video_path):
        self.video_path = video_path
        self.frames: list[tuple[int, str, tuple, bool]] = []

    def streaming(self) -> bool:
        return True

    def on_stream_frame(self, frame_index, quality, rgb, progress) -> None:
        self.frames.append((frame_index, quality, rgb.shape, self.video_path.exists()))


def test_engine_streams_every_latent_frame_and_every_final_frame_before_the_mp4(tmp_path_factory):
    model = ModelCache(tmp_path_factory.mktemp("models")).get("tiny")
    request = parse_request({**SMALL, "seed": 7})
    plan = make_plan(request, get_spec("tiny"), seed=7)
    video = tmp_path_factory.mktemp("out") / "v.mp4"
    hooks = StreamingHooks(video)
    run_text_to_video(model, plan, hooks, video, video.with_suffix(".jpg"), min_preview_interval=0.0)
    latent_frames = (plan.gen_frames - 1) // model.pipe.vae_scale_factor_temporal + 1
    previews = [f for f in hooks.frames if f[1] == PREVIEW]
    finals = [f for f in hooks.frames if f[1] == FINAL]
    # every step (interval 0) previews every latent frame, each at its own output index
    assert len(previews) == latent_frames * plan.num_inference_steps
    assert len({f[0] for f in previews}) == latent_frames
    assert sorted(f[0] for f in finals) == list(range(plan.out_frames))
    assert all(f[2] == (plan.out_height, plan.out_width, 3) for f in finals)
    assert not any(f[3] for f in finals), "final frames must arrive before the mp4 is finished"
    assert video.exists()


# -- end to end ---------------------------------------------------------------------------------

def _follow(live_server, session_id: str, headers=AUTH) -> list[dict]:
    url = live_server.url.replace("http", "ws") + f"/v1/genius/stream/ws/{session_id}"
    with connect(url, open_timeout=10, additional_headers=headers) as ws:
        return [json.loads(raw) for raw in ws]


def _decoded_frames(data: bytes) -> list[np.ndarray]:
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_stream_announces_previews_and_finals_that_can_be_fetched(http, live_server):
    task_id = http.post("/v1/generate", json={**SMALL, "num_inference_steps": 20}).json()["task_id"]
    started = http.post("/v1/genius/stream/start", json={"task_id": task_id, "initial_quality": "preview",
                                                          "enable_adaptive": True})
    assert started.status_code == 200, started.text
    session = started.json()
    assert session["websocket_url"] == f"/v1/genius/stream/ws/{session['session_id']}"
    messages = _follow(live_server, session["session_id"])
    assert messages[-1]["type"] == "complete"
    total = messages[-1]["total_frames"]
    frames = [m for m in messages if m["type"] == "frame_available"]
    previews = [m for m in frames if m["quality"] == PREVIEW]
    finals = [m for m in frames if m["quality"] == FINAL]
    assert len({m["frame_index"] for m in previews}) >= 2, "previews of several frames, not one"
    assert sorted({m["frame_index"] for m in finals}) == list(range(total))
    assert all(0 <= m["progress"] <= 1 for m in frames)
    video = _decoded_frames(http.get(f"/v1/videos/{task_id}.mp4").content)
    assert len(video) == total
    for message in finals[:: max(1, len(finals) // 4)]:
        jpeg = http.get(message["url"])
        assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
        image = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg.content, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert cv2.PSNR(image, video[message["frame_index"]]) > 25  # the same frame as the video's
    small = http.get(f"/v1/genius/stream/frames/{session['session_id']}/0.jpg?quality=final&width=64")
    assert cv2.imdecode(np.frombuffer(small.content, np.uint8), cv2.IMREAD_COLOR).shape[1] == 64


def test_a_late_client_gets_the_current_state_first(http, live_server):
    task_id = http.post("/v1/generate", json=SMALL).json()["task_id"]
    session = http.post("/v1/genius/stream/start", json={"task_id": task_id}).json()
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    messages = _follow(live_server, session["session_id"])  # connects after the run ended
    total = messages[-1]["total_frames"]
    assert [m["type"] for m in messages] == ["frame_available"] * total + ["complete"]
    assert [m["frame_index"] for m in messages[:-1]] == list(range(total))
    assert all(m["quality"] == FINAL for m in messages[:-1])


def test_stream_of_an_ended_task_says_how_it_ended(http, live_server):
    task_id = http.post("/v1/generate", json=SMALL).json()["task_id"]
    wait_for_terminal(http, task_id)
    session = http.post("/v1/genius/stream/start", json={"task_id": task_id, "initial_quality": "final"}).json()
    assert session["task_status"] == "completed"
    messages = _follow(live_server, session["session_id"])
    assert messages == [{"type": "complete", "task_id": task_id, "video_url": f"/v1/videos/{task_id}.mp4",
                         "thumbnail_url": f"/v1/thumbnails/{task_id}.jpg", "total_frames": 12}]


def test_streams_are_private_to_their_key(http, live_server):
    task_id = http.post("/v1/generate", json=SMALL).json()["task_id"]
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    assert http.post("/v1/genius/stream/start", json={"task_id": task_id}, headers=other).status_code == 404
    session = http.post("/v1/genius/stream/start", json={"task_id": task_id}).json()["session_id"]
    assert http.get(f"/v1/genius/stream/frames/{session}/0.jpg", headers=other).status_code == 404
    with pytest.raises(Exception, match="404"):
        _follow(live_server, session, headers=other)
    bad = http.post("/v1/genius/stream/start", json={"task_id": task_id, "initial_quality": "4k"})
    assert bad.status_code == 400 and "initial_quality" in bad.json()["detail"]
    wait_for_terminal(http, task_id)
