"""The one request model for generation, shared by the UI, the Gradio API and REST.

Fields, defaults and ranges are the seed's (``POST /generate``); ``model`` and the fields after
``acceleration`` (LoRAs, the upscaler, the interpolator, images, the fast mode) are ours. Every violation becomes
``InvalidRequest`` naming the field.
"""

from __future__ import annotations

import secrets
from typing import Any, ClassVar, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from studio.engine.genres import GENRES
from studio.engine.spec import TaskSpec
from studio.errors import InvalidRequest
from studio.models.catalog import GENERATION_CATALOG

Resolution = Literal["480p", "720p", "1080p", "1440p", "4k", "8k"]
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3"]
GenreName = Literal[tuple(GENRES)]
ModelName = Literal[("auto", *GENERATION_CATALOG)]
#: An image field's longest value: a base64 image within the body cap, or a URL.
IMAGE_FIELD_MAX = 16 * 2**20
# At least one non-space character (JSON Schema patterns are unanchored). Spelled out rather
# than ``\S``: the server strips what Python's str.strip() does, which includes the separators
# \x1c-\x1f and \x85 that ECMAScript's ``\s`` (the schema's dialect) does not.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"

SEED_MAX = 2**32 - 1
#: What the features' model paths (V2V, inpaint), whose requests take no negative prompt, ask
#: the model to avoid. A text-to-video request's own default is the API reference's shorter
#: "blurry, low quality" (``GenerationRequest.negative_prompt``), which callers can override.
NEGATIVE_PROMPT = "blurry, low quality, distorted, watermark, text"


#: Denoising steps: one name (``num_inference_steps``) and one range for every feature, the API
#: reference's 10-150. Features whose model path has its own default take ``None`` for it.
STEPS_MIN, STEPS_MAX = 10, 150


def steps_field(default: int | None, description: str = f"Denoising steps ({STEPS_MIN}-{STEPS_MAX})") -> Any:
    """The ``num_inference_steps`` field of any request: the one range, the caller's default."""
    return Field(default, ge=STEPS_MIN, le=STEPS_MAX, description=description)


def seed_field(description: str = "Reproducibility seed (random when absent)") -> Any:
    """The ``seed`` field of any request: ``0..SEED_MAX``, random when absent."""
    return Field(None, ge=0, le=SEED_MAX, description=description)


def seed_or_random(seed: int | None) -> int:
    """``seed``, or a fresh random one in ``0..SEED_MAX`` (recorded with the task, so a run can
    be repeated)."""
    return seed if seed is not None else secrets.randbelow(SEED_MAX + 1)
# Only the form of a URL is checked by the request models (so the OpenAPI schema can say it);
# whether its address may be reached is the URL fetcher's call at submit and at delivery.
HTTP_URL_PATTERN = r"^[hH][tT][tT][pP][sS]?://[^\s]+$"  # torch.Generator seeds are 64-bit, but 32 bits keep seeds portable


def strip_prompt(value: str) -> str:
    """A prompt without surrounding spaces; one that is only spaces is refused."""
    if not value.strip():
        raise ValueError("prompt must not be blank")
    return value.strip()


_NUMBER_TYPES = (int, float)


def _is_numeric(annotation: Any) -> bool:
    args = get_args(annotation) or (annotation,)
    return any(a in _NUMBER_TYPES for a in args) and not any(a is str for a in args)


class JsonModel(BaseModel):
    """A request body with JSON's types: numbers must be JSON numbers (``true`` is not 1 and
    ``"5"`` is not 5), while whole floats still count as integers, as JSON Schema says."""

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(name)
                if isinstance(value, (bool, str)) and _is_numeric(field.annotation):
                    raise ValueError(f"{name} must be a number")
        return data


#: LoRAs one generation may use at once.
MAX_LORAS = 4


