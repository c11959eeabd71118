"""Lip-sync's typed task spec (``studio.genius.lipsync.schema.LipSyncSpec``): rows stored before
tasks had specs still load and run, and a spec that does not match is refused where it is built."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2
import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError
from skimage import data

from studio.core import SPECS
from studio.errors import InvalidRequest
from studio.genius.edit_submit import new_inputs
from studio.genius.lipsync.schema import LipSyncSpec
from tests.conftest import API_KEY
from tests.edit_helpers import source_task, wait_result

SOURCE = {"task_id": "0d6c2f2e-0000-4000-8000-000000000003", "frames": 6, "fps": 12.0, "width": 128, "height": 128}

# Rows as the submit stored them before lip-sync had a spec (no kind, no version): the classical
# path (no "path" key), an older one without "audio_field", and the model path.
OLD_CLASSICAL_ROW = {"audio": "audio.wav", "audio_field": "audio_base64", "audio_seconds": 0.5,
                     "expression": "happy", "intensity": 1.0, "inputs_id": "c1", "source": SOURCE,
                     "face_region_xywh": [24, 16, 80, 96]}
OLD_ROW_WITHOUT_AUDIO_FIELD = {k: v for k, v in OLD_CLASSICAL_ROW.items()
                               if k not in ("audio_field", "face_region_xywh")}
OLD_MODEL_ROW = {**OLD_CLASSICAL_ROW, "path": "model", "model": "tiny-animate", "num_inference_steps": 20, "seed": 5}


@pytest.mark.parametrize("row", [OLD_CLASSICAL_ROW, OLD_ROW_WITHOUT_AUDIO_FIELD, OLD_MODEL_ROW])
def test_an_old_lipsync_row_loads_as_the_current_spec(row):
    spec = SPECS.load("lipsync", row)
    assert isinstance(spec, LipSyncSpec)
    assert (spec.kind, spec.version, spec.path) == ("lipsync", 1, row.get("path", "classical"))
    assert (spec.audio, spec.audio_seconds, spec.expression) == ("audio.wav", 0.5, "happy")
    assert spec.audio_field == row.get("audio_field", "audio")  # errors of the run name the field sent
    assert spec.face_region_xywh == (tuple(row["face_region_xywh"]) if "face_region_xywh" in row else None)
    assert (spec.model, spec.num_inference_steps, spec.seed) == (row.get("model"), row.get("num_inference_steps"),
                                                                row.get("seed"))
    assert SPECS.load("lipsync", spec.stored()) == spec


def test_an_unknown_or_mistyped_field_fails_when_the_spec_is_built_not_on_the_worker():
    """The submit builds the spec: a typo, a wrong type or a model path without its settings
    raises at once (the client gets no 202, nothing is queued)."""
    with pytest.raises(ValidationError, match="intensty"):
        LipSyncSpec(**{**OLD_CLASSICAL_ROW, "intensty": 1.0})
    with pytest.raises(ValidationError, match="expression"):
        LipSyncSpec(**{**OLD_CLASSICAL_ROW, "expression": "grumpy"})
    with pytest.raises(ValidationError, match="intensity"):
        LipSyncSpec(**{**OLD_CLASSICAL_ROW, "intensity": "loud"})
    with pytest.raises(ValidationError, match="seed"):
        LipSyncSpec(**{k: v for k, v in OLD_MODEL_ROW.items() if k != "seed"})


def test_a_stored_row_that_does_not_match_the_spec_is_refused_naming_the_field():
    with pytest.raises(InvalidRequest, match="face_region"):
        SPECS.load("lipsync", {**OLD_CLASSICAL_ROW, "face_region": [24, 16, 104, 112]})
    with pytest.raises(InvalidRequest, match="audio"):
        SPECS.load("lipsync", {k: v for k, v in OLD_CLASSICAL_ROW.items() if k != "audio"})


def test_an_old_row_in_the_store_runs_to_completion(http, live_server):
    """A task queued by the previous version (its row in the old dict shape) still runs."""
    studio = live_server.studio
    owner = studio.keys.lookup(API_KEY).id
    face = cv2.resize(data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    source = source_task(studio, owner, [np.roll(face, i, axis=1) for i in range(6)])
    inputs_id, folder = new_inputs(studio.services)
    t = np.arange(8000) / 16000
    sf.write(folder / "audio.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.1)).astype(np.float32), 16000)
    row = {**OLD_CLASSICAL_ROW, "source": {**SOURCE, "task_id": source}, "inputs_id": inputs_id}
    task, _ = studio.store.create_task("lipsync", row, priority=1, estimated_seconds=1.0, owner=owner)
    studio.worker.wake()
    result = wait_result(http, task.id, timeout=240)
    meta = result["metadata"]
    assert meta["feature"] == "lipsync" and meta["path"] == "classical" and meta["frames"] == 6
    assert meta["details"]["face_region"] == [24, 16, 104, 112] and meta["details"]["expression"] == "happy"
