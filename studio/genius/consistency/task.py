"""Consistency Tracker as registered entities plus a queued task: ``/v1/genius/consistency/...``.

**Entities** belong to the API key that registered them (the UI has its own owner). They live
in the studio's SQLite file (table ``entities``: the reference stored as PNG), so they survive
restarts. A name is unique per owner (409 ``EntityExists`` on a second one); an owner keeps at
most :data:`MAX_ENTITIES`. A reference is checked like any base64 image
(``studio.media.inputs.decode_base64_image``: 413 over 20 MiB, 400 for bad base64, another
format than PNG/JPEG/WebP, or over :data:`MAX_REFERENCE_PIXELS`) and then by
``EntityModel.from_reference`` (each side 16..2048 px, not flat).

**Tracking** a video (``task_id`` of a completed task, or an upload through the UI / Gradio
API) is a task like any edit: the named entities (default: all of the owner's, at most
:data:`MAX_TRACKED`) are copied into the task's inputs at submission, so deleting an entity
later does not change a queued task. The run streams the video twice: once through
``studio.genius.consistency.algorithm.track`` (detection, tracking and scoring are documented there),
once through ``annotate`` into the output video (each entity's box and confidence drawn).

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

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import cv2
from pydantic import BaseModel, ConfigDict, Field

from studio.engine.edit import EditJob, EditOutcome, write_video
from studio.engine.request import NOT_BLANK, JsonModel
from studio.errors import InvalidRequest, ModelUnavailable, PayloadTooLarge, StudioError
from studio.genius.consistency import algorithm as consistency
from studio.genius.consistency.algorithm import ENTITY_TYPES, EntityModel
from studio.genius.edit_submit import estimate_seconds, new_inputs, store_source
from studio.media.inputs import InvalidMedia, decode_base64_image
from studio.models import appearance

if TYPE_CHECKING:
    from studio.core import Studio
    from studio.views import SubmitResponse

KIND = "consistency"
METHOD = "ORB/face/template detection + Lucas-Kanade tracking"
APPEARANCE_MODELS = (consistency.HISTOGRAM, *appearance.EMBEDDERS)  # the first is the classical path
MAX_ENTITIES = 50  # per owner
MAX_TRACKED = 16  # entities per tracking task
MAX_REFERENCE_PIXELS = consistency.MAX_REFERENCE_SIDE ** 2  # refused from the image header, before decoding
TRACK_PROGRESS = 0.7  # tracking is this share of the run; drawing and encoding the rest

EntityName = Annotated[str, Field(min_length=1, max_length=100, pattern=NOT_BLANK)]


class EntityExists(StudioError):
    """An owner registered a second entity with a name it already uses."""

    status_code = 409
    title = "Entity exists"


class EntityNotFound(StudioError):
    status_code = 404
    title = "Entity not found"


# -- request and response models ----------------------------------------------------------------

class RegisterEntityRequest(JsonModel):
    """The seed's register-entity body."""

    model_config = ConfigDict(extra="forbid")

    name: EntityName = Field(description="Unique among your entities; the key of its timeline")
    entity_type: Literal[ENTITY_TYPES] = Field(
        "object", description="A character also gets a face model (when a frontal face is found in the reference)")
    reference_image_base64: str = Field(
        ..., min_length=1, max_length=30_000_000,
        description="PNG, JPEG or WebP (base64 or data: URL), each side 16-2048 px, not flat")


class EntityInfo(BaseModel):
    """A registered entity (its reference image is kept on the server)."""

    entity_id: str
    name: str
    entity_type: str
    width: int = Field(description="Reference width in pixels")
    height: int = Field(description="Reference height in pixels")
    created_at: float = Field(description="Unix time of registration")


class EntityList(BaseModel):
    entities: list[EntityInfo] = Field(description="Your entities, oldest first")


class TrackRequest(JsonModel):
    """Options of a tracking run (the body is optional)."""

    model_config = ConfigDict(extra="forbid")

    entity_names: list[EntityName] | None = Field(
        None, min_length=1, max_length=MAX_TRACKED,
        description=f"Which of your entities to track (default: all of them, at most {MAX_TRACKED})")
    detect_every: int = Field(5, ge=1, le=300, description="Detect on every N-th frame; track in between")
    appearance_model: Literal[APPEARANCE_MODELS] = Field(
        consistency.HISTOGRAM,
        description="The score's appearance term: 'histogram' (classical path: colour histogram + grey correlation) "
                    "or a CLIP image encoder (model path: max(0, cosine) of embeddings): 'tiny-clip' (offline, "
                    "untrained: meaningless similarities, for testing), 'clip-vit-base-patch32' "
                    "(openai/clip-vit-base-patch32 from the Hugging Face Hub; 503 when it cannot be loaded here). "
                    "Detection and tracking are the same on both paths")


