"""Progressive Streaming: every frame of a running generation, as it gets better.

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

import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from studio.engine.request import JsonModel
from studio.errors import TaskNotFound
from studio.media.video import write_jpeg

if TYPE_CHECKING:
    from studio.core import Studio

PREVIEW, FINAL = "preview", "final"
QUALITIES = (PREVIEW, FINAL)
SESSION_TTL_SECONDS = 3600.0  # a finished task's frames stay fetchable this long after its session started


@dataclass(frozen=True)
class FrameSlot:
    """The newest frame of one index."""

    quality: str
    version: int  # the board's change counter when it was written
    width: int
    height: int
    progress: float  # the task's progress when it was written


class FrameBoard:
    """The newest frame of every index of one task (JPEG files) and a change counter.

    Written by the worker thread, read by any number of websocket senders. A ``final`` frame is
    never replaced by a ``preview`` of the same index.
    """

    def __init__(self, task_id: str, directory: Path):
        self.task_id = task_id
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.version = 0
        self.progress = 0.0
        self.outcome: dict | None = None  # the closing message: complete, error or cancelled
        self._slots: dict[int, FrameSlot] = {}
        self._changed = threading.Condition()

    def path(self, frame_index: int, quality: str) -> Path:
        return self.directory / f"{quality}-{frame_index}.jpg"

    def put(self, frame_index: int, quality: str, rgb: np.ndarray, progress: float) -> None:
        """Store ``rgb`` as the newest ``quality`` frame of ``frame_index`` and tell readers."""
        current = self._slots.get(frame_index)
        if quality == PREVIEW and current is not None and current.quality == FINAL:
            return
        path = self.path(frame_index, quality)
        part = path.with_name(path.name + ".part.jpg")
        write_jpeg(part, rgb)
        os.replace(part, path)  # readers never see a half-written file
        with self._changed:
            self.version += 1
            self.progress = max(self.progress, progress)
            self._slots[frame_index] = FrameSlot(quality, self.version, rgb.shape[1], rgb.shape[0], progress)
            self._changed.notify_all()

    def finish(self, outcome: dict) -> None:
        """Record how the task ended (the websocket's last message)."""
        with self._changed:
            if self.outcome is None:
                self.outcome = outcome
                self.version += 1
                self._changed.notify_all()

    def wait(self, seen_version: int, timeout: float) -> bool:
        """Block until the board changed after ``seen_version`` (True) or ``timeout`` passed."""
        with self._changed:
            return self._changed.wait_for(lambda: self.version > seen_version, timeout)

    def changes_since(self, seen_version: int) -> tuple[int, list[tuple[int, FrameSlot]], dict | None]:
        """(current version, [(frame_index, slot)] written after ``seen_version`` in index
        order, outcome). ``seen_version=0`` gives the whole current state."""
        with self._changed:
            changed = sorted((i, s) for i, s in self._slots.items() if s.version > seen_version)
            return self.version, changed, self.outcome

    def strip(self, limit: int) -> list[tuple[int, str, Path]]:
        """Up to ``limit`` frames evenly spread over the video, newest version of each:
        (frame_index, quality, JPEG path), for a frame strip in the UI."""
        _, slots, _ = self.changes_since(0)
        stride = max(1, -(-len(slots) // limit))
        return [(index, slot.quality, self.path(index, slot.quality)) for index, slot in slots[::stride]]

    def slot(self, frame_index: int) -> FrameSlot | None:
        with self._changed:
            return self._slots.get(frame_index)


@dataclass(frozen=True)
class StreamSession:
    """One client's stream of one task (the seed's ``POST /genius/stream/start``)."""

    id: str
    task_id: str
    owner: str
    initial_quality: str
    enable_adaptive: bool
    created_at: float = field(default_factory=time.time)

    @property
    def websocket_path(self) -> str:
        return f"/v1/genius/stream/ws/{self.id}"

    def frame_url(self, frame_index: int, quality: str, width: int | None = None) -> str:
        url = f"/v1/genius/stream/frames/{self.id}/{frame_index}.jpg?quality={quality}"
        return url if width is None else f"{url}&width={width}"


class StreamHub:
    """Sessions and frame boards of one process. Boards exist only for tasks someone streams,
    so generations nobody watches pay nothing for per-frame previews."""

    def __init__(self, root: Path):
        self.root = Path(root)
        shutil.rmtree(self.root, ignore_errors=True)  # frames of an earlier process are stale
        self.root.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, StreamSession] = {}
        self._boards: dict[str, FrameBoard] = {}
        self._lock = threading.Lock()

    def start(self, task_id: str, owner: str, initial_quality: str = PREVIEW,
              enable_adaptive: bool = True) -> tuple[StreamSession, FrameBoard]:
        """A new session for ``task_id`` (whose ownership the caller has checked) and the board
        it reads; the caller records the task's outcome on the board if it has already ended."""
        self._purge_expired()
        session = StreamSession(secrets.token_hex(12), task_id, owner, initial_quality, enable_adaptive)
        with self._lock:
            board = self._boards.get(task_id)
            if board is None:
                board = self._boards[task_id] = FrameBoard(task_id, self.root / task_id)
            self._sessions[session.id] = session
        return session, board

    def session(self, session_id: str, owner: str) -> tuple[StreamSession, FrameBoard]:
        """The session and its board; 404 for an unknown session or another key's."""
        with self._lock:
            session = self._sessions.get(session_id)
            board = self._boards.get(session.task_id) if session else None
        if session is None or board is None or session.owner != owner:
            raise TaskNotFound(f"no stream session {session_id[:64]!r}")
        return session, board

    def board(self, task_id: str) -> FrameBoard | None:
        """The task's board if anyone streams it (the engine's cheap per-step check)."""
        return self._boards.get(task_id)

    def finish(self, task_id: str, outcome: dict) -> None:
        board = self._boards.get(task_id)
        if board is not None:
            board.finish(outcome)

    def _purge_expired(self) -> None:
        """Forget sessions older than the TTL whose task has ended, and their frames."""
        cutoff = time.time() - SESSION_TTL_SECONDS
        with self._lock:
            expired = [s for s in self._sessions.values()
                       if s.created_at < cutoff and self._boards[s.task_id].outcome is not None]
            for session in expired:
                del self._sessions[session.id]
            live_tasks = {s.task_id for s in self._sessions.values()}
            for task_id in [t for t in self._boards if t not in live_tasks]:
                shutil.rmtree(self._boards.pop(task_id).directory, ignore_errors=True)


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


def start_stream(studio: "Studio", request: StreamStartRequest, owner: str) -> StreamStartResponse:
    """Open a stream session on one of ``owner``'s tasks. A task that has already ended gets a
    session too: its websocket says how it ended (``complete`` with ``total_frames``) at once."""
    task = studio.task(request.task_id, owner)
    session, board = studio.streams.start(task.id, owner, request.initial_quality, request.enable_adaptive)
    task = studio.task(request.task_id, owner)  # read after the board exists: an end in between is seen
    if task.is_terminal:
        board.finish(studio.final_event(task).to_message())
    return StreamStartResponse(
        session_id=session.id, task_id=task.id, websocket_url=session.websocket_path,
        frame_url_template=f"/v1/genius/stream/frames/{session.id}/{{frame_index}}.jpg?quality={{quality}}",
        initial_quality=session.initial_quality, enable_adaptive=session.enable_adaptive,
        task_status=task.status)
