"""Inpainting's typed task spec (``studio.genius.inpaint.schema.InpaintSpec``): rows stored before
tasks had specs still load and run, and a spec that does not match is refused where it is built."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from pydantic import ValidationError

from studio.core import SPECS
from studio.errors import InvalidRequest
from studio.genius.edit_submit import new_inputs
from studio.genius.inpaint.schema import InpaintRequest, InpaintSpec
from tests.conftest import API_KEY
from tests.edit_helpers import moving_square_clip, run_old_row, source_task, wait_result

ROUTE = "/v1/genius/inpaint/process"
SOURCE = {"task_id": "0d6c2f2e-0000-4000-8000-000000000002", "frames": 4, "fps": 12.0, "width": 192, "height": 128}

# Rows as the submit stored them before inpainting had a spec (no kind, no version).
OLD_REMOVE_ROW = {"mode": "remove", "feather_radius": 4, "blend_method": "feather", "inputs_id": "b1",
                  "source": SOURCE, "path": "classical", "bbox_xywh": [18, 38, 36, 36]}
OLD_BLEND_ROW = {**OLD_REMOVE_ROW, "mode": "blend", "blend_method": "poisson", "image": "overlay.png"}
OLD_EXTEND_ROW = {"mode": "extend", "feather_radius": 10, "blend_method": "feather", "inputs_id": "b2",
                  "source": SOURCE, "path": "classical", "target_size": [192, 192]}
OLD_MODEL_ROW = {"mode": "replace", "feather_radius": 4, "blend_method": "feather", "inputs_id": "b3",
                 "source": SOURCE, "path": "model", "model": "tiny-vace", "prompt": "a blue bird", "steps": 2,
                 "guidance_scale": 5.0, "seed": 7, "bbox_xywh": [18, 38, 36, 36]}


MODEL_ROW = InpaintSpec.upgrade(dict(OLD_MODEL_ROW))  # the same task as the current version stores it


@pytest.mark.parametrize("row", [OLD_REMOVE_ROW, OLD_BLEND_ROW, OLD_EXTEND_ROW, OLD_MODEL_ROW])
def test_an_old_inpaint_row_of_every_path_loads_as_the_current_spec(row):
    spec = SPECS.load("inpaint", row)
    assert isinstance(spec, InpaintSpec)
    assert (spec.kind, spec.version, spec.mode, spec.path) == ("inpaint", 2, row["mode"], row["path"])
    assert spec.source.task_id == SOURCE["task_id"] and spec.inputs_id == row["inputs_id"]
    assert spec.bbox_xywh == (tuple(row["bbox_xywh"]) if "bbox_xywh" in row else None)
    assert spec.target_size == (tuple(row["target_size"]) if "target_size" in row else None)
    assert spec.image == row.get("image") and spec.seed == row.get("seed")
    assert spec.num_inference_steps == row.get("steps")  # version 1's name, upgraded to the one name
    # What the row stores now: the same values, the steps under their one name, plus kind and version.
    same = spec.model_dump(mode="json", exclude_none=True, exclude={"kind", "version"})
    renamed = {("num_inference_steps" if name == "steps" else name): value for name, value in row.items()}
    assert same == renamed
    assert SPECS.load("inpaint", spec.stored()) == spec


def test_an_unknown_or_mistyped_field_fails_when_the_spec_is_built_not_on_the_worker():
    """The submit builds the spec: a typo, a wrong type or an input its mode's run needs but
    lacks raises at once (the client gets no 202, nothing is queued)."""
    with pytest.raises(ValidationError, match="feather_raduis"):
        InpaintSpec(**{**OLD_REMOVE_ROW, "feather_raduis": 4})
    with pytest.raises(ValidationError, match="feather_radius"):
        InpaintSpec(**{**OLD_REMOVE_ROW, "feather_radius": "soft"})
    with pytest.raises(ValidationError, match="bbox_xywh"):
        InpaintSpec(**{**OLD_REMOVE_ROW, "bbox_xywh": [18, 38, 36]})
    with pytest.raises(ValidationError, match="target_size"):
        InpaintSpec(**{**OLD_EXTEND_ROW, "target_size": None})
    with pytest.raises(ValidationError, match="seed"):
        InpaintSpec(**{k: v for k, v in MODEL_ROW.items() if k != "seed"})
    with pytest.raises(ValidationError, match="model"):
        InpaintSpec(**{**MODEL_ROW, "model": "tiny"})  # a text-to-video model is no VACE model


def test_a_stored_row_that_does_not_match_the_spec_is_refused_naming_the_field():
    with pytest.raises(InvalidRequest, match="bbox"):
        SPECS.load("inpaint", {**OLD_REMOVE_ROW, "bbox": [18, 38, 54, 74]})
    with pytest.raises(InvalidRequest, match="mode"):
        SPECS.load("inpaint", {**OLD_REMOVE_ROW, "mode": "erase"})


def test_the_image_a_mode_reads_is_the_requests_rule():
    """The UI's one image goes where the request says its mode reads it."""
    assert [InpaintRequest.image_field_for(mode) for mode in ("remove", "replace", "blend", "background", "extend")] \
        == [None, "overlay", "overlay", "background", None]
    replace = InpaintRequest(mode="replace", prompt="a cat", background_url="https://example.com/cat.png")
    assert replace.image_field() == "background"  # replace's reference may come in the background fields
    assert InpaintRequest(mode="replace", prompt="a cat").image_field() == "overlay"


def test_the_submit_stores_a_spec_with_kind_and_version(http, live_server):
    owner = live_server.studio.keys.lookup(API_KEY).id
    source = source_task(live_server.studio, owner, moving_square_clip(frames=4))
    reply = http.post(ROUTE, json={"task_id": source, "mode": "remove", "bbox": [18, 38, 54, 74],
                                   "feather_radius": 4})
    assert reply.status_code == 202, reply.text
    row = live_server.studio.store.get(reply.json()["task_id"]).request
    assert (row["kind"], row["version"], row["path"], row["bbox_xywh"]) == ("inpaint", 2, "classical", [18, 38, 36, 36])
    assert row["source"]["task_id"] == source and row["feather_radius"] == 4
    wait_result(http, reply.json()["task_id"])


@pytest.mark.parametrize("old_row, method", [
    (OLD_REMOVE_ROW, "homography-propagation+telea"),
    (OLD_MODEL_ROW, "WanVACE (tiny-vace)"),
])
def test_an_old_row_in_the_store_runs_to_completion(http, live_server, old_row, method):
    """A task queued by the previous version (its row in the old dict shape) still runs."""
    studio = live_server.studio
    owner = studio.keys.lookup(API_KEY).id
    source = source_task(studio, owner, moving_square_clip(frames=4))
    inputs_id, _ = new_inputs(studio.services)
    row = {**old_row, "source": {**SOURCE, "task_id": source}, "inputs_id": inputs_id}
    result = run_old_row(http, studio, owner, "inpaint", row)
    assert result["metadata"]["feature"] == "inpaint" and result["metadata"]["method"] == method
    assert result["metadata"]["frames"] == 4
