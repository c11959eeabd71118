"""The tracking task's run: track the entities through the video, then draw their boxes.

The worker hands it the task's :class:`~studio.genius.consistency.schema.ConsistencySpec`. The
run streams the video twice: once through ``studio.genius.consistency.tracker.track``
(detection, tracking and scoring are documented in its modules), once through ``annotate`` into
the output video (each entity's box and confidence drawn).

**Two paths** for the score's appearance term (``appearance_model``): ``histogram`` (the
default, the classical path: colour histogram + grey correlation) or a CLIP image encoder of
``studio.models.appearance`` (the model path: cosine of learned embeddings). Detection and
tracking are the same on both. A hub encoder that cannot be loaded here (not cached while
``HF_HUB_OFFLINE`` is set) is refused at submission with 503 ``ModelUnavailable``; one that
fails to load later fails the task with the same error. The result's ``metadata.path`` is
``classical`` or ``model`` and ``metadata.method`` names the encoder; ``tiny-clip`` is
untrained, so its similarities are meaningless by design (a note says so).

The result's ``metadata.details`` is the seed's response: ``entities_tracked``,
``frames_analyzed``, ``consistency_score`` (``null`` when no entity was found in any frame:
nothing was measured) and ``entity_timelines`` ``{name: [{frame, bbox: [x1, y1, x2, y2],
confidence}]}`` (pixel corners, ``x2``/``y2`` exclusive; frames without the entity are left
out), plus ``entity_scores`` per entity (``consistency_score``, ``appearance_similarity``,
``temporal_stability``, ``frames_present``, ``frames_tracked``, ``detections`` by method),
``entities``, ``appearance_model``, ``model_trained`` (``null`` on the classical path),
``detect_every`` and the ``thresholds``.
"""

from __future__ import annotations

from studio.engine.edit import EditJob, EditOutcome, write_video
from studio.errors import ModelUnavailable
from studio.genius.consistency.reference import EntityModel
from studio.genius.consistency.schema import ConsistencySpec
from studio.genius.consistency.scoring import HISTOGRAM
from studio.genius.consistency.tracker import annotate, track
from studio.models import appearance

KIND = ConsistencySpec.KIND  # the task kind the worker runs with this
METHOD = "ORB/face/template detection + Lucas-Kanade tracking"
TRACK_PROGRESS = 0.7  # tracking is this share of the run; drawing and encoding the rest


def run(job: EditJob) -> EditOutcome:
    """Track the entities through the video, then draw their boxes into the output."""
    spec: ConsistencySpec = job.spec
    info = job.source_info()
    model_id = spec.appearance_model
    embedder = None
    if model_id != HISTOGRAM:
        if job.models is None:
            raise ModelUnavailable("this worker has no models folder; the model path cannot run")
        job.check(0.0, f"Loading {model_id}")
        embedder = appearance.load_embedder(job.models.models_dir, model_id)
    entities = {}
    for entry in spec.entities:
        entities[entry.name] = EntityModel.from_reference(job.image(entry.file), entry.entity_type, entry.name)
    expected = max(info.frames, 1)

    def frames():
        for index, frame in enumerate(job.source_frames()):
            job.check(TRACK_PROGRESS * min(1.0, index / expected), f"Tracking frame {index + 1}/{info.frames}")
            yield frame

    found = track(frames(), entities, spec.detect_every, appearance=embedder)
    video = write_video(job, annotate(job.source_frames(), found["entity_timelines"]), info.fps,
                        found["frames_analyzed"], progress=(TRACK_PROGRESS, 1.0), message="Drawing frame")
    details = {
        "entities_tracked": found["entities_tracked"],
        "frames_analyzed": found["frames_analyzed"],
        "consistency_score": _rounded(found["consistency_score"]),
        "entity_timelines": {name: [{"frame": e["frame"], "bbox": corners(e["bbox"]), "confidence": e["confidence"]}
                                    for e in timeline]
                             for name, timeline in found["entity_timelines"].items()},
        "entity_scores": {name: {k: _rounded(v) if k in _SCORES else v for k, v in scores.items()}
                          for name, scores in found["entity_scores"].items()},
        "entities": [e.model_dump(include={"entity_id", "name", "entity_type"}) for e in spec.entities],
        "appearance_model": model_id,
        "model_trained": None if embedder is None else embedder.trained,
        "detect_every": found["detect_every"],
        "thresholds": found["thresholds"],
    }
    if embedder is None:
        return EditOutcome(video, "classical", METHOD, details)
    notes = [f"appearance similarities are max(0, cosine) of {model_id} embeddings: compare these scores with "
             "other runs of the same appearance model, not with 'histogram' ones"]
    if not embedder.trained:
        notes.append(f"{model_id} is an untrained offline model: its appearance similarities (and so the "
                     "consistency scores) are meaningless by design; detection and tracking are unaffected")
    return EditOutcome(video, "model", f"{METHOD}; appearance: CLIP embeddings ({model_id})", details, notes)


_SCORES = ("consistency_score", "appearance_similarity", "temporal_stability")


def corners(xywh) -> list[int]:
    """``(x, y, w, h)`` as ``[x1, y1, x2, y2]`` (the API's box form)."""
    x, y, w, h = (int(round(v)) for v in xywh)
    return [x, y, x + w, y + h]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
