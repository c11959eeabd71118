"""The Scene Orchestrator's typed task specs (``studio.genius.scene.schema``: ``SceneSpec`` for the
stitch, ``SceneShotSpec`` for a reference-conditioned shot): rows stored before tasks had specs
still load and run, and a spec that does not match is refused where it is built."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from pydantic import ValidationError

from studio.core import SPECS
from studio.engine.request import GenerationSpec
from studio.errors import InvalidRequest
from studio.genius.scene.schema import SceneShotSpec, SceneSpec
from tests.conftest import API_KEY
from tests.edit_helpers import moving_square_clip, source_task, wait_result

SHOT_IDS = ["0d6c2f2e-0000-4000-8000-000000000011", "0d6c2f2e-0000-4000-8000-000000000012"]

# Rows as the submit stored them before scenes had specs (no kind, no version).
OLD_SCENE_ROW = {"shots": SHOT_IDS, "fps": 12, "shot_kind": "t2v",
                 "transitions": [{"type": "crossfade", "duration_seconds": 0.25, "params": {}}],
                 "character_consistency": False, "character_description": None, "seed": None,
                 "reference_model": None, "morph_model": None}
#: From before the model paths: no shot_kind, reference_model or morph_model.
OLDEST_SCENE_ROW = {k: v for k, v in OLD_SCENE_ROW.items() if k not in ("shot_kind", "reference_model", "morph_model")}
OLD_MORPH_ROW = {**OLD_SCENE_ROW, "transitions": [{"type": "morph", "duration_seconds": 0.5, "params": {}}],
                 "morph_model": "tiny-vace",
                 "morph": {"prompts": ["a castle, cinematic", "a forest, cinematic"], "negative_prompt": "blurry",
                           "steps": 10, "guidance_scale": 5.0, "seed": 3}}
#: A shot's text-to-video request as ``GenerationRequest.model_dump()`` stored it then.
OLD_SHOT = {"prompt": "a knight. tall, red cloak", "negative_prompt": "blurry, low quality", "duration_seconds": 1.0,
            "fps": 12, "resolution": "480p", "aspect_ratio": "16:9", "genre": "cinematic", "seed": 4,
            "guidance_scale": 7.5, "num_inference_steps": 10, "webhook_url": None, "model": "tiny",
            "acceleration": "off"}
OLD_SHOT_ROW = {"inputs_id": "c1", "image": "character_reference.png", "model": "tiny-vace", "scene": 1,
                "shot": OLD_SHOT}


@pytest.mark.parametrize("row", [OLD_SCENE_ROW, OLDEST_SCENE_ROW, OLD_MORPH_ROW])
def test_an_old_scene_row_loads_as_the_current_spec(row):
    spec = SPECS.load("scene", row)
    assert isinstance(spec, SceneSpec)
    assert (spec.kind, spec.version, spec.shots, spec.fps) == ("scene", 2, SHOT_IDS, 12)
    assert spec.shot_kind == "t2v" and spec.reference_model is None  # absent in the oldest rows: the defaults
    assert [t.type for t in spec.transitions] == [t["type"] for t in row["transitions"]]
    assert spec.morph_model == row.get("morph_model")
    assert (spec.morph.num_inference_steps, spec.morph.seed) == (10, 3) if "morph" in row else spec.morph is None
    assert SPECS.load("scene", spec.stored()) == spec


def test_an_old_scene_shot_row_loads_with_its_text_to_video_shot():
    spec = SPECS.load("scene_shot", OLD_SHOT_ROW)
    assert isinstance(spec, SceneShotSpec) and isinstance(spec.shot, GenerationSpec)
    assert (spec.kind, spec.version, spec.path, spec.scene, spec.model) == ("scene_shot", 1, "model", 1, "tiny-vace")
    assert (spec.shot.seed, spec.shot.model, spec.shot.prompt) == (4, "tiny", OLD_SHOT["prompt"])
    assert SPECS.load("scene_shot", spec.stored()) == spec


def test_an_unknown_or_mistyped_field_fails_when_the_spec_is_built_not_on_the_worker():
    """The submit builds every spec before the first row is written: a typo or a wrong type
    raises at once (the client gets no 202, nothing is queued)."""
    with pytest.raises(ValidationError, match="shot_ids"):
        SceneSpec(**{**OLD_SCENE_ROW, "shot_ids": SHOT_IDS})
    with pytest.raises(ValidationError, match="fps"):
        SceneSpec(**{**OLD_SCENE_ROW, "fps": "twelve"})
    with pytest.raises(ValidationError, match="transitions"):
        SceneSpec(**{**OLD_SCENE_ROW, "transitions": [{"type": "dissolve", "duration_seconds": 0.5}]})
    with pytest.raises(ValidationError, match="morph"):
        SceneSpec(**{**OLD_MORPH_ROW, "morph": {**OLD_MORPH_ROW["morph"], "step": 10}})
    with pytest.raises(ValidationError, match="scene"):
        SceneShotSpec(**{**OLD_SHOT_ROW, "scene": -1})
    with pytest.raises(ValidationError, match="seed"):
        SceneShotSpec(**{**OLD_SHOT_ROW, "shot": {k: v for k, v in OLD_SHOT.items() if k != "seed"}})


def test_a_stored_row_that_does_not_match_the_spec_is_refused_naming_the_field():
    with pytest.raises(InvalidRequest, match="shot_kind"):
        SPECS.load("scene", {**OLD_SCENE_ROW, "shot_kind": "i2v"})
    with pytest.raises(InvalidRequest, match="shots"):
        SPECS.load("scene", {k: v for k, v in OLD_SCENE_ROW.items() if k != "shots"})


def test_the_submit_stores_specs_with_kind_and_version(http, live_server):
    reply = http.post("/v1/genius/scene/edit", json={
        "scenes": [{"prompt": "a castle", "duration": 1}, {"prompt": "a forest", "duration": 1}],
        "transitions": [{"type": "wipe", "direction": "left"}], "transition_duration_seconds": 0.25,
        "settings": {"fps": 12, "resolution": "480p", "num_inference_steps": 10, "seed": 2}})
    assert reply.status_code == 202, reply.text
    body = reply.json()
    row = live_server.studio.store.get(body["task_id"]).request
    assert (row["kind"], row["version"], row["shots"], row["shot_kind"]) == ("scene", 2, body["shot_task_ids"], "t2v")
    assert row["transitions"] == [{"type": "wipe", "duration_seconds": 0.25, "params": {"direction": "left"}}]
    shot = live_server.studio.store.get(body["shot_task_ids"][0]).request
    assert (shot["kind"], shot["seed"], shot["model"]) == ("t2v", 2, "tiny")
    wait_result(http, body["task_id"], timeout=240)


def test_an_old_scene_row_in_the_store_runs_to_completion(http, live_server):
    """A stitch queued by the previous version (its row in the oldest dict shape) still runs."""
    studio = live_server.studio
    owner = studio.keys.lookup(API_KEY).id
    shots = [source_task(studio, owner, moving_square_clip(frames=8, seed=seed)) for seed in (0, 1)]
    row = {**OLDEST_SCENE_ROW, "shots": shots}
    task, _ = studio.store.create_task("scene", row, priority=1, estimated_seconds=1.0, owner=owner,
                                       depends_on=shots)
    studio.worker.wake()
    result = wait_result(http, task.id, timeout=240)
    details = result["metadata"]["details"]
    assert result["metadata"]["feature"] == "scene" and result["metadata"]["method"] == "transitions: crossfade"
    assert details["shot_kind"] == "t2v" and [s["task_id"] for s in details["scenes"]] == shots
    assert details["total_frames"] == 8 + 8 - 3 == result["metadata"]["frames"]  # 0.25 s at 12 fps overlaps 3
