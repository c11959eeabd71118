"""What ``POST /v1/genius/stream/start`` takes and answers (the session itself lives in
``studio.media.frame_boards``; nothing of a stream is stored as a task)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from studio.engine.request import JsonModel
from studio.media.frame_boards import PREVIEW


class StreamStartRequest(JsonModel):
    """The seed's ``POST /genius/stream/start`` body."""

    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$",
                         description="a task of yours: pending, running or ended")
    initial_quality: Literal["preview", "final"] = Field(
        PREVIEW, description="preview: announce denoising previews and final frames; final: final frames only")
    enable_adaptive: StrictBool = Field(
        True, description="shrink announced previews while the client lags behind")


class StreamStartResponse(BaseModel):
    session_id: str
    task_id: str
    websocket_url: str = Field(description="path of the websocket that announces frames")
    frame_url_template: str = Field(description="where announced frames are fetched (JPEG)")
    initial_quality: str
    enable_adaptive: bool
    task_status: str
