"""The UI's edges stay thin: every tab follows its task through the one follower
(``components.follow.follow_task``), and widgets take their ranges and choices from the request
models, so a model change reaches the widget without a UI edit."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from studio.core import UI_OWNER
from tests.conftest import SMALL
from tests.edit_helpers import moving_square_clip, source_task


def _no_progress(*_args, **_kwargs) -> None:
    """Stands in for ``gr.Progress`` when a handler runs outside a Gradio event."""


def test_generate_and_a_video_tab_follow_their_tasks_through_one_helper(live_server, monkeypatch):
    from components import follow, generate_tab, v2v_tab

    studio = live_server.studio
    followed: list[tuple[str, set[str]]] = []
    original = follow.follow_task

    def recording(studio, task_id, owner, **hooks):
        followed.append((task_id, set(hooks)))
        yield from original(studio, task_id, owner, **hooks)

    monkeypatch.setattr(follow, "follow_task", recording)

    generate = generate_tab.make_handlers(studio)[0]
    updates = list(generate(SMALL["prompt"], duration_seconds=SMALL["duration_seconds"], fps=SMALL["fps"],
                            resolution=SMALL["resolution"], seed=3,
                            num_inference_steps=SMALL["num_inference_steps"], progress=_no_progress))
    generated = updates[0][0]
    assert updates[-1][2].startswith("Done") and updates[-1][3] and updates[-1][5]["task_id"] == generated
    # Generate brings its own running line, done line and progress callback as hooks.
    assert followed == [(generated, {"running_line", "finished_line", "on_progress"})]

    source = source_task(studio, UI_OWNER, moving_square_clip(frames=5))
    v2v = v2v_tab.make_handler(studio)
    updates = list(v2v(None, source, "interpolation", factor=2))
    assert updates[-1][0].startswith("Done") and updates[-1][2]["metadata"]["path"] == "classical"
    assert len(followed) == 2 and followed[1][0] == updates[-1][2]["task_id"] != generated


def test_the_scene_tab_polls_through_the_same_helper(live_server, monkeypatch):
    """A scene's stitch reports its shots' progress only through its status: the follower polls."""
    from components import follow, scene_tab

    followed: list[set[str]] = []
    original = follow.follow_task

    def recording(studio, task_id, owner, **hooks):
        followed.append(set(hooks))
        yield from original(studio, task_id, owner, **hooks)

    monkeypatch.setattr(follow, "follow_task", recording)
    scene_edit = scene_tab.make_handler(live_server.studio)
    updates = list(scene_edit([["a cat sleeping on a sofa", 1], ["a forest in autumn", 1]], "cut",
                              fps=12, resolution="480p", num_inference_steps=10))
    assert updates[-1][0].startswith("Done") and updates[-1][2]["total_frames"] == 24
    assert followed == [{"running_line", "finished_line", "poll_seconds"}]


def test_the_follower_cancels_a_task_whose_page_went_away(tmp_path):
    from components.follow import follow_task
    from studio.config import Settings
    from studio.core import Studio
    from studio.engine.request import parse_request
    from studio.jobs import store as st

    studio = Studio(Settings(data_dir=tmp_path, model="tiny"))
    studio.start()
    try:
        studio.worker._next_task = lambda: None  # keep the task queued
        task_id = studio.submit(parse_request({**SMALL, "seed": 5}), owner="ui:visitor").task_id
        updates = follow_task(studio, task_id, "ui:visitor")
        first = next(updates)
        assert first.status_line is not None and not first.finished
        updates.close()  # what Gradio does when the visitor leaves
        assert studio.store.get(task_id).status == st.CANCELLED
    finally:
        studio.stop()


class _Request(BaseModel):
    steps: int = Field(30, ge=4, le=80)
    strength: float = Field(0.5, gt=0, lt=1)
    optional: int | None = Field(None, ge=1, le=9)
    mode: Literal["a", "b"] = "b"
    maybe: Literal[2, 4] | None = None


def test_widget_bounds_and_choices_come_from_the_model():
    from components.widgets import bounds, choices, default

    assert bounds(_Request, "steps") == {"minimum": 4, "maximum": 80, "value": 30}
    assert bounds(_Request, "strength") == {"minimum": 0, "maximum": 1, "value": 0.5}
    assert bounds(_Request, "optional", 5) == {"minimum": 1, "maximum": 9, "value": 5}
    assert choices(_Request, "mode") == ["a", "b"] and default(_Request, "mode") == "b"
    assert choices(_Request, "maybe") == [2, 4]


@pytest.mark.parametrize("field, elem_id", [("num_inference_steps", "gen-steps"),
                                             ("duration_seconds", "gen-duration")])
def test_a_generate_slider_follows_its_request_model(live_server, monkeypatch, field, elem_id):
    """Change the request model's range and default, and the widget follows: the tab restates nothing."""
    import gradio as gr

    from components import generate_tab
    from studio.engine.request import GenerationRequest

    monkeypatch.setattr(GenerationRequest.model_fields[field], "metadata", Field(ge=2, le=7).metadata)
    monkeypatch.setattr(GenerationRequest.model_fields[field], "default", 3)
    with gr.Blocks() as demo:
        generate_tab.create_ui(live_server.studio)
    slider = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)
    assert (slider.minimum, slider.maximum, slider.value) == (2, 7, 3)


def test_the_v2v_steps_slider_is_the_request_models_range(live_server):
    import gradio as gr

    from components import v2v_tab
    from components.widgets import bounds
    from studio.genius.v2v.schema import V2VRequest

    with gr.Blocks():
        tab = v2v_tab.create_ui(live_server.studio)
    steps = tab.inputs[13]
    wanted = bounds(V2VRequest, "num_inference_steps")
    assert steps.label.startswith("Denoising steps")
    assert (steps.minimum, steps.maximum) == (wanted["minimum"], wanted["maximum"]) == (10, 150)
