"""What ``POST /v1/genius/orchestrator/select-model`` takes and answers (the Model Orchestrator
stores nothing: it answers at once)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from studio.engine.request import GenerationRequest, JsonModel, Resolution, strip_prompt
from studio.genius.orchestrator.complexity import Complexity

_GEN = GenerationRequest.model_fields


class SelectModelRequest(JsonModel):
    """The seed's ``POST /genius/orchestrator/select-model`` body."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "prompt": "Complex cinematic scene with multiple characters...", "duration_seconds": 10,
        "target_resolution": "4k", "max_vram_gb": 24, "prefer_quality": True}})

    prompt: str = Field(..., min_length=1, max_length=2000, description="Text description (1-2000 chars)")
    duration_seconds: float = Field(_GEN["duration_seconds"].default, ge=1, le=60,
                                    description="Duration (1-60 seconds)")
    target_resolution: Resolution = Field(_GEN["resolution"].default, description="480p/720p/1080p/1440p/4k/8k")
    max_vram_gb: float | None = Field(None, ge=1, le=4096,
                                      description="GPU memory budget in GiB; default: this server's free GPU "
                                                  "memory, or none (CPU only) without a GPU")
    prefer_quality: StrictBool = Field(False, description="Pick the highest-quality model that fits and finishes "
                                                    "within 30 min, instead of the fastest adequate one")
    mode: Literal["standard", "fast"] = Field(_GEN["mode"].default,
                                              description="fast: only models with a few-step mode, timed at its steps")

    _strip_prompt = field_validator("prompt")(strip_prompt)


class Alternative(BaseModel):
    model: str
    vram_gb: float = Field(description="Peak GPU memory (GiB) in the fastest memory profile that fits")
    speed_factor: float = Field(description="Estimated time of the recommended model / of this one (>1: faster)")


class SelectModelResponse(BaseModel):
    """The seed's response, plus ``reasons``."""

    model_config = ConfigDict(json_schema_extra={"example": {
        "recommended_model": "wan2.2-ti2v-5b", "complexity": "moderate", "confidence": 0.71,
        "estimated_time_seconds": 238.4, "vram_required_gb": 23.1,
        "alternatives": [{"model": "wan2.1-t2v-1.3b", "vram_gb": 10.7, "speed_factor": 2.9}],
        "reasons": ["..."]}})

    recommended_model: str
    complexity: Complexity
    confidence: float = Field(ge=0, le=1, description="Of the complexity class: 0.5 on a class boundary, "
                                                      "towards 1 far from it")
    estimated_time_seconds: float = Field(description="Load (if not resident) + denoising + decode/encode")
    vram_required_gb: float = Field(description="Peak GPU memory (GiB) of the chosen memory profile; 0 for tiny (CPU)")
    alternatives: list[Alternative]
    reasons: list[str]

