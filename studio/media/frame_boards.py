"""Frame boards: the newest frame of every index of a running task, for Progressive Streaming.

The engine writes each latent frame's preview and each decoded final frame to its task's
``FrameBoard`` (JPEG files, newest per index, a change counter) and moves on; the streaming
feature (``studio.genius.stream.sender``) reads boards at each client's pace. Boards exist only for
tasks someone streams (``StreamHub.start``), so generations nobody watches pay nothing.

Across processes (Celery workers, ``StreamHub.relay``): the API process that opened the stream
marks the task as streamed; the worker running it sends each frame (its JPEG) in a notice, which
the API process writes to its own board, so its websocket senders see the frames as if the
worker ran in-process, and no folder needs to be shared.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from studio.errors import TaskNotFound
from studio.media.video import write_jpeg

PREVIEW, FINAL = "preview", "final"
QUALITIES = (PREVIEW, FINAL)
REMOTE_CHECK_SECONDS = 0.2  # how often a worker asks whether another process streams a task
SESSION_TTL_SECONDS = 3600.0  # a finished task's frames stay fetchable this long after its session started


@dataclass(frozen=True)
class FrameSlot:
    """The newest frame of one index."""

    quality: str
    version: int  # the board's change counter when it was written
    width: int
    height: int
    progress: float  # the task's progress when it was written


class StreamRelay(Protocol):
    """What carries streams between processes (``studio.jobs.live.RedisLive`` is one)."""

    def mark_streamed(self, task_id: str, seconds: float) -> None: ...

    def is_streamed(self, task_id: str) -> bool: ...

    def send_stream_notice(self, notice: dict) -> None: ...


class FrameBoard:
    """The newest frame of every index of one task (JPEG files) and a change counter.

    Written by the worker thread, read by any number of websocket senders. A ``final`` frame is
    never replaced by a ``preview`` of the same index.
    """

    def __init__(self, task_id: str, directory: Path, notify: Callable[[dict], None] | None = None):
        self.task_id = task_id
        self.directory = directory
        self._notify = notify  # a worker's board in another process than its readers: tells them
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
        self.record(frame_index, quality, rgb.shape[1], rgb.shape[0], progress)
        if self._notify is not None:
            self._notify({"kind": "frame", "task_id": self.task_id, "frame_index": frame_index, "quality": quality,
                          "width": rgb.shape[1], "height": rgb.shape[0], "progress": progress,
                          "jpeg": base64.b64encode(path.read_bytes()).decode()})

    def put_jpeg(self, frame_index: int, quality: str, jpeg: bytes, width: int, height: int, progress: float) -> None:
        """Store an encoded frame another process made (``StreamHub.apply``)."""
        current = self._slots.get(frame_index)
        if quality == PREVIEW and current is not None and current.quality == FINAL:
            return
        path = self.path(frame_index, quality)
        part = path.with_name(path.name + ".part.jpg")
        part.write_bytes(jpeg)
        os.replace(part, path)
        self.record(frame_index, quality, width, height, progress)

    def record(self, frame_index: int, quality: str, width: int, height: int, progress: float) -> None:
        """A frame now in this board's folder (written here, or by a worker in another process)."""
        with self._changed:
            current = self._slots.get(frame_index)
            if quality == PREVIEW and current is not None and current.quality == FINAL:
                return
            self.version += 1
            self.progress = max(self.progress, progress)
            self._slots[frame_index] = FrameSlot(quality, self.version, width, height, progress)
            self._changed.notify_all()

    def finish(self, outcome: dict) -> None:
        """Record how the task ended (the websocket's last message)."""
        with self._changed:
            if self.outcome is not None:
                return
            self.outcome = outcome
            self.version += 1
            self._changed.notify_all()
        if self._notify is not None:
            self._notify({"kind": "finish", "task_id": self.task_id, "outcome": outcome})

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

    def __init__(self, root: Path, relay: StreamRelay | None = None):
        self.root = Path(root)
        self.relay = relay  # streams across processes (Celery workers); None: all in this process
        if relay is None:  # shared with other processes, the folder holds their frames
            shutil.rmtree(self.root, ignore_errors=True)  # frames of an earlier process are stale
        self.root.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, StreamSession] = {}
        self._boards: dict[str, FrameBoard] = {}
        self._lock = threading.Lock()
        self._checked: dict[str, float] = {}  # task id -> when the relay last said it is not streamed

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
        if self.relay is not None:  # the worker running it, in another process, writes its frames
            self.relay.mark_streamed(task_id, SESSION_TTL_SECONDS)
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
        """The task's board if anyone streams it (the engine's cheap per-step check). With a
        relay, a stream another process opened counts: the board then sends its frames there
        (asked at most every REMOTE_CHECK_SECONDS per task)."""
        board = self._boards.get(task_id)
        if board is not None or self.relay is None:
            return board
        now = time.monotonic()
        if now - self._checked.get(task_id, -REMOTE_CHECK_SECONDS) < REMOTE_CHECK_SECONDS:
            return None
        self._checked[task_id] = now
        try:
            streamed = self.relay.is_streamed(task_id)
        except Exception:  # the relay is down: nobody elsewhere can be told anyway
            return None
        if not streamed:
            return None
        with self._lock:
            self._checked.pop(task_id, None)
            return self._boards.setdefault(
                task_id, FrameBoard(task_id, self.root / task_id, notify=self._send_quietly))

    def _send_quietly(self, notice: dict) -> None:
        try:
            self.relay.send_stream_notice(notice)
        except Exception:  # a lost frame notice: the next frame or the final video makes it good
            pass

    def apply(self, notice: dict) -> None:
        """A notice from the worker writing a task's frames in another process."""
        board = self._boards.get(notice.get("task_id"))
        if board is None:
            return
        if notice.get("kind") == "frame":
            quality = FINAL if notice["quality"] == FINAL else PREVIEW
            board.put_jpeg(int(notice["frame_index"]), quality, base64.b64decode(notice["jpeg"]),
                           int(notice["width"]), int(notice["height"]), float(notice["progress"]))
        elif notice.get("kind") == "finish":
            board.finish(notice["outcome"])

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