class LoraChoice(JsonModel):
    """One LoRA adapter of a generation: a registered adapter's id and how strongly it applies."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., min_length=1, max_length=64, description="A LoRA id from GET /v1/loras")
    scale: float = Field(1.0, ge=0, le=2, description="Strength (0-2; 0 leaves the model as it is)")


class GenerationRequest(JsonModel):
    """A generation request: from text, or from a first (and last) frame with ``image``. Unknown
    fields are rejected so that typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(..., min_length=1, max_length=2000, pattern=NOT_BLANK,
                        description="Text description (1-2000 chars)")
    negative_prompt: str = Field("blurry, low quality", max_length=2000, description="What to avoid")
    duration_seconds: float = Field(4.0, ge=1, le=60, description="Duration (1-60 seconds)")
    fps: int = Field(24, ge=12, le=60, description="Frames per second (12-60)")
    resolution: Resolution = Field("720p", description="480p/720p/1080p/1440p/4k/8k")
    aspect_ratio: AspectRatio = Field("16:9", description="16:9/9:16/1:1/4:3")
    genre: GenreName = Field("cinematic", description="Style genre; GET /v1/genres lists them")
    seed: int | None = seed_field()
    guidance_scale: float = Field(7.5, ge=1, le=20, description="Prompt adherence (1-20)")
    num_inference_steps: int = steps_field(50, "Quality steps (10-150)")
    webhook_url: str | None = Field(None, max_length=2048, pattern=HTTP_URL_PATTERN,
                                    description="Callback URL (http/https, public address) for signed task.* events")
    model: ModelName | None = Field(None, description="Model id from GET /v1/models, or 'auto' for the Model "
                                                      "Orchestrator's pick; the server default when absent")
    preview_every_n_steps: int = Field(1, ge=1, le=50,
                                       description="Live previews: one every N denoising steps (1-50; the first "
                                                   "and the last step always have one). Fewer previews leave "
                                                   "more time to denoising")
    acceleration: Literal["off", "balanced", "fast"] = Field(
        "off", description="Step cache (the 'speculative decoder'): off computes every transformer pass; "
                           "balanced / fast skip the remaining blocks of a pass when the first block's output "
                           "changed little since the last full pass (FirstBlockCache; thresholds and measured "
                           "stats: GET /v1/genius/decoder/stats)")
    loras: list[LoraChoice] = Field(default_factory=list, max_length=MAX_LORAS,
                                    description=f"LoRA adapters to apply (at most {MAX_LORAS}): [{{id, scale}}] with "
                                                "ids from GET /v1/loras; they must fit the model")
    upscaler: Literal["classical", "learned"] = Field(
        "classical", description="An output larger than the model's native size: classical (bicubic with edge-aware "
                                 "sharpening) or learned (the server's ESRGAN-family network, ECHOEL_UPSCALER_MODEL; "
                                 "503 when it has none)")
    interpolator: Literal["classical", "learned"] = Field(
        "classical", description="More output frames than the model generates (an fps above its own): classical "
                                 "(occlusion-aware optical flow) or learned (the server's RIFE network, "
                                 "ECHOEL_INTERPOLATOR_MODEL; 503 when it has none)")
    image: str | None = Field(None, max_length=IMAGE_FIELD_MAX,
                              description="Start from this frame (image-to-video): a base64 PNG/JPEG/WebP (or a data: "
                                          "URL), or an http(s) URL the server fetches; needs a model that takes an "
                                          "image (GET /v1/models: images >= 1), picked for you when model is absent")
    last_image: str | None = Field(None, max_length=IMAGE_FIELD_MAX,
                                   description="End on this frame too (first-last-frame models, images 2); needs image")
    mode: Literal["standard", "fast"] = Field(
        "standard", description="standard: the full model at num_inference_steps with guidance; fast: the model's "
                                "few-step distillation (e.g. lightx2v's 4-step LoRA) at its own step count without "
                                "guidance (num_inference_steps and guidance_scale are then not used; the notes say "
                                "so). GET /v1/models says which models have one (fast_steps)")

    _strip_prompt = field_validator("prompt")(strip_prompt)


