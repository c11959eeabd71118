"""Progressive Streaming: what one client is told about a stream's frames, and when.

A client starts a *session* for a task and follows it over a websocket. While the model
denoises, each latent frame's denoised estimate is projected to RGB (the same least-squares
latent->RGB projection as the live preview, ``studio.engine.preview``) and published as a
``preview`` frame; while the VAE decodes the video chunk by chunk, every output frame is
published as a ``final`` frame, before the mp4 is finished. Each announced frame is a JPEG
fetchable at ``/v1/genius/stream/frames/{session_id}/{frame_index}.jpg``.

The engine never waits for a client. It writes the newest frame of each index to a
``FrameBoard`` (overwriting older previews of that index) and moves on; each websocket reads
the board at its own pace and announces only what changed since it last looked. So a slow
client gets the newest frames and skips superseded previews, and a client that connects late
first gets the board's current state. With ``enable_adaptive`` the sender also shrinks the
preview size it announces while the client lags (see ``AdaptiveSender``).
"""

from __future__ import annotations

from studio.media.frame_boards import FINAL, PREVIEW, FrameBoard, FrameSlot, StreamSession


class AdaptiveSender:
    """Turns board changes into the seed's ``frame_available`` messages for one client.

    ``initial_quality``: ``preview`` announces previews and finals, ``final`` only finals.
    Adaptive sizing (``enable_adaptive``): after each burst of messages the sender looks at how
    long the client took to take it. A burst slower than ``SLOW_SECONDS`` halves the preview
    width it announces (down to ``MIN_WIDTH``); one faster than ``FAST_SECONDS`` doubles it back
    (up to the full preview). Finals are always announced at full size. Skipping superseded
    previews needs no rule: the board only holds the newest frame of each index.
    """

    SLOW_SECONDS = 0.25
    FAST_SECONDS = 0.05
    MIN_WIDTH = 64

    def __init__(self, session: StreamSession):
        self.session = session
        self.seen_version = 0
        self.preview_width: int | None = None  # None: full size
        self.downsized = 0  # how many times the width was halved (for tests and logs)

    def messages(self, board: FrameBoard) -> tuple[list[dict], dict | None]:
        """``frame_available`` messages for what changed since the last call, and the outcome
        message once the task has ended."""
        self.seen_version, changed, outcome = board.changes_since(self.seen_version)
        messages = [self._announce(index, slot) for index, slot in changed
                    if slot.quality == FINAL or self.session.initial_quality == PREVIEW]
        return messages, outcome

    def _announce(self, index: int, slot: FrameSlot) -> dict:
        width = self.preview_width if slot.quality == PREVIEW and self.preview_width else None
        if width is not None and width >= slot.width:
            width = None
        return {"type": "frame_available", "task_id": self.session.task_id, "frame_index": index,
                "quality": slot.quality, "progress": round(slot.progress, 4),
                "url": self.session.frame_url(index, slot.quality, width),
                "width": width or slot.width,
                "height": round(slot.height * width / slot.width) if width else slot.height}

    def record_burst(self, seconds: float, full_width: int | None) -> None:
        """Adapt the preview size to how long the last burst of messages took to send."""
        if not self.session.enable_adaptive or full_width is None:
            return
        current = self.preview_width or full_width
        if seconds > self.SLOW_SECONDS and current > self.MIN_WIDTH:
            self.preview_width = max(self.MIN_WIDTH, current // 2)
            self.downsized += 1
        elif seconds < self.FAST_SECONDS and self.preview_width is not None:
            doubled = self.preview_width * 2
            self.preview_width = None if doubled >= full_width else doubled
