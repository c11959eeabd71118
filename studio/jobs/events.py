"""In-process publish/subscribe of task events (progress, previews, completion).

The worker publishes; UI generators (threads) and websockets (the event loop) subscribe. A slow
subscriber never slows the worker: each subscription has a bounded buffer that drops its oldest
non-final events when full, so a reader that falls behind still gets the newest state and always
gets the final event. Async readers wait on an ``asyncio.Event`` woken from the publishing
thread, so a websocket that follows a task for minutes holds no thread while it waits.

``close()`` (server shutdown) wakes every reader: ``get`` returns None and ``closed`` is True.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass, field
from typing import Any
from studio.media.paths import media_url

# Event types, as the seed's websocket sends them.
PROGRESS = "progress"
FRAME_AVAILABLE = "frame_available"
COMPLETE = "complete"
ERROR = "error"
CANCELLED = "cancelled"
FINAL_TYPES = frozenset({COMPLETE, ERROR, CANCELLED})


def completion(task_id: str, total_frames: int | None) -> dict:
    """The data of a ``complete`` event: where the video and thumbnail are served (URLs are
    made here, for the message, and never stored with the result), and how many frames."""
    return {"video_url": media_url("videos", task_id), "thumbnail_url": media_url("thumbnails", task_id),
            "total_frames": total_frames}


@dataclass(frozen=True)
class Event:
    """One event about one task; ``data`` is the seed's websocket payload minus ``type``."""

    task_id: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    def to_message(self) -> dict[str, Any]:
        return {"type": self.type, "task_id": self.task_id, **self.data}


class Subscription:
    """A bounded buffer of events for one reader."""

    def __init__(self, bus: "EventBus", task_id: str, maxlen: int):
        self._bus = bus
        self.task_id = task_id
        self._events: collections.deque[Event] = collections.deque()
        self._maxlen = maxlen
        self._ready = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None  # set by the first ``get_async``
        self._async_ready: asyncio.Event | None = None
        self.dropped = 0

    @property
    def closed(self) -> bool:
        """True once the bus closed (the server is stopping): no more events will come."""
        return self._bus.closed

    def _push(self, event: Event) -> None:
        with self._ready:
            if len(self._events) >= self._maxlen:
                # Drop the oldest event that is not final; previews and progress are superseded.
                for i, old in enumerate(self._events):
                    if not old.is_final:
                        del self._events[i]
                        self.dropped += 1
                        break
            self._events.append(event)
            self._ready.notify()
        self._wake_async()

    def _wake_async(self) -> None:
        with self._ready:
            loop, ready = self._loop, self._async_ready
        if loop is not None and ready is not None:
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # the loop has closed: nobody waits on it any more
                pass

    def _wake(self) -> None:
        """Wake every reader without an event (the bus closed)."""
        with self._ready:
            self._ready.notify_all()
        self._wake_async()

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds without one (at once once closed)."""
        with self._ready:
            if not self._events and not self.closed and not self._ready.wait(timeout):
                return None
            return self._events.popleft() if self._events else None

    async def get_async(self, timeout: float | None = None) -> Event | None:
        """``get`` for the event loop: waits without holding a thread. One loop per subscription."""
        with self._ready:
            if self._async_ready is None:
                self._loop, self._async_ready = asyncio.get_running_loop(), asyncio.Event()
            # Cleared before the buffer is checked: an event pushed after the check sets it again.
            self._async_ready.clear()
            if self._events:
                return self._events.popleft()
        if self.closed:
            return None
        try:
            await asyncio.wait_for(self._async_ready.wait(), timeout)
        except asyncio.TimeoutError:  # TimeoutError itself from 3.11 on
            return None
        with self._ready:
            return self._events.popleft() if self._events else None

    def close(self) -> None:
        self._bus._unsubscribe(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of events to the subscribers of each task."""

    def __init__(self, buffer_size: int = 64):
        self._subs: dict[str, set[Subscription]] = collections.defaultdict(set)
        self._lock = threading.Lock()
        self._buffer_size = buffer_size
        self.closed = False
        # Set when events cross processes (``studio.jobs.live.RedisLive``): publish sends through
        # it, and it delivers what every process published.
        self.relay = None

    def subscriber_count(self) -> int:
        """How many readers follow any task now."""
        with self._lock:
            return sum(len(group) for group in self._subs.values())

    def close(self) -> None:
        """The server is stopping: wake every reader so it can end (and close its socket)."""
        with self._lock:
            self.closed = True
            subs = [sub for group in self._subs.values() for sub in group]
        for sub in subs:
            sub._wake()

    def subscribe(self, task_id: str) -> Subscription:
        sub = Subscription(self, task_id, self._buffer_size)
        with self._lock:
            self._subs[task_id].add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.task_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.task_id]

    def publish(self, event: Event) -> None:
        """Tell every follower of the event's task, in every process when a relay is set."""
        if self.relay is not None:
            self.relay.send(event)
        else:
            self.deliver(event)

    def deliver(self, event: Event) -> None:
        """Tell this process's followers of the event's task."""
        with self._lock:
            subs = list(self._subs.get(event.task_id, ()))
        for sub in subs:
            sub._push(event)
