"""Frame boards: the newest frame of every index of a running task, for Progressive Streaming.

The engine writes each latent frame's preview and each decoded final frame to its task's
``FrameBoard`` (JPEG files, newest per index, a change counter) and moves on; the streaming
feature (``studio.genius.stream.sender``) reads boards at each client's pace. Boards exist only for
tasks someone streams (``StreamHub.start``), so generations nobody watches pay nothing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.errors import TaskNotFound
from studio.media.video import write_jpeg

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
