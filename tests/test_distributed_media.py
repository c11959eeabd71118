"""Media anywhere (issue 12): API process and workers on "machines" that share no folder — every
process its own data folder — with media in S3-compatible object storage (a local moto server,
``ECHOEL_MEDIA_URL=s3://...``). Videos made by one worker are served by the API process, edit
inputs submitted to the API (REST and a Gradio upload) and LoRA files registered there reach the
worker, a scene's stitch reads shots two other workers made, stream frames travel with their
notices, and another key still sees none of it."""

from __future__ import annotations

import os
import base64
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import SMALL, free_port, wait_for_terminal
from tests.distributed import Topology, require_services
from tests.test_api_contract import test_another_key_cannot_see_a_task  # noqa: F401  (collected here too)
from tests.test_edit_gradio import clip_file, test_inpaint_an_uploaded_video  # noqa: F401
from tests.test_loras import (  # noqa: F401  (a LoRA registered on the API reaches the worker's machine)
    adapters,
    test_scale_zero_is_the_base_model_another_lora_changes_it_and_nothing_leaks,
)
from tests.test_rest_api import test_generate_status_result_and_video  # noqa: F401
from tests.test_scene_task import test_edit_generates_each_shot_and_stitches_them  # noqa: F401
from tests.test_streaming import test_stream_announces_previews_and_finals_that_can_be_fetched  # noqa: F401

BUCKET = "echoel-media"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


class DistributedServer:
    def __init__(self, topology: Topology, url: str, s3):
        self.topology, self.url, self.s3 = topology, url, s3


def _start_moto(folder: Path) -> tuple[subprocess.Popen, str]:
    server = Path(sys.executable).with_name("moto_server")
    if not server.exists():
        why = "moto[server] is not installed (requirements-dev.txt)"
        if os.environ.get("CI"):  # scripts/setup.sh --dev installs it: missing there is a failure
            pytest.fail(why)
        pytest.skip(why)
    port = free_port()
    log = open(folder / "moto.log", "ab")
    process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    require_services()
    import boto3

    folder = tmp_path_factory.mktemp("distributed-media")
    moto, endpoint = _start_moto(folder)
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in CREDENTIALS.items()
                                                          if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                assert time.monotonic() < deadline, (folder / "moto.log").read_text()
                time.sleep(0.2)
        with Topology(folder, shared_data=False, extra_env={
                "ECHOEL_MEDIA_URL": f"s3://{BUCKET}/studio", "ECHOEL_S3_ENDPOINT_URL": endpoint,
                **CREDENTIALS}) as topology:
            url = topology.start_api()
            topology.start_worker("worker1")
            topology.start_worker("worker2")
            yield DistributedServer(topology, url, s3)
    finally:
        moto.terminate()
        moto.wait(10)


def _keys(s3, prefix: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])}


def test_results_live_in_object_storage_not_in_a_shared_folder(http, live_server):
    topology = live_server.topology
    task_id = http.post("/v1/generate", json=SMALL).json()["task_id"]
    assert wait_for_terminal(http, task_id)["status"] == "completed"
    assert {f"studio/videos/{task_id}.mp4", f"studio/thumbnails/{task_id}.jpg"} <= _keys(live_server.s3, "studio/")
    api_copy = topology.data_dir_of("api") / "media" / "videos" / f"{task_id}.mp4"
    assert not api_copy.exists()  # the worker made it on its own disk
    served = http.get(f"/v1/videos/{task_id}.mp4")
    assert served.status_code == 200 and served.content == api_copy.read_bytes()  # fetched once, then served
    stored = live_server.s3.get_object(Bucket=BUCKET, Key=f"studio/videos/{task_id}.mp4")["Body"].read()
    assert stored == served.content


def test_an_edit_reaches_its_inputs_and_source_from_another_machine(http, live_server):
    """Inpaint of a generated video with an uploaded overlay: the overlay (the task's inputs,
    stored by the API process) and the source video (made by a worker) both reach the worker
    that runs the edit through object storage."""
    source = http.post("/v1/generate", json=SMALL).json()["task_id"]
    assert wait_for_terminal(http, source)["status"] == "completed"
    overlay = np.zeros((20, 20, 3), np.uint8)
    overlay[:] = (0, 0, 255)
    png = base64.b64encode(cv2.imencode(".png", overlay[:, :, ::-1])[1].tobytes()).decode()
    reply = http.post("/v1/genius/inpaint/process", json={
        "task_id": source, "mode": "blend", "bbox": [100, 80, 140, 120], "feather_radius": 0,
        "overlay_image_base64": png})
    assert reply.status_code == 202, reply.text
    edit = reply.json()["task_id"]
    final = wait_for_terminal(http, edit)
    assert final["status"] == "completed", final
    assert any(k.startswith("studio/inputs/") for k in _keys(live_server.s3, "studio/inputs/"))
    video = http.get(f"/v1/videos/{edit}.mp4")
    assert video.status_code == 200 and len(video.content) > 1000


def test_a_worker_without_storage_access_fails_tasks_clearly(live_server, tmp_path, monkeypatch):
    """Object storage that refuses an upload raises MediaUnavailable (the worker then fails the
    task: a result that names a file nobody can fetch is never recorded); a file that is
    nowhere is FileNotFoundError (a 404 at the API)."""
    from studio.errors import MediaUnavailable
    from studio.media.object_store import ObjectMediaPaths

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    paths = ObjectMediaPaths(tmp_path / "media", "s3://no-such-bucket/x",
                             endpoint_url=live_server.topology.extra_env["ECHOEL_S3_ENDPOINT_URL"])
    paths.video("t1").write_bytes(b"not really a video")
    with pytest.raises(MediaUnavailable, match="no-such-bucket"):
        paths.publish("videos", "t1")
    with pytest.raises(FileNotFoundError):
        ObjectMediaPaths(tmp_path / "other", f"s3://{BUCKET}/studio",
                         endpoint_url=live_server.topology.extra_env["ECHOEL_S3_ENDPOINT_URL"]).fetch("videos", "nope")
