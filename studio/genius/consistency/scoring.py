"""Consistency Tracker: how much an entity found in a frame looks like its reference, and its
score over the video.

**Consistency score.** For each frame ``f`` where the entity was found, the box's crop is
compared with the reference:

- ``colour_f = 1 - Bhattacharyya distance`` of their HSV hue-saturation histograms
  (:func:`colour_similarity`; weakly saturated pixels share one "grey" bin because their hue
  is noise);
- ``structure_f = max(0, normalised cross-correlation)`` of their grey images at the
  reference template size (at most 64 px);
- ``similarity_f = (colour_f + structure_f) / 2``.

``appearance = mean(similarity_f)``, ``stability = 1 - min(1, 2 std(similarity_f))`` (a
similarity that jumps between two levels 1 apart has std 0.5), and
``consistency_score = appearance x stability``: high only for an entity that both looks like
its reference and keeps looking the same. The overall score is the mean of the entities'
scores weighted by the frames each is present in; ``None`` when no entity was found (nothing was
measured). All scores are in 0..1.

**Model path** (``track(..., appearance=embedder)``, an :class:`Embedder` such as
``studio.models.appearance.ImageEmbedder``: a CLIP vision encoder). Detection and tracking are
unchanged; only ``similarity_f`` differs: it is ``max(0, cos(e_crop, e_ref))``, the cosine of
the L2-normalised embeddings of the box's crop and of the whole reference, clipped at 0 (an
anti-correlated crop counts as no likeness at all, as a negative correlation does on the
classical path). Both images go through the same preparation: shrunk (``INTER_AREA``) so their
shorter side is at most the encoder's input side, then the encoder's own preprocessing (CLIP:
shorter side resized to the input side, centre square crop, so the ends of an elongated box are
not seen). ``appearance``, ``stability`` and ``consistency_score`` follow the same formulas.
CLIP image embeddings of unrelated pictures still have clearly positive cosines, so model-path
scores run higher than classical ones and are not comparable with them; compare runs of one
path. Crops are embedded in batches of :data:`EMBED_BATCH` (only those crops are held, never
frames). The embedding is not used to reject detections: there is no threshold calibrated on
measured data to reject with, and an untrained encoder would reject at random, so detection
stays the authority on both paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import cv2
import numpy as np

from studio.genius.consistency.reference import BBox, EntityModel, Frame, colour_similarity, hs_histogram
HISTOGRAM = "histogram"  # the classical appearance term's name in results
EMBED_BATCH = 32  # crops embedded per forward pass on the model path


def appearance_similarity(entity: EntityModel, frame: Frame, box: BBox) -> float:
    """``(colour + structure) / 2`` of the box's crop against the reference (module docstring)."""
    x, y, w, h = (round(v) for v in box)
    crop = frame[y:y + h, x:x + w]
    if crop.shape[0] < 2 or crop.shape[1] < 2:
        return 0.0
    th, tw = entity.score_template.shape
    crop_gray = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (tw, th), interpolation=cv2.INTER_AREA)
    structure = max(0.0, float(cv2.matchTemplate(crop_gray, entity.score_template, cv2.TM_CCOEFF_NORMED)[0, 0]))
    return (colour_similarity(hs_histogram(crop), entity.histogram) + structure) / 2


class Embedder(Protocol):
    """What the model path needs of an image encoder (``studio.models.appearance.ImageEmbedder``)."""

    model_id: str
    input_side: int  # side of the square the encoder sees; larger images are shrunk first

    def embed(self, images: Sequence[Frame]) -> np.ndarray:
        """``(n, d)`` L2-normalised float32 embeddings of RGB uint8 images."""
        ...


def _crop(frame: Frame, box: BBox) -> Frame | None:
    x, y, w, h = (round(v) for v in box)
    crop = frame[max(0, y):y + h, max(0, x):x + w]
    return crop if crop.shape[0] >= 2 and crop.shape[1] >= 2 else None


def encoder_input(image: Frame, side: int) -> Frame:
    """``image`` shrunk (``INTER_AREA``) so its shorter side is at most ``side`` px; a copy either way
    (a crop must not keep its whole frame alive while it waits for its batch)."""
    h, w = image.shape[:2]
    s = side / min(h, w)
    if s >= 1:
        return np.ascontiguousarray(image).copy()
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class HistogramScores:
    """The classical term, computed as each box comes."""

    name = HISTOGRAM

    def __init__(self, names: Iterable[str]):
        self.values: dict[str, list[float]] = {n: [] for n in names}

    def add(self, name: str, entity: EntityModel, frame: Frame, box: BBox) -> None:
        self.values[name].append(appearance_similarity(entity, frame, box))

    def finish(self) -> dict[str, list[float]]:
        return self.values


class EmbeddingScores:
    """The model path's term: ``max(0, cos)`` of crop and reference embeddings; crops wait in a
    batch of :data:`EMBED_BATCH` and their slots are filled when it is embedded."""

    def __init__(self, embedder: Embedder, entities: Mapping[str, EntityModel]):
        self.embedder = embedder
        self.name = embedder.model_id
        self.entities = entities
        self.values: dict[str, list[float]] = {n: [] for n in entities}
        self.pending: list[tuple[str, int, Frame]] = []
        self.references: dict[str, np.ndarray] | None = None

    def add(self, name: str, entity: EntityModel, frame: Frame, box: BBox) -> None:
        crop = _crop(frame, box)
        self.values[name].append(0.0)
        if crop is not None:
            self.pending.append((name, len(self.values[name]) - 1, encoder_input(crop, self.embedder.input_side)))
            if len(self.pending) >= EMBED_BATCH:
                self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        if self.references is None:
            names = list(self.entities)
            side = self.embedder.input_side
            embedded = self.embedder.embed([encoder_input(self.entities[n].reference, side) for n in names])
            self.references = dict(zip(names, embedded))
        embedded = self.embedder.embed([crop for _, _, crop in self.pending])
        for (name, slot, _), vector in zip(self.pending, embedded):
            self.values[name][slot] = float(np.clip(np.dot(vector, self.references[name]), 0.0, 1.0))
        self.pending = []

    def finish(self) -> dict[str, list[float]]:
        self._flush()
        return self.values


def entity_score(similarities: list[float]) -> dict[str, Any]:
    """An entity's appearance, stability and consistency score from its per-frame similarities
    (formulas in the module docstring); all ``None`` when it was never found."""
    if not similarities:
        return {"consistency_score": None, "appearance_similarity": None, "temporal_stability": None}
    values = np.asarray(similarities)
    appearance = float(np.clip(values.mean(), 0.0, 1.0))
    stability = float(np.clip(1.0 - 2.0 * values.std(), 0.0, 1.0))
    return {"consistency_score": appearance * stability, "appearance_similarity": appearance,
            "temporal_stability": stability}

