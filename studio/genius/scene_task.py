"""Scene Orchestrator as queued tasks: ``POST /v1/genius/scene/edit``.

Every scene becomes a text-to-video task of the one queue (the caller can follow and fetch each
shot), followed by one ``scene`` task that waits for nothing: it is queued after its shots at
the same priority, so the single worker runs the shots first. The scene task stitches the shots
into one mp4 with the transitions of ``studio.genius.transitions`` (overlap semantics, auto
choice, exact timing documented there). Its progress while the shots run is the shots' mean
progress (see ``Studio.status``).

Timing: the reply's ``total_duration_seconds`` is the sum of the shots' exact frame counts minus
the transition overlaps, over the fps. An ``auto`` boundary is planned with its overlap; if the
automatic choice turns out to be a ``cut`` (no overlap), the finished edit is longer by that
overlap, and the result's ``metadata.details`` gives the exact rendered timeline.

Character consistency (``enable_character_consistency``): every shot gets the same seed and the
``character_description`` appended to its prompt. Conditioning each shot on a reference frame
of the character needs an image-conditioned model (Wan I2V or VACE); while none is loaded the
result says so in ``metadata.notes``.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from studio.engine.edit import EditJob, EditOutcome, write_video
from studio.engine.plan import make_plan
from studio.engine.request import NOT_BLANK, SEED_MAX, JsonModel, parse_request
from studio.errors import InvalidRequest, StudioError
from studio.genius.batch import BatchSettings
from studio.genius.transitions import AUTO, TRANSITIONS, TransitionSpec, resolve_auto, stitch, timeline
from studio.jobs import store as st
from studio.media.video import read_frames
from studio.models.catalog import get_spec

if TYPE_CHECKING:
    from studio.core import Studio

KIND = "scene"
MAX_SCENES = 12
MAX_TOTAL_FRAMES = 3600  # the stitch holds the shots in memory
PLANNED_AUTO = "crossfade"  # how an auto boundary is timed before its type is chosen
REFERENCE_CONDITIONING_NOTE = ("character consistency: same seed and character description for every shot; "
                               "conditioning each shot on a reference frame needs an image-conditioned model "
                               "(Wan I2V or VACE), which is not loaded")


class ShotFailed(StudioError):
    """A shot of the edit ended without a video."""

    status_code = 409
    title = "Shot failed"


class Scene(JsonModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, max_length=2000, pattern=NOT_BLANK)
    duration: float = Field(..., ge=1, le=60, description="Seconds")


class Transition(JsonModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["auto", "cut", "crossfade", "wipe", "zoom", "blur", "morph"]
    direction: Literal["left", "right", "up", "down"] | None = Field(None, description="wipe only")


class SceneEditRequest(JsonModel):
    """The seed's multi-shot edit, plus explicit transitions, a character description and the
    generation settings every shot shares."""

    model_config = ConfigDict(extra="forbid")

    scenes: list[Scene] = Field(..., min_length=1, max_length=MAX_SCENES)
    enable_auto_transitions: StrictBool = True
    transition_duration_seconds: float = Field(0.5, ge=0, le=5)
    enable_character_consistency: StrictBool = False
    character_description: str | None = Field(None, min_length=1, max_length=500, pattern=NOT_BLANK)
    transitions: list[Transition] | None = Field(
        None, max_length=MAX_SCENES - 1,
        description="One per boundary (scenes - 1); overrides enable_auto_transitions")
    settings: BatchSettings = Field(default_factory=lambda: BatchSettings(),
                                    description="Generate fields for every shot (fps, resolution, steps, ...)")


class PlannedTransition(BaseModel):
    from_scene: int
    to_scene: int
    type: str = Field(description="auto until the edit runs and measures the boundary")
    duration: float = Field(description="Overlap seconds (exact frames / fps)")


class SceneEditResponse(BaseModel):
    task_id: str
    total_scenes: int
    total_duration_seconds: float
    transitions: list[PlannedTransition]
    estimated_time_seconds: float
    shot_task_ids: list[str]
    queue_position: int


def transitions_catalog() -> list[dict]:
    """The transition types with their descriptions and parameters."""
    return TRANSITIONS


def _specs(request: SceneEditRequest) -> list[TransitionSpec]:
    boundaries = len(request.scenes) - 1
    if request.transitions is not None:
        if len(request.transitions) != boundaries:
            raise InvalidRequest(f"transitions: {len(request.scenes)} scenes need {boundaries} transitions, "
                                 f"got {len(request.transitions)}")
        return [TransitionSpec(t.type, request.transition_duration_seconds,
                               {"direction": t.direction} if t.type == "wipe" and t.direction else {})
                for t in request.transitions]
    kind = AUTO if request.enable_auto_transitions else "crossfade"
    return [TransitionSpec(kind, request.transition_duration_seconds) for _ in range(boundaries)]


def _shot_requests(studio: "Studio", request: SceneEditRequest) -> list:
    settings = request.settings.model_dump(exclude_unset=True)
    if request.enable_character_consistency and settings.get("seed") is None:
        settings["seed"] = secrets.randbelow(SEED_MAX + 1)  # one seed for every shot
    shots = []
    for index, scene in enumerate(request.scenes):
        prompt = scene.prompt
        if request.enable_character_consistency and request.character_description:
            prompt = f"{prompt}. {request.character_description}"
        try:
            shots.append(studio.prepare(parse_request({**settings, "prompt": prompt,
                                                       "duration_seconds": scene.duration})))
        except InvalidRequest as error:
            raise InvalidRequest(f"scenes[{index}]: {error.detail}") from None
    return shots


def submit(studio: "Studio", request: SceneEditRequest, owner: str) -> SceneEditResponse:
    """Queue one generation task per scene, then the scene task that stitches them."""
    studio.refuse_when_draining()
    specs = _specs(request)
    shots = _shot_requests(studio, request)
    plans = [make_plan(s.stored, get_spec(s.stored.model), s.stored.seed) for s in shots]
    fps = plans[0].fps
    counts = [p.out_frames for p in plans]
    if sum(counts) > MAX_TOTAL_FRAMES:
        raise InvalidRequest(f"scenes: {sum(counts)} frames in all; an edit takes at most {MAX_TOTAL_FRAMES}")
    planned = timeline(counts, [s if s.type != AUTO else TransitionSpec(PLANNED_AUTO, s.duration_seconds)
                                for s in specs], fps)
    shot_ids = [studio.store.create_task("t2v", s.stored.model_dump(), priority=1, estimated_seconds=s.estimate,
                                         owner=owner)[0].id for s in shots]
    stitch_estimate = 0.02 * planned["total_frames"]
    stored = {"shots": shot_ids, "fps": fps,
              "transitions": [{"type": s.type, "duration_seconds": s.duration_seconds, "params": dict(s.params)}
                              for s in specs],
              "character_consistency": request.enable_character_consistency,
              "character_description": request.character_description,
              "seed": shots[0].stored.seed if request.enable_character_consistency else None}
    submitted = studio.submit_edit(KIND, stored, owner, stitch_estimate)
    return SceneEditResponse(
        task_id=submitted.task_id, total_scenes=len(request.scenes),
        total_duration_seconds=round(planned["total_duration_seconds"], 3),
        transitions=[PlannedTransition(from_scene=t["from_scene"], to_scene=t["to_scene"],
                                       type=specs[i].type, duration=round(t["duration"], 3))
                     for i, t in enumerate(planned["transitions"])],
        estimated_time_seconds=submitted.estimated_time_seconds, shot_task_ids=shot_ids,
        queue_position=submitted.queue_position)


def run(job: EditJob) -> EditOutcome:
    """Stitch the finished shots with the transitions (auto ones measured and chosen now)."""
    request = job.request
    shots = []
    for index, shot_id in enumerate(request["shots"]):
        task = job.store.get(shot_id)
        if task is None or task.status != st.COMPLETED:
            state = task.status if task else "missing"
            raise ShotFailed(f"scene {index} (task {shot_id}) is {state}: {task.error if task else ''}".rstrip(": "))
        shots.append(list(read_frames(job.paths.video(shot_id))))
        job.check(0.3 * (index + 1) / len(request["shots"]), f"Reading shot {index + 1}/{len(request['shots'])}")
    specs = resolve_auto(shots, [TransitionSpec(t["type"], t["duration_seconds"], t["params"])
                                 for t in request["transitions"]])
    fps = request["fps"]
    rendered = timeline([len(s) for s in shots], specs, fps)
    video = write_video(job, stitch(shots, specs, fps), fps, rendered["total_frames"], progress=(0.3, 1.0),
                        message="Stitching frame")
    for boundary, spec in zip(rendered["transitions"], specs):
        boundary["reasons"] = list(spec.reasons)
    notes = [REFERENCE_CONDITIONING_NOTE] if request["character_consistency"] else []
    details = {"total_scenes": len(shots), "total_duration_seconds": round(rendered["total_duration_seconds"], 3),
               "total_frames": rendered["total_frames"],
               "scenes": [{**scene, "task_id": shot_id} for scene, shot_id in zip(rendered["scenes"], request["shots"])],
               "transitions": rendered["transitions"],
               "character_consistency": {"enabled": request["character_consistency"], "seed": request["seed"],
                                         "description": request["character_description"]}}
    method = ("transitions: " + ", ".join(s.type for s in specs)) if specs else "single shot"
    return EditOutcome(video, "classical", method, details, notes)
