"""Batch similarity caching of denoising states (approximate caching, NIRVANA NSDI'24)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch

from studio.engine.plan import make_plan
from studio.engine.request import parse_request
from studio.engine.state_cache import DenoisingStateCache, capture_steps
from studio.engine.t2v import QuietHooks, Resume, run_group
from studio.models.catalog import get_spec
from studio.models.loader import ModelCache
from tests.conftest import SMALL
from tests.test_batch import wait_batch


class StepHooks(QuietHooks):
    def __init__(self):
        self.steps: list[int] = []

    def on_step(self, step, total, step_seconds, preview) -> None:
        self.steps.append(step)


def _frames(source) -> np.ndarray:
    with av.open(source if isinstance(source, io.BytesIO) else str(source)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]).astype(float)


def _unit(values) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(values, dtype=torch.float32), dim=0)


def test_cache_picks_the_deepest_level_the_similarity_allows():
    cache = DenoisingStateCache()
    states = {step: torch.full((1, 2), float(step)) for step in capture_steps(10)}
    assert capture_steps(10) == [2, 3, 4]
    cache.add("k", "task-a", "a red fox", 1, _unit([1.0, 0.0]), states)
    angle = lambda c: _unit([c, float(np.sqrt(1 - c * c))])  # noqa: E731  (a vector at cosine c)
    assert cache.match("k", angle(0.99), "a red fox!", 1, 10).skipped_steps == 4
    assert cache.match("k", angle(0.95), "a red fox!", 1, 10).skipped_steps == 3
    assert cache.match("k", angle(0.91), "a red fox!", 1, 10).skipped_steps == 2
    assert cache.match("k", angle(0.85), "a red fox!", 1, 10) is None
    assert cache.match("other-shape", angle(0.99), "a red fox!", 1, 10) is None
    assert cache.match("k", angle(1.0), "a red fox", 2, 10) is None  # same prompt, another seed: a variation
    assert cache.match("k", angle(1.0), "a red fox", 1, 10).source_task_id == "task-a"


def test_resuming_a_run_from_its_own_state_reproduces_it(tmp_path):
    """The mechanism is exact: only the similarity of the prompts makes it approximate."""
    model = ModelCache(tmp_path / "models").get("tiny")
    plan = make_plan(parse_request({**SMALL, "seed": 11}), get_spec("tiny"), seed=11)
    full_hooks, resumed_hooks = StepHooks(), StepHooks()
    full = run_group(model, [plan], [full_hooks], [tmp_path / "full.mp4"], [tmp_path / "full.jpg"],
                     capture_steps=(4,))[0]
    run_group(model, [plan], [resumed_hooks], [tmp_path / "resumed.mp4"], [tmp_path / "resumed.jpg"],
              resume=Resume(4, full.states[4]))
    assert full_hooks.steps == list(range(1, 11))
    assert resumed_hooks.steps == list(range(5, 11))  # progress still counts toward 10
    assert np.abs(_frames(tmp_path / "full.mp4") - _frames(tmp_path / "resumed.mp4")).mean() < 0.5


@pytest.fixture()
def shape():
    """Settings no other test uses, so states cached by other tests never match."""
    return {"duration_seconds": 1, "fps": 12, "resolution": "480p", "num_inference_steps": 12, "seed": 77}


def test_near_identical_prompts_start_from_a_cached_state(http, shape):
    prompts = ["a red fox running through snow", "a red fox running in snow", "sunset over ocean waves"]
    submitted = http.post("/v1/genius/batch/submit", json={"prompts": prompts, "max_concurrent": 3,
                                                           "settings": shape}).json()
    final = wait_batch(http, submitted["batch_id"])
    assert final["counts"] == {"completed": 3}
    first, second, third = (http.get(f"/v1/result/{t}").json() for t in submitted["task_ids"])
    reuse = second["metadata"]["batch"]["denoising_state"]
    assert reuse["source_task_id"] == submitted["task_ids"][0]
    assert reuse["cosine"] >= 0.9 and reuse["skipped_steps"] in (2, 3, 4)
    assert any("similarity caching" in note for note in second["metadata"]["notes"])
    assert first["metadata"]["batch"]["denoising_state"] is None
    assert third["metadata"]["batch"]["denoising_state"] is None  # unrelated prompt
    assert second["metadata"]["frames"] == first["metadata"]["frames"] == 12
    # (text encodings are cached per process, so earlier tests' prompts may count there)
    assert final["similarity_cache"]["denoising_states_reused"] == 1
    assert final["similarity_cache"]["steps_skipped"] == reuse["skipped_steps"]


def test_caching_off_reuses_nothing(http, shape):
    prompts = ["a red fox running through snow", "a red fox running in snow"]
    submitted = http.post("/v1/genius/batch/submit", json={
        "prompts": prompts, "enable_similarity_caching": False, "settings": {**shape, "seed": 78}}).json()
    final = wait_batch(http, submitted["batch_id"])
    assert final["similarity_cache"]["denoising_states_reused"] == 0
    for task_id in submitted["task_ids"]:
        assert http.get(f"/v1/result/{task_id}").json()["metadata"]["batch"]["denoising_state"] is None


def test_a_follower_output_is_its_own_video_not_a_copy(http, shape):
    """Reusing early steps keeps the layout but the later steps follow the new prompt."""
    prompts = ["a red fox running through snow", "a red fox running in snow"]
    submitted = http.post("/v1/genius/batch/submit", json={"prompts": prompts,
                                                           "settings": {**shape, "seed": 79}}).json()
    wait_batch(http, submitted["batch_id"])
    a, b = (_frames(io.BytesIO(http.get(f"/v1/videos/{t}.mp4").content)) for t in submitted["task_ids"])
    assert np.abs(a - b).mean() > 0.5