class TimelineEntry(BaseModel):
    frame: int
    bbox: list[int] = Field(description="[x1, y1, x2, y2] pixel corners (x2/y2 exclusive)")
    confidence: float = Field(ge=0, le=1)


class EntityScore(BaseModel):
    """One entity's figures; the formulas are in ``studio.genius.consistency.algorithm``."""

    consistency_score: float | None = Field(description="appearance_similarity x temporal_stability; null if absent")
    appearance_similarity: float | None = Field(
        description="Mean per-frame similarity to the reference: (colour + structure) / 2 on the classical path, "
                    "max(0, cosine of embeddings) on the model path; null if absent")
    temporal_stability: float | None = Field(description="1 - min(1, 2 x std of the per-frame similarity)")
    frames_present: int
    frames_tracked: int = Field(description="Frames found by tracking between detections")
    detections: dict[str, int] = Field(description="Keyframe detections by method: features, face, template")


class TrackResult(BaseModel):
    """The seed's tracking response, for a completed tracking task."""

    task_id: str = Field(description="The tracking task (its video is the annotated one)")
    source_task_id: str | None = Field(description="The tracked video's task; null for an uploaded video")
    video_url: str
    entities_tracked: int = Field(description="Entities found in at least one frame")
    frames_analyzed: int
    consistency_score: float | None = Field(
        description="Mean of the entities' scores weighted by the frames each is present in; null when none was found")
    entity_timelines: dict[str, list[TimelineEntry]]
    entity_scores: dict[str, EntityScore]
    appearance_model: str = Field(description="'histogram' (classical path) or the encoder of the model path")
    detect_every: int


