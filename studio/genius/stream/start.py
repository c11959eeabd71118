"""Opening a Progressive Streaming session on a task: ``POST /v1/genius/stream/start``.

What the stream sends, and how a slow client is served: ``studio.genius.stream.sender``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from studio.genius.stream.schema import StreamStartRequest, StreamStartResponse

if TYPE_CHECKING:
    from studio.jobs.services import FeatureServices


def start_stream(services: "FeatureServices", request: StreamStartRequest, owner: str) -> StreamStartResponse:
    """Open a stream session on one of ``owner``'s tasks. A task that has already ended gets a
    session too: its websocket says how it ended (``complete`` with ``total_frames``) at once."""
    task = services.task(request.task_id, owner)
    session, board = services.streams.start(task.id, owner, request.initial_quality, request.enable_adaptive)
    task = services.task(request.task_id, owner)  # read after the board exists: an end in between is seen
    if task.is_terminal:
        board.finish(services.final_event(task).to_message())
    return StreamStartResponse(
        session_id=session.id, task_id=task.id, websocket_url=session.websocket_path,
        frame_url_template=f"/v1/genius/stream/frames/{session.id}/{{frame_index}}.jpg?quality={{quality}}",
        initial_quality=session.initial_quality, enable_adaptive=session.enable_adaptive,
        task_status=task.status)
