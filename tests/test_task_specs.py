"""Typed task specs: a task is validated into its kind's spec, stored as it, read back as it.

Covers the text-to-video spec and the registry; each video-side feature has its own
``tests/test_task_specs_<feature>.py``.
"""

from __future__ import annotations

import os
from typing import Literal

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from studio.core import SPECS
from studio.engine.plan import make_plan
from studio.engine.request import GenerationRequest, GenerationSpec, parse_request
from studio.engine.spec import TaskSpec
from studio.engine.t2v import QuietHooks, run_text_to_video
from studio.errors import InvalidRequest
from studio.jobs.specs import SpecRegistry
from studio.models.catalog import get_spec
from studio.models.loader import ModelCache

#: A text-to-video row as the studio stored it before tasks carried a kind and a version.
OLD_T2V_ROW = {"prompt": "a red kite over a beach", "negative_prompt": "blurry, low quality",
               "duration_seconds": 1.0, "fps": 12, "resolution": "480p", "aspect_ratio": "16:9",
               "genre": "cinematic", "seed": 11, "guidance_scale": 7.5, "num_inference_steps": 10,
               "webhook_url": None, "model": "tiny", "acceleration": "off"}


def test_an_old_text_to_video_row_loads_as_the_current_spec():
    spec = SPECS.load("t2v", OLD_T2V_ROW)
    assert isinstance(spec, GenerationSpec)
    assert (spec.kind, spec.version, spec.seed, spec.model) == ("t2v", 1, 11, "tiny")
    assert spec.preview_every_n_steps == 1  # a field added later takes its default


def test_a_stored_spec_round_trips_with_its_kind_and_version():
    spec = SPECS.load("t2v", OLD_T2V_ROW)
    stored = spec.stored()
    assert stored["kind"] == "t2v" and stored["version"] == 1
    assert SPECS.load("t2v", stored) == spec


def test_a_row_that_does_not_match_its_spec_is_refused_naming_the_field():
    with pytest.raises(InvalidRequest, match="num_inference_step"):
        SPECS.load("t2v", {**OLD_T2V_ROW, "num_inference_step": 10})
    with pytest.raises(InvalidRequest, match="kind 'nope'"):
        SPECS.load("nope", OLD_T2V_ROW)


def test_a_mistyped_field_fails_when_the_spec_is_built_not_on_the_worker():
    """The submit builds the spec: a typo there raises at once (the client gets no 202)."""
    with pytest.raises(ValueError, match="preview_every"):
        GenerationSpec(**{**OLD_T2V_ROW, "preview_every": 2})


def test_a_kind_changing_shape_upgrades_its_old_rows():
    """How a later version renames a field: VERSION goes up, ``upgrade`` converts old rows."""

    class Renamed(TaskSpec):
        KIND = "renamed"
        VERSION = 2
        kind: Literal["renamed"] = "renamed"
        num_inference_steps: int

        @classmethod
        def upgrade(cls, data):
            data = super().upgrade(data)
            if data["version"] == 1:
                data["num_inference_steps"] = data.pop("steps")
                data["version"] = 2
            return data

    registry = SpecRegistry([Renamed])
    assert registry.load("renamed", {"steps": 30}).num_inference_steps == 30
    assert registry.load("renamed", {"version": 2, "num_inference_steps": 40}).num_inference_steps == 40


def test_a_row_of_a_newer_version_is_refused_not_misread():
    """A row a newer server wrote (e.g. during a rolling upgrade) is not read with old field names."""
    with pytest.raises(InvalidRequest, match="version 2 of a t2v spec: this code reads version 1"):
        SPECS.load("t2v", {**OLD_T2V_ROW, "version": 2})
    assert GenerationSpec(**OLD_T2V_ROW).version == 1  # a spec built now is of the current version


def test_every_registered_kind_has_one_spec_class_with_its_own_kind():
    for kind in SPECS.kinds:
        spec = SPECS._by_kind[kind]
        assert spec.KIND == kind and spec.model_fields["kind"].default == kind


class _PreviewSteps(QuietHooks):
    def __init__(self):
        self.steps: list[int] = []

    def on_step(self, step, total, step_seconds, preview):
        if preview is not None:
            self.steps.append(step)


@pytest.mark.parametrize("every, wanted", [(1, list(range(1, 11))), (4, [1, 4, 8, 10])])
def test_preview_every_n_steps_sets_which_steps_get_a_preview(tmp_path, every, wanted):
    """The field added to show what a new request field costs: the spec, the widget, the use."""
    request = parse_request({**{k: v for k, v in OLD_T2V_ROW.items() if k != "webhook_url"},
                             "preview_every_n_steps": every})
    plan = make_plan(request, get_spec("tiny"), seed=11)
    hooks = _PreviewSteps()
    run_text_to_video(ModelCache(tmp_path / "models").get("tiny"), plan, hooks, tmp_path / "v.mp4",
                      tmp_path / "v.jpg", min_preview_interval=0.0)
    assert hooks.steps == wanted


def test_preview_every_n_steps_has_the_request_range():
    with pytest.raises(InvalidRequest, match="preview_every_n_steps must be between 1 and 50"):
        parse_request({"prompt": "x", "preview_every_n_steps": 0})
    assert GenerationRequest(prompt="x").preview_every_n_steps == 1
    assert GenerationRequest(prompt="x", preview_every_n_steps=50).preview_every_n_steps == 50


def test_a_row_that_no_longer_loads_still_has_a_status_and_fails_when_run(tmp_path):
    """Reading a status never depends on the row's spec: a row written by a newer version (or
    spoiled) still answers GET /v1/status; running it is what fails, naming the problem."""
    import time

    from studio.config import Settings
    from studio.core import Studio

    studio = Studio(Settings(data_dir=tmp_path, model="tiny"))
    try:
        task, _ = studio.store.create_task("t2v", {**OLD_T2V_ROW, "version": 2}, owner="ui")
        assert studio.status(task.id).status == "pending"
        studio.start()
        deadline = time.monotonic() + 60
        while not studio.store.get(task.id).is_terminal and time.monotonic() < deadline:
            time.sleep(0.1)
        ended = studio.status(task.id)
        assert (ended.status, ended.error_type) == ("failed", "ValueError")  # InvalidRequest, the seed's name
        assert "version 2 of a t2v spec" in ended.error
    finally:
        studio.stop()
