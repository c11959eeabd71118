"""Batch similarity caching runs only on models whose thresholds were calibrated on their own
text encoder; elsewhere a request for it is not applied, and the batch says so."""

from __future__ import annotations

import pytest

from studio.engine import state_cache
from studio.models.catalog import CATALOG, TINY
from tests.test_batch import wait_batch


def test_only_the_tiny_model_is_calibrated():
    assert CATALOG[TINY].similarity_calibrated
    assert state_cache.SKIP_LEVELS == CATALOG[TINY].similarity_skip_levels
    for model_id, spec in CATALOG.items():
        if model_id != TINY:  # the real UMT5 scores unrelated prompts as similar: not calibrated
            assert not spec.similarity_calibrated, model_id
            assert not state_cache.similarity_calibrated(model_id)


def test_levels_of_another_model_apply_when_given():
    levels = ((0.99, 0.3),)
    assert state_cache.capture_steps(10, levels) == [3]
    assert not state_cache.reusable(0.95, "a", 1, "b", 1, levels)
    assert state_cache.reusable(0.995, "a", 1, "b", 1, levels)


@pytest.fixture()
def uncalibrated_tiny(monkeypatch):
    """The tiny model as if its levels had not been calibrated (the real models' case)."""
    from studio.genius.batch import submit as batch

    monkeypatch.setattr(batch, "similarity_calibrated", lambda model_id: model_id != TINY)


def test_requested_but_not_calibrated_is_not_applied_and_noted(http, uncalibrated_tiny):
    shape = {"duration_seconds": 1, "fps": 12, "resolution": "480p", "num_inference_steps": 12, "seed": 91,
             "model": TINY}
    prompts = ["a red fox running through snow", "a red fox running in snow", "a red fox running through snow"]
    submitted = http.post("/v1/genius/batch/submit", json={"prompts": prompts, "max_concurrent": 3,
                                                           "settings": shape}).json()
    assert any("similarity caching was requested but not applied" in n and TINY in n for n in submitted["notes"])
    final = wait_batch(http, submitted["batch_id"])
    assert final["counts"] == {"completed": 3}
    assert final["similarity_cache"]["applied"] is False
    assert final["similarity_cache"]["denoising_states_reused"] == 0
    assert final["similarity_cache"]["text_encodings_reused"] == 0
    assert final["notes"] == submitted["notes"]
    for task_id in submitted["task_ids"]:
        batch = http.get(f"/v1/result/{task_id}").json()["metadata"]["batch"]
        assert batch["denoising_state"] is None and batch["text_encoding"] == "computed"


def test_calibrated_model_applies_it_without_a_note(http):
    shape = {"duration_seconds": 1, "fps": 12, "resolution": "480p", "num_inference_steps": 12, "seed": 92,
             "model": TINY}
    submitted = http.post("/v1/genius/batch/submit", json={"prompts": ["a red fox running through snow"],
                                                           "settings": shape}).json()
    assert submitted["notes"] == []
    final = wait_batch(http, submitted["batch_id"])
    assert final["similarity_cache"]["applied"] is True and final["notes"] == []
