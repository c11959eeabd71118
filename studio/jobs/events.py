"""In-process publish/subscribe of task events (progress, previews, completion).

The worker publishes; UI generators, websockets and (later) the webhook outbox subscribe.
A slow subscriber never slows the worker: each subscription has a bounded buffer that drops its
oldest non-final events when full, so a reader that falls behind still gets the newest state and
always gets the final event.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any

# Event types, as the seed's websocket sends them.
PROGRESS = "progress"
FRAME_AVAILABLE = "frame_available"
COMPLETE = "complete"
ERROR = "error"
CANCELLED = "cancelled"
FINAL_TYPES = frozenset({COMPLETE, ERROR, CANCELLED})


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
        self.dropped = 0

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

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds without one."""
        with self._ready:
            if not self._events and not self._ready.wait(timeout):
                return None
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
        with self._lock:
            subs = list(self._subs.get(event.task_id, ()))
        for sub in subs:
            sub._push(event)
