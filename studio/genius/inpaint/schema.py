"""Video Inpainting's request (``POST /v1/genius/inpaint/process``) and its stored task spec.

The request names the input video (``task_id`` of a completed task, or an upload through the
UI / Gradio API), a ``mode`` and its inputs. Boxes in the API are ``[x1, y1, x2, y2]`` pixel
corners of the first frame (``x2``/``y2`` exclusive). :class:`InpaintSpec` is what the submit
stores once it has resolved the request (the path, the box as ``(x, y, w, h)``, the target
size, the model's settings) and what the run reads.

Which image field a mode reads is a request rule, so it lives here
(:meth:`InpaintRequest.image_field_for`): blend's overlay, replace's reference (the overlay,
else the background fields), background's new background; remove and extend take no image.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from studio.engine.request import (
    HTTP_URL_PATTERN,
    NOT_BLANK,
    SEED_MAX,
    JsonModel,
    seed_field,
    steps_field,
)
from studio.engine.spec import EditSpec
from studio.genius.inpaint.checks import MAX_FEATHER_RADIUS
from studio.models.catalog import VACE_CATALOG

Mode = Literal["remove", "replace", "blend", "background", "extend"]
ImageField = Literal["overlay", "background"]
RunPath = Literal["classical", "model"]
VaceModel = Literal[tuple(VACE_CATALOG)]  # type: ignore[valid-type]
TASK_ID_PATTERN = r"^[A-Za-z0-9-]+$"

#: The field the one image of a mode goes in; modes missing here take no image.
IMAGE_FIELDS: dict[str, ImageField] = {"blend": "overlay", "replace": "overlay", "background": "background"}


class InpaintRequest(JsonModel):
    """The seed's inpaint fields, plus the inputs each mode needs."""

    model_config = ConfigDict(extra="forbid")

    task_id: str | None = Field(None, min_length=1, max_length=64, pattern=TASK_ID_PATTERN,
                                description="A completed task whose video is edited (or upload one in the UI)")
    mode: Mode
    bbox: list[int] | None = Field(None, min_length=4, max_length=4,
                                   description="[x1, y1, x2, y2] in pixels of the first frame; tracked over time")
    feather_radius: int = Field(10, ge=0, le=MAX_FEATHER_RADIUS, description="Soft mask edge in pixels")
    prompt: str | None = Field(None, min_length=1, max_length=2000, pattern=NOT_BLANK,
                               description="replace / background / extend with Wan VACE: what to paint")
    model: VaceModel | None = Field(None, description="Wan VACE model of the model path (default: tiny-vace "
                                    "without a GPU, wan2.1-vace-1.3b with one)")
    use_model: bool = Field(False, description="remove / extend without a prompt: run Wan VACE instead of the "
                            "classical path")
    num_inference_steps: int | None = steps_field(None, "Model path: sampling steps (10-150; default: the model's)")
    guidance_scale: float | None = Field(None, ge=1, le=20, description="Model path: prompt adherence "
                                         "(default: the model's)")
    seed: int | None = seed_field("Model path: reproducibility seed (random when absent)")
    overlay_image_base64: str | None = Field(None, max_length=30_000_000,
                                             description="blend: the overlay; replace: a reference image")
    overlay_url: str | None = Field(None, max_length=2048, pattern=HTTP_URL_PATTERN)
    background_image_base64: str | None = Field(None, max_length=30_000_000, description="background: the new one")
    background_url: str | None = Field(None, max_length=2048, pattern=HTTP_URL_PATTERN)
    blend_method: Literal["feather", "poisson"] = "feather"
    target_width: int | None = Field(None, ge=16, le=4096, description="extend: output width (even)")
    target_height: int | None = Field(None, ge=16, le=4096, description="extend: output height (even)")
    target_aspect_ratio: Literal["16:9", "9:16", "1:1", "4:3"] | None = Field(
        None, description="extend: grow one side to reach this aspect (instead of a size)")

    @staticmethod
    def image_field_for(mode: str) -> ImageField | None:
        """Where the one image of ``mode`` goes (``<field>_image_base64`` / ``<field>_url``):
        blend's and replace's overlay, background's background; None for a mode without one.
        The UI, which has a single image input, puts its image here."""
        return IMAGE_FIELDS.get(mode)

    def image_field(self) -> ImageField | None:
        """The image fields this request's mode reads: :meth:`image_field_for`, except that
        replace takes its reference from the background fields when they are given."""
        if self.mode == "replace" and (self.background_image_base64 or self.background_url):
            return "background"
        return self.image_field_for(self.mode)


class InpaintSpec(EditSpec):
    """A stored inpaint task: the mode, its resolved inputs and, on the model path, the model's
    settings. Version 2 stores the steps as ``num_inference_steps`` (the one name every request
    and spec uses); version-1 rows stored ``steps`` and are upgraded on load."""

    KIND: ClassVar[str] = "inpaint"
    VERSION: ClassVar[int] = 2

    kind: Literal["inpaint"] = "inpaint"
    mode: Mode
    path: RunPath = Field(description="classical (the algorithm modules) or model (Wan VACE)")
    feather_radius: int = Field(ge=0, le=MAX_FEATHER_RADIUS)
    blend_method: Literal["feather", "poisson"] = "feather"
    bbox_xywh: tuple[int, int, int, int] | None = Field(
        None, description="Every mode but extend: the first frame's box as (x, y, width, height)")
    target_size: tuple[int, int] | None = Field(None, description="extend: the output (width, height)")
    image: str | None = Field(None, description="The mode's image (overlay, background or reference), a file "
                                                "in the task's inputs folder")
    model: VaceModel | None = Field(None, description="Model path: the Wan VACE model")
    prompt: str | None = Field(None, description="Model path: what to paint (empty: none given)")
    # ge=1, not the requests' 10: rows accepted under older ranges must still load.
    num_inference_steps: int | None = Field(None, ge=1, description="Model path: sampling steps")
    guidance_scale: float | None = Field(None, ge=1, le=20, description="Model path: prompt adherence")
    seed: int | None = Field(None, ge=0, le=SEED_MAX, description="Model path: the noise seed")

    @model_validator(mode="after")
    def _inputs_of_the_mode(self) -> "InpaintSpec":
        """What the run of this mode and path will read is present, so a spec the submit got
        wrong fails there, not on the worker."""
        if self.mode == "extend" and self.target_size is None:
            raise ValueError("mode 'extend' stores target_size")
        if self.mode != "extend" and self.bbox_xywh is None:
            raise ValueError(f"mode {self.mode!r} stores bbox_xywh")
        if self.path == "model" and None in (self.model, self.prompt, self.num_inference_steps,
                                             self.guidance_scale, self.seed):
            raise ValueError("the model path stores model, prompt, num_inference_steps, guidance_scale and seed")
        return self

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = super().upgrade(data)
        if data["version"] == 1:
            if "steps" in data:
                data["num_inference_steps"] = data.pop("steps")
            data["version"] = 2
        return data
