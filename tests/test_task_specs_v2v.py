"""V2V's typed task spec (``studio.genius.v2v.schema.V2VSpec``): rows stored before tasks had
specs still load and run, and a spec that does not match is refused where it is built."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from pydantic import ValidationError

from studio.core import SPECS
from studio.engine.request import NEGATIVE_PROMPT
from studio.errors import InvalidRequest
from studio.genius.edit_submit import new_inputs
from studio.genius.v2v.schema import V2VSpec
from tests.conftest import API_KEY
from tests.edit_helpers import moving_square_clip, run_old_row, source_task, wait_result

ROUTE = "/v1/genius/v2v/transform"
SOURCE = {"task_id": "0d6c2f2e-0000-4000-8000-000000000001", "frames": 4, "fps": 12.0, "width": 192, "height": 128}

# Rows as each path's submit stored them before V2V had a spec (no kind, no version, no pipeline).
OLD_CLASSICAL_ROW = {"mode": "upscale", "strength": 0.7, "preserve_motion": True, "temporal_consistency": 0.8,
                     "scale": 2.0, "width": None, "height": None, "factor": None, "target_fps": None,
                     "source": SOURCE, "inputs_id": "a1"}
OLD_MOTION_ROW = {**OLD_CLASSICAL_ROW, "mode": "motion_transfer", "scale": None,
                  "reference_video": {"upload": "motion_reference.mp4", "frames": 6, "fps": 12.0, "width": 64,
                                      "height": 64}}
OLD_VIDEO_TO_VIDEO_ROW = {"mode": "style_transfer", "path": "model", "prompt": "an oil painting",
                          "negative_prompt": NEGATIVE_PROMPT, "model": "tiny", "strength": 0.5,
                          "num_inference_steps": 10, "seed": 1, "guidance_scale": 5.0, "source": SOURCE,
                          "inputs_id": "a2"}
OLD_VACE_ROW = {"mode": "colorization", "path": "model", "pipeline": "vace", "model": "tiny-vace",
                "prompt": "a watercolour", "negative_prompt": NEGATIVE_PROMPT, "num_inference_steps": 20,
                "guidance_scale": 5.0, "seed": 2, "source": SOURCE, "inputs_id": "a3",
                "reference_image": "reference.png", "unused": []}
OLD_ANIMATE_ROW = {"mode": "motion_transfer", "path": "model", "model": "tiny-animate", "prompt": "a person dancing",
                   "num_inference_steps": 20, "seed": 3, "source": SOURCE, "inputs_id": "a4",
                   "reference_image": "reference.png", "face_region_xywh": [10, 12, 40, 40], "unused": ["strength"]}


@pytest.mark.parametrize("row, path, pipeline", [
    (OLD_CLASSICAL_ROW, "classical", None),
    (OLD_MOTION_ROW, "classical", None),
    (OLD_VIDEO_TO_VIDEO_ROW, "model", "video_to_video"),
    (OLD_VACE_ROW, "model", "vace"),
    (OLD_ANIMATE_ROW, "model", "animate"),
])
def test_an_old_v2v_row_of_every_path_loads_as_the_current_spec(row, path, pipeline):
    spec = SPECS.load("v2v", row)
    assert isinstance(spec, V2VSpec)
    assert (spec.kind, spec.version, spec.path, spec.pipeline) == ("v2v", 2, path, pipeline)
    assert spec.mode == row["mode"] and spec.source.task_id == SOURCE["task_id"]
    if "reference_video" in row:
        assert spec.reference_video.upload == "motion_reference.mp4" and spec.reference_video.frames == 6
    # What the row stores now round-trips (version 2 is not upgraded again).
    assert SPECS.load("v2v", spec.stored()) == spec


def test_an_unknown_or_mistyped_field_fails_when_the_spec_is_built_not_on_the_worker():
    """The submit builds the spec: a typo or a wrong type there raises at once (no 202)."""
    with pytest.raises(ValidationError, match="scael"):
        V2VSpec(mode="upscale", scael=2.0, source=SOURCE)
    with pytest.raises(ValidationError, match="factor"):
        V2VSpec(mode="interpolation", factor=3, source=SOURCE)
    with pytest.raises(ValidationError, match="num_inference_steps"):
        V2VSpec(mode="style_transfer", path="model", pipeline="video_to_video", num_inference_steps=5)
    with pytest.raises(ValidationError, match="pipeline"):
        V2VSpec(mode="style_transfer", path="model", pipeline="wan-v2v")


def test_a_stored_row_that_does_not_match_the_spec_is_refused_naming_the_field():
    with pytest.raises(InvalidRequest, match="strenght"):
        SPECS.load("v2v", {**OLD_CLASSICAL_ROW, "strenght": 0.5})
    with pytest.raises(InvalidRequest, match="mode"):
        SPECS.load("v2v", {**OLD_CLASSICAL_ROW, "mode": "sharpen"})


def test_the_submit_stores_a_spec_with_kind_and_version(http, live_server):
    owner = live_server.studio.keys.lookup(API_KEY).id
    source = source_task(live_server.studio, owner, moving_square_clip(frames=4))
    reply = http.post(ROUTE, json={"source_task_id": source, "mode": "upscale", "scale": 2})
    assert reply.status_code == 202, reply.text
    row = live_server.studio.store.get(reply.json()["task_id"]).request
    assert (row["kind"], row["version"], row["path"], row["pipeline"]) == ("v2v", 2, "classical", None)
    assert row["scale"] == 2 and row["source"]["task_id"] == source
    wait_result(http, reply.json()["task_id"])


@pytest.mark.parametrize("old_row, method", [
    (OLD_CLASSICAL_ROW, "bicubic"),
    (OLD_VIDEO_TO_VIDEO_ROW, "WanVideoToVideo (tiny)"),
])
def test_an_old_row_in_the_store_runs_to_completion(http, live_server, old_row, method):
    """A task queued by the previous version (its row in the old dict shape) still runs."""
    studio = live_server.studio
    owner = studio.keys.lookup(API_KEY).id
    source = source_task(studio, owner, moving_square_clip(frames=4))
    inputs_id, _ = new_inputs(studio.services)
    row = {**old_row, "source": {**SOURCE, "task_id": source}, "inputs_id": inputs_id}
    result = run_old_row(http, studio, owner, "v2v", row)
    assert result["metadata"]["feature"] == "v2v" and result["metadata"]["method"].startswith(method)
    assert result["metadata"]["frames"] == 4
