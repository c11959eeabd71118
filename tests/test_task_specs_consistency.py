"""The Consistency Tracker's typed task spec (``studio.genius.consistency.schema.ConsistencySpec``):
rows stored before tasks had specs still load and run, and a spec that does not match is refused
where it is built."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2
import pytest
from pydantic import ValidationError

from studio.core import SPECS
from studio.errors import InvalidRequest
from studio.genius.consistency.schema import ConsistencySpec
from studio.genius.edit_submit import new_inputs
from tests.conftest import API_KEY
from tests.edit_helpers import moving_square_clip, source_task, square_box, wait_result

SOURCE = {"task_id": "0d6c2f2e-0000-4000-8000-000000000021", "frames": 8, "fps": 12.0, "width": 192, "height": 128}
ENTITY = {"entity_id": "ent-0123456789abcdef", "name": "square", "entity_type": "object", "file": "entity-0.png"}

# Rows as the submit stored them before tracking had a spec (no kind, no version).
OLD_ROW = {"inputs_id": "d1", "source": SOURCE, "detect_every": 3, "entities": [ENTITY],
           "appearance_model": "histogram"}
#: From before the model path: no appearance_model (the classical path).
OLDEST_ROW = {k: v for k, v in OLD_ROW.items() if k != "appearance_model"}
OLD_MODEL_ROW = {**OLD_ROW, "appearance_model": "tiny-clip"}


@pytest.mark.parametrize("row", [OLD_ROW, OLDEST_ROW, OLD_MODEL_ROW])
def test_an_old_tracking_row_loads_as_the_current_spec(row):
    spec = SPECS.load("consistency", row)
    assert isinstance(spec, ConsistencySpec)
    assert (spec.kind, spec.version, spec.detect_every, spec.inputs_id) == ("consistency", 1, 3, "d1")
    assert spec.appearance_model == row.get("appearance_model", "histogram")
    assert spec.source.task_id == SOURCE["task_id"] and spec.source.frames == 8
    assert [e.model_dump() for e in spec.entities] == [ENTITY]
    assert SPECS.load("consistency", spec.stored()) == spec


def test_an_unknown_or_mistyped_field_fails_when_the_spec_is_built_not_on_the_worker():
    """The submit builds the spec: a typo or a wrong type raises at once (the client gets no
    202, nothing is queued)."""
    with pytest.raises(ValidationError, match="detect_evry"):
        ConsistencySpec(**{**OLD_ROW, "detect_evry": 3})
    with pytest.raises(ValidationError, match="detect_every"):
        ConsistencySpec(**{**OLD_ROW, "detect_every": 0})
    with pytest.raises(ValidationError, match="entity_type"):
        ConsistencySpec(**{**OLD_ROW, "entities": [{**ENTITY, "entity_type": "ghost"}]})
    with pytest.raises(ValidationError, match="file"):
        ConsistencySpec(**{**OLD_ROW, "entities": [{k: v for k, v in ENTITY.items() if k != "file"}]})
    with pytest.raises(ValidationError, match="appearance_model"):
        ConsistencySpec(**{**OLD_ROW, "appearance_model": "clip-huge"})


def test_a_stored_row_that_does_not_match_the_spec_is_refused_naming_the_field():
    with pytest.raises(InvalidRequest, match="entities"):
        SPECS.load("consistency", {**OLD_ROW, "entities": []})
    with pytest.raises(InvalidRequest, match="source"):
        SPECS.load("consistency", {**OLD_ROW, "source": {"task_id": "x"}})


def test_an_old_tracking_row_in_the_store_runs_to_completion(http, live_server):
    """A tracking task queued by the previous version (its row in the oldest dict shape) still runs."""
    studio = live_server.studio
    owner = studio.keys.lookup(API_KEY).id
    clip = moving_square_clip(frames=8)
    source = source_task(studio, owner, clip)
    inputs_id, folder = new_inputs(studio.services)
    x1, y1, x2, y2 = square_box(0)
    cv2.imwrite(str(folder / ENTITY["file"]), cv2.cvtColor(clip[0][y1:y2, x1:x2], cv2.COLOR_RGB2BGR))
    row = {**OLDEST_ROW, "inputs_id": inputs_id, "source": {**SOURCE, "task_id": source}}
    task, _ = studio.store.create_task("consistency", row, priority=1, estimated_seconds=1.0, owner=owner)
    studio.worker.wake()
    result = wait_result(http, task.id, timeout=240)
    details = result["metadata"]["details"]
    assert result["metadata"]["feature"] == "consistency" and result["metadata"]["path"] == "classical"
    assert details["appearance_model"] == "histogram" and details["frames_analyzed"] == 8
    assert details["entities"] == [{k: ENTITY[k] for k in ("entity_id", "name", "entity_type")}]
    assert details["entities_tracked"] == 1 and details["entity_timelines"]["square"][0]["frame"] == 0