# -- the entity store ---------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    image BLOB NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (owner, name)
);
"""
_COLUMNS = "id, name, entity_type, width, height, created_at"


class EntityStore:
    """The ``entities`` table of one SQLite file: one connection, serialised by a lock."""

    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def add(self, owner: str, name: str, entity_type: str, size: tuple[int, int], png: bytes) -> EntityInfo:
        info = EntityInfo(entity_id=f"ent-{uuid.uuid4().hex[:16]}", name=name, entity_type=entity_type,
                          width=size[0], height=size[1], created_at=round(time.time(), 3))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (count,) = self._db.execute("SELECT COUNT(*) FROM entities WHERE owner = ?", (owner,)).fetchone()
                if count >= MAX_ENTITIES:
                    raise InvalidRequest(f"name: you have {count} entities, the most one key may keep; "
                                         "delete one first")
                self._db.execute(
                    "INSERT INTO entities (id, owner, name, entity_type, width, height, image, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (info.entity_id, owner, name, entity_type, info.width, info.height, png, info.created_at))
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise EntityExists(f"name: you already have an entity named {name!r}; delete it first "
                                   "or pick another name") from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return info

    def owned(self, owner: str) -> list[EntityInfo]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM entities WHERE owner = ? ORDER BY created_at, name",
                                    (owner,)).fetchall()
        return [_info(row) for row in rows]

    def images(self, owner: str, names: list[str]) -> list[tuple[EntityInfo, bytes]]:
        """The named entities of ``owner`` with their reference PNGs, in ``names``' order."""
        marks = ", ".join("?" * len(names))
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS}, image FROM entities WHERE owner = ? AND name IN ({marks})",
                                    (owner, *names)).fetchall()
        found = {row[1]: (_info(row), row[6]) for row in rows}
        return [found[name] for name in names if name in found]

    def delete(self, owner: str, entity_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM entities WHERE id = ? AND owner = ?", (entity_id, owner)).rowcount > 0


def _info(row) -> EntityInfo:
    return EntityInfo(entity_id=row[0], name=row[1], entity_type=row[2], width=row[3], height=row[4],
                      created_at=row[5])


_stores: dict[Path, EntityStore] = {}
_stores_lock = threading.Lock()


def entity_store(studio: "Studio") -> EntityStore:
    """The entity store of ``studio``'s SQLite file, opened on first use."""
    path = Path(studio.settings.db_path).resolve()
    with _stores_lock:
        if path not in _stores:
            _stores[path] = EntityStore(path)
        return _stores[path]


# -- entities -----------------------------------------------------------------------------------

def register_entity(studio: "Studio", request: RegisterEntityRequest, owner: str) -> EntityInfo:
    """Check the reference (size, format, pixels, usable as a reference) and store the entity."""
    try:
        image = decode_base64_image(request.reference_image_base64, max_pixels=MAX_REFERENCE_PIXELS)
    except (InvalidMedia, PayloadTooLarge) as error:
        raise type(error)(f"reference_image_base64: {error.detail}") from None
    EntityModel.from_reference(image, request.entity_type, request.name)  # InvalidRequest when unusable
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InvalidRequest("reference_image_base64: the image could not be stored")
    return entity_store(studio).add(owner, request.name, request.entity_type, (image.shape[1], image.shape[0]),
                                    png.tobytes())


def list_entities(studio: "Studio", owner: str) -> EntityList:
    return EntityList(entities=entity_store(studio).owned(owner))


def delete_entity(studio: "Studio", entity_id: str, owner: str) -> None:
    """Delete one of ``owner``'s entities; the same 404 for unknown ids and other owners' ones."""
    if not (isinstance(entity_id, str) and len(entity_id) <= 64 and entity_store(studio).delete(owner, entity_id)):
        raise EntityNotFound(f"no entity with id {str(entity_id)[:64]!r}")


# -- tracking -----------------------------------------------------------------------------------

def submit(studio: "Studio", request: TrackRequest, owner: str, task_id: str | None = None,
           upload: Path | None = None) -> "SubmitResponse":
    """Resolve the entities and the video, copy the references into the task's inputs, and
    queue the tracking task."""
    studio.refuse_new_work()
    entities = _entities(studio, request.entity_names, owner)  # the caller's own mistakes (4xx) first
    model_path = request.appearance_model != consistency.HISTOGRAM
    if model_path:
        reason = appearance.unavailable_reason(request.appearance_model)
        if reason is not None:  # before anything is stored
            raise ModelUnavailable(f"appearance_model: {reason}")
    inputs_id, folder = new_inputs(studio.services)
    source = store_source(studio.services, owner, folder, task_id, upload)
    stored_entities = []
    for index, (info, png) in enumerate(entities):
        name = f"entity-{index}.png"
        (folder / name).write_bytes(png)
        stored_entities.append({"entity_id": info.entity_id, "name": info.name, "entity_type": info.entity_type,
                                "file": name})
    stored = {"inputs_id": inputs_id, "source": source, "detect_every": request.detect_every,
              "entities": stored_entities, "appearance_model": request.appearance_model}
    path = "model" if model_path else "classical"
    return studio.submit_edit(KIND, stored, owner, estimate_seconds(studio.services, KIND, source["frames"], path))


def _entities(studio: "Studio", names: list[str] | None, owner: str) -> list[tuple[EntityInfo, bytes]]:
    store = entity_store(studio)
    registered = [e.name for e in store.owned(owner)]
    if not registered:
        raise InvalidRequest("no entities registered: register one with POST /v1/genius/consistency/register-entity "
                             "(or on the Consistency tab) before tracking")
    if names is None:
        if len(registered) > MAX_TRACKED:
            raise InvalidRequest(f"entity_names: you have {len(registered)} entities; name at most {MAX_TRACKED} "
                                 "to track")
        names = registered
    names = list(dict.fromkeys(names))  # duplicates once
    unknown = [n for n in names if n not in registered]
    if unknown:
        raise InvalidRequest(f"entity_names: no entity named {unknown[0][:100]!r}; yours are "
                             f"{', '.join(repr(n) for n in registered[:20])}")
    return store.images(owner, names)


def run(job: EditJob) -> EditOutcome:
    """Track the entities through the video, then draw their boxes into the output."""
    request = job.request
    info = job.source_info()
    model_id = request.get("appearance_model", consistency.HISTOGRAM)  # tasks queued before it existed
    embedder = None
    if model_id != consistency.HISTOGRAM:
        if job.models is None:
            raise ModelUnavailable("this worker has no models folder; the model path cannot run")
        job.check(0.0, f"Loading {model_id}")
        embedder = appearance.load_embedder(job.models.models_dir, model_id)
    entities = {}
    for entry in request["entities"]:
        image = job.image(entry["file"])
        entities[entry["name"]] = EntityModel.from_reference(image, entry["entity_type"], entry["name"])
    expected = max(info.frames, 1)

    def frames():
        for index, frame in enumerate(job.source_frames()):
            job.check(TRACK_PROGRESS * min(1.0, index / expected), f"Tracking frame {index + 1}/{info.frames}")
            yield frame

    found = consistency.track(frames(), entities, request["detect_every"], appearance=embedder)
    video = write_video(job, consistency.annotate(job.source_frames(), found["entity_timelines"]), info.fps,
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
        "entities": [{k: e[k] for k in ("entity_id", "name", "entity_type")} for e in request["entities"]],
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


def track_result(studio: "Studio", task_id: str, owner: str) -> TrackResult:
    """The seed's response for a tracking task of ``owner``'s: 404 for other kinds and owners,
    409 until it has completed."""
    result = studio.result(task_id, owner, kind=KIND)  # TaskNotReady (409) until completed
    details: dict[str, Any] = result.metadata.details
    source = result.metadata.source or {}
    return TrackResult(task_id=result.task_id, source_task_id=source.get("task_id"), video_url=result.video_url,
                       appearance_model=details.get("appearance_model", consistency.HISTOGRAM),
                       **{k: details[k] for k in ("entities_tracked", "frames_analyzed", "consistency_score",
                                                 "entity_timelines", "entity_scores", "detect_every")})