#: Every generate field except the per-prompt ones (``prompt``, ``webhook_url``, the images), with the same
#: defaults and bounds: the settings that many generations share (a batch's prompts, a scene's
#: shots). Unknown fields are refused as in ``GenerationRequest``.
GenerationSettings = create_model(
    "GenerationSettings", __base__=JsonModel,
    **{name: (field.annotation, field) for name, field in GenerationRequest.model_fields.items()
       if name not in ("prompt", "webhook_url", "image", "last_image")})
GenerationSettings.model_config["extra"] = "forbid"
GenerationSettings.model_rebuild(force=True)


class GenerationSpec(GenerationRequest, TaskSpec):
    """A stored generation task (kind ``t2v``, image-to-video included): the request with its
    model and seed resolved, and its images stored as files, at submit."""

    KIND: ClassVar[str] = "t2v"

    kind: Literal["t2v"] = "t2v"
    model: str = Field(description="The model the task runs (resolved at submit)")
    seed: int = Field(ge=0, le=SEED_MAX, description="The seed the task runs with (drawn at submit when absent)")
    image: str | None = Field(None, description="The first frame's file in the task's inputs folder (stored at submit)")
    last_image: str | None = Field(None, description="The last frame's file in the task's inputs folder")
    inputs_id: str | None = Field(None, description="The task's inputs folder (its images), if it has one")


def field_bounds(model: type[BaseModel], name: str) -> tuple[Any, Any]:
    """The (ge, le) bounds declared on a numeric field (None where there is none)."""
    lower = upper = None
    for meta in model.model_fields[name].metadata:
        lower = getattr(meta, "ge", lower)
        upper = getattr(meta, "le", upper)
    return lower, upper


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


ModelT = TypeVar("ModelT", bound=BaseModel)


def describe_validation_error(model: type[BaseModel] | None, errors: list[dict[str, Any]]) -> str:
    """One readable sentence per pydantic error, naming the field and its bound.

    ``errors`` is ``ValidationError.errors()`` (or FastAPI's ``RequestValidationError.errors()``,
    whose locations start with ``body``).
    """
    sentences = []
    for err in errors:
        loc = [part for part in err.get("loc", ()) if part != "body"]
        # prompts[1], settings.fps: where in the body, as a client would write it
        name = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc)) \
            or "body"
        kind = err.get("type", "")
        if model is not None and name in model.model_fields and kind in {"greater_than_equal", "less_than_equal"} \
                and None not in field_bounds(model, name):
            lower, upper = field_bounds(model, name)
            sentences.append(f"{name} must be between {_number(lower)} and {_number(upper)}")
        elif kind in {"greater_than", "less_than", "greater_than_equal", "less_than_equal"}:
            bound = next(iter((err.get("ctx") or {}).values()), None)
            relation = {"greater_than": "greater than", "less_than": "less than",
                        "greater_than_equal": "at least", "less_than_equal": "at most"}[kind]
            sentences.append(f"{name} must be {relation} {bound}")
        elif kind == "literal_error":
            sentences.append(f"{name} must be one of {(err.get('ctx') or {}).get('expected', '')}")
        elif kind == "extra_forbidden":
            sentences.append(f"{name} is not a known field")
        elif kind == "string_pattern_mismatch" and name.endswith("url"):
            sentences.append(f"{name} must be an http:// or https:// URL")
        elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == NOT_BLANK:
            sentences.append(f"{name} must not be blank")
        elif kind == "json_invalid":
            sentences.append("the request body is not valid JSON")
        elif kind == "missing":
            sentences.append(f"{name} is required")
        else:
            message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
            sentences.append(message if message.startswith(name) else f"{name}: {message}")
    return "; ".join(sentences)


def parse_request(data: dict[str, Any]) -> GenerationRequest:
    """Validate a plain dict into a request, or raise ``InvalidRequest`` naming the field."""
    return parse_model(GenerationRequest, data)


def parse_model(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    """Validate ``data`` into ``model`` (any request body), or raise ``InvalidRequest`` naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(model, exc.errors())) from None
