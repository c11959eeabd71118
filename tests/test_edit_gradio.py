"""The video-side feature tabs through gradio_client: uploads and task ids both work."""

from __future__ import annotations

import pytest
from gradio_client import handle_file

from studio.media.video import Mp4Writer, probe_video
from tests.conftest import client_owner
from tests.edit_helpers import moving_square_clip, source_task


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "square.mp4"
    clip = moving_square_clip(frames=10)
    with Mp4Writer(path, clip[0].shape[1], clip[0].shape[0], 12) as writer:
        for frame in clip:
            writer.write(frame)
    return path


def test_inpaint_an_uploaded_video(client, clip_file):
    status, video, details = client.predict(handle_file(str(clip_file)), "", "remove", 18, 38, 54, 74, 4,
                                            None, "feather", "1:1", "", api_name="/inpaint")
    assert status.startswith("Done") and details["metadata"]["source"]["upload"] == "source.mp4"
    assert probe_video(video.get("video", video)["path"]).frames == 10


def test_inpaint_a_finished_ui_task(client, live_server):
    source = source_task(live_server.studio, client_owner(live_server.studio, client), moving_square_clip(frames=6))
    status, video, details = client.predict(None, source, "extend", 0, 0, 0, 0, 0, None, "feather", "16:9", "",
                                            api_name="/inpaint")
    assert details["metadata"]["source"]["task_id"] == source
    assert (details["metadata"]["width"], details["metadata"]["height"]) == (228, 128)


def test_inpaint_without_a_source_is_a_clear_error(client):
    with pytest.raises(Exception, match="upload a video"):
        client.predict(None, "", "remove", 18, 38, 54, 74, 4, None, "feather", "1:1", "", api_name="/inpaint")
