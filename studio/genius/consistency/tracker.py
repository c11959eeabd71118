"""Consistency Tracker: find registered entities in every frame of a video and score how
consistently each one looks.

``POST /v1/genius/consistency/register-entity`` builds an :class:`EntityModel` from a reference
image (:meth:`EntityModel.from_reference`); ``POST /v1/genius/consistency/track/{task_id}`` runs
:func:`track` over the task's frames. Frames and references are ``(H, W, 3)`` uint8 RGB arrays.

The parts, each with its formulas: ``reference`` (the entity model built from its reference
image), ``detection`` (detection on keyframes, tracking in between), ``scoring`` (the
appearance similarity and the consistency score, classical and model path). This module runs
them over a whole video (:func:`track`) and draws the result (:func:`annotate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import cv2
import numpy as np

from studio.errors import InvalidRequest
from studio.genius.consistency.detection import DETECTION_THRESHOLD, TRACK_THRESHOLD, FrameView, Track, detect, follow
from studio.genius.consistency.reference import BBox, EntityModel, Frame
from studio.genius.consistency.scoring import HISTOGRAM, Embedder, EmbeddingScores, HistogramScores, entity_score


def _check_frame(frame: Any, index: int) -> None:
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
        raise InvalidRequest(f"frame {index} must be a uint8 RGB array of shape (H, W, 3)")


def track(frames: Iterable[Frame], entities: Mapping[str, EntityModel], detect_every: int = 5,
          appearance: Embedder | None = None) -> dict[str, Any]:
    """Track every entity through ``frames`` (streamed: only the previous frame is kept).

    ``appearance`` picks the similarity term of the score: ``None`` (the default) the classical
    ``(colour + structure) / 2``; an :class:`Embedder` the model path's ``max(0, cosine)`` of
    learned embeddings (module docstring). Detection and tracking are the same either way.

    Returns the seed's shape plus per-entity details::

        {"entities_tracked": entities found in at least one frame,
         "frames_analyzed": frames read,
         "consistency_score": overall score or None,
         "entity_timelines": {name: [{"frame", "bbox": [x, y, w, h], "confidence"}]},
         "entity_scores": {name: {"consistency_score", "appearance_similarity",
                                  "temporal_stability", "frames_present", "frames_tracked",
                                  "detections": {"features", "face", "template"}}},
         "appearance": "histogram" or the embedder's model_id,
         "detect_every": N, "thresholds": {...}}
    """
    if not isinstance(detect_every, int) or isinstance(detect_every, bool) or detect_every < 1:
        raise InvalidRequest(f"detect_every must be an integer >= 1, got {detect_every!r}")
    names = list(entities)
    timelines: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    scorer = HistogramScores(names) if appearance is None else EmbeddingScores(appearance, entities)
    methods = {n: {"features": 0, "face": 0, "template": 0} for n in names}
    tracked = dict.fromkeys(names, 0)
    tracks: dict[str, Track | None] = dict.fromkeys(names)
    prev_gray = None
    index = -1
    for index, frame in enumerate(frames):
        _check_frame(frame, index)
        view = FrameView(np.ascontiguousarray(frame))
        if prev_gray is not None and view.gray.shape != prev_gray.shape:
            raise InvalidRequest(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, unlike the frames before it")
        keyframe = index % detect_every == 0
        for name in names:
            entity = entities[name]
            found = _locate(entity, view, tracks[name], prev_gray, keyframe)
            if found is None:
                tracks[name] = None
                continue
            box, confidence, method = found
            if method is None:
                tracked[name] += 1
                tracks[name].bbox = box
            else:
                methods[name][method] += 1
                tracks[name] = Track(box, confidence)
            timelines[name].append({"frame": index, "bbox": [round(v) for v in box],
                                    "confidence": round(float(confidence), 4)})
            scorer.add(name, entity, view.rgb, box)
        prev_gray = view.gray
    return _result(names, timelines, scorer.finish(), methods, tracked, index + 1, detect_every, scorer.name)


def _locate(entity: EntityModel, view: FrameView, current: Track | None, prev_gray: np.ndarray | None,
            keyframe: bool) -> tuple[BBox, float, str | None] | None:
    """(box, confidence, detection method or None when tracked) of the entity in this frame."""
    if keyframe:
        found = detect(entity, view)
        return (found.bbox, found.confidence, found.method) if found is not None else None
    if current is None or prev_gray is None:
        return None
    moved = follow(entity, current, prev_gray, view.gray)
    if moved is None or moved[1] < TRACK_THRESHOLD:
        return None
    return moved[0], moved[1], None


def _result(names, timelines, similarities, methods, tracked, n_frames, detect_every,
            appearance: str = HISTOGRAM) -> dict[str, Any]:
    scores = {}
    for name in names:
        score = entity_score(similarities[name])
        scores[name] = {**score, "frames_present": len(timelines[name]), "frames_tracked": tracked[name],
                        "detections": methods[name]}
    present = [n for n in names if timelines[n]]
    weights = [len(timelines[n]) for n in present]
    overall = (sum(scores[n]["consistency_score"] * w for n, w in zip(present, weights)) / sum(weights)
               if present else None)
    return {
        "entities_tracked": len(present),
        "frames_analyzed": n_frames,
        "consistency_score": overall,
        "entity_timelines": timelines,
        "entity_scores": scores,
        "appearance": appearance,
        "detect_every": detect_every,
        "thresholds": {"detection": DETECTION_THRESHOLD, "tracking": TRACK_THRESHOLD},
    }


# ---------------------------------------------------------------------------------------------
# Drawing


# Box colours (RGB), one per entity in the timelines' order.
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230)]


def annotate(frames: Iterable[Frame], timelines: Mapping[str, list[Mapping[str, Any]]]) -> Iterator[Frame]:
    """``frames`` with each entity's box and ``name confidence`` label drawn where its timeline
    has that frame (colours from an 8-colour palette in the timelines' order)."""
    by_frame: dict[int, list[tuple[str, Mapping[str, Any], tuple[int, int, int]]]] = {}
    for k, (name, entries) in enumerate(timelines.items()):
        for entry in entries:
            by_frame.setdefault(int(entry["frame"]), []).append((name, entry, PALETTE[k % len(PALETTE)]))
    for index, frame in enumerate(frames):
        marks = by_frame.get(index)
        if not marks:
            yield frame
            continue
        out = frame.copy()
        thickness = max(1, round(min(out.shape[:2]) / 200))
        font_scale = max(0.3, min(out.shape[:2]) / 600)
        for name, entry, colour in marks:
            x, y, w, h = (int(v) for v in entry["bbox"])
            cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, thickness)
            label = f"{name} {float(entry['confidence']):.2f}"
            cv2.putText(out, label, (x, max(10, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, thickness,
                        cv2.LINE_AA)
        yield out
