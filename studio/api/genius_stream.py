"""REST and websocket routes of Progressive Streaming: ``/v1/genius/stream``."""

from __future__ import annotations

import asyncio
import re
import time

import cv2
from fastapi import APIRouter, Depends, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, Response

from studio.api.auth import api_key, websocket_key
from studio.api.routes import COMMON, ERRORS, get_studio
from studio.core import Studio
from studio.errors import StudioError, TaskNotFound
from studio.genius.stream.schema import StreamStartRequest, StreamStartResponse
from studio.genius.stream.sender import AdaptiveSender
from studio.genius.stream.start import start_stream
from studio.media.frame_boards import PREVIEW
from studio.keys import ApiKey

router = APIRouter(prefix="/v1/genius/stream", tags=["genius: streaming"], responses=COMMON)

_FRAME_NAME = re.compile(r"^(?P<index>\d{1,6})\.jpg$")
WAIT_SECONDS = 1.0  # how long a websocket waits for the board to change before looking again


@router.post("/start", response_model=StreamStartResponse, responses={code: ERRORS[code] for code in (400, 404, 413)})
def start(body: StreamStartRequest, key: ApiKey = Depends(api_key()),
          studio: Studio = Depends(get_studio)) -> StreamStartResponse:
    """Open a stream session on a task; follow it at ``websocket_url``. The websocket sends
    ``frame_available`` (``frame_index``, ``quality`` preview|final, ``progress``, ``url`` of the
    JPEG) for each frame as it appears or improves, then ``complete`` (``total_frames``) or
    ``error``/``cancelled``, and closes."""
    return start_stream(studio.services, body, owner=key.id)


@router.get("/frames/{session_id}/{name}", response_class=FileResponse,
            responses={code: ERRORS[code] for code in (400, 404)})
def frame(session_id: str, name: str, quality: str = Query(PREVIEW, pattern="^(preview|final)$"),
          width: int | None = Query(None, ge=16, le=4096), key: ApiKey = Depends(api_key()),
          studio: Studio = Depends(get_studio)) -> Response:
    """The newest JPEG of one frame at ``quality``; ``width`` scales it down (the adaptive
    sender's smaller previews)."""
    _, board = studio.streams.session(session_id, key.id)
    match = _FRAME_NAME.match(name)
    path = board.path(int(match["index"]), quality) if match else None
    if path is None or not path.exists():
        raise TaskNotFound(f"no {quality} frame {name[:40]!r} in this stream")
    headers = {"Cache-Control": "no-store"}  # a preview is replaced as denoising goes on
    if width is None:
        return FileResponse(path, media_type="image/jpeg", headers=headers)
    image = cv2.imread(str(path))
    if image is None:  # replaced between the exists() check and the read
        raise TaskNotFound(f"frame {name[:40]!r} is being replaced; fetch it again")
    if width < image.shape[1]:
        image = cv2.resize(image, (width, max(1, round(image.shape[0] * width / image.shape[1]))),
                           interpolation=cv2.INTER_AREA)
    return Response(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes(),
                    media_type="image/jpeg", headers=headers)


@router.websocket("/ws/{session_id}")
async def stream(websocket: WebSocket, session_id: str) -> None:
    """Announce a session's frames: first the current state of every frame, then each change."""
    studio: Studio = websocket.app.state.studio
    try:
        key = websocket_key(websocket)
        session, board = studio.streams.session(session_id, key.id)
    except StudioError as error:  # refused at the handshake with the seed's body
        await websocket.send_denial_response(
            JSONResponse(error.body(), status_code=error.status_code, headers=error.headers))
        return
    await websocket.accept()
    sender = AdaptiveSender(session)
    full_width = studio.settings.preview_width
    try:
        while True:
            messages, outcome = sender.messages(board)
            started = time.perf_counter()
            for message in messages:
                await websocket.send_json(message)
            if messages:
                sender.record_burst(time.perf_counter() - started, full_width)
            if outcome is not None:
                await websocket.send_json(outcome)
                await websocket.close()
                return
            await asyncio.to_thread(board.wait, sender.seen_version, WAIT_SECONDS)
    except WebSocketDisconnect:
        pass
