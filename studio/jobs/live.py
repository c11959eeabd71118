"""What processes share live through Redis: task events and cancel flags.

Events: every process sends the events it publishes to one Redis pub/sub channel and delivers to
its own followers (UI generators, websockets) what arrives on it, so a worker's progress and
previews reach a websocket held by any API process. The durable record stays in the database
(``events`` rows, task rows): a follower that joins late, or an event lost while Redis was down,
is made good from there (the websocket and the UI read the row's final state).

Cancel flags: ``POST /v1/cancel`` on any API process sets a key the worker running the task reads
at its next denoising step.

Progressive Streaming: the API process that opens a stream marks the task; the worker running it
writes frames to the shared folder and sends a notice per frame on a second channel, which the
API processes apply to their frame boards (``studio.media.frame_boards``).
"""

from __future__ import annotations

import json
import logging
import threading
import time

import redis

from typing import Callable

from studio.jobs.events import Event, EventBus

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "echoel:events"
STREAM_CHANNEL = "echoel:stream"
STREAMED_KEY = "echoel:streamed:"
CANCEL_KEY = "echoel:cancel:"
CANCEL_TTL_SECONDS = 7 * 24 * 3600  # longer than any task waits and runs
RECONNECT_SECONDS = 1.0


class RedisLive:
    """The Redis side of one process: sends its events, delivers others', and holds cancel flags."""

    def __init__(self, url: str, bus: EventBus):
        self.url = url
        self.bus = bus
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()
        # Set by the studio of an API process: frame notices from workers, and every final event
        # (which also ends a stream whose worker never wrote a frame).
        self.on_stream_notice: Callable[[dict], None] | None = None
        self.on_final_event: Callable[[Event], None] | None = None

    # -- events -----------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Publish ``event`` to every process (this one included, through ``_listen``). With
        Redis down it still reaches this process's own followers."""
        try:
            self.redis.publish(EVENTS_CHANNEL, json.dumps({"task_id": event.task_id, "type": event.type,
                                                           "data": event.data}, separators=(",", ":")))
        except redis.RedisError as error:
            log.warning("Redis is unreachable (%s): event %s of task %s reaches this process only",
                        error, event.type, event.task_id)
            self.bus.deliver(event)

    def start(self) -> None:
        """Deliver the events of every process to this process's followers (a thread), once
        subscribed: events sent after this returns are not missed."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._listen, name="studio-live-events", daemon=True)
        self._thread.start()
        self._subscribed.wait(5.0)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(3.0)
        self.redis.close()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(EVENTS_CHANNEL, STREAM_CHANNEL)
                self._subscribed.set()
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None or message["type"] != "message":
                        continue
                    if message["channel"] == STREAM_CHANNEL.encode():
                        self._apply_stream_notice(message["data"])
                    else:
                        self._deliver(message["data"])
            except redis.RedisError as error:
                log.warning("live events from Redis interrupted (%s); reconnecting", error)
                self._stopping.wait(RECONNECT_SECONDS)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass

    def _deliver(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            event = Event(message["task_id"], message["type"], message.get("data") or {})
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed live event: %r", raw[:200])
            return
        self.bus.deliver(event)
        if event.is_final and self.on_final_event is not None:
            self.on_final_event(event)

    def _apply_stream_notice(self, raw: bytes) -> None:
        if self.on_stream_notice is None:
            return
        try:
            self.on_stream_notice(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed stream notice: %r", raw[:200])

    # -- Progressive Streaming ----------------------------------------------------------------

    def mark_streamed(self, task_id: str, seconds: float) -> None:
        self.redis.set(STREAMED_KEY + task_id, "1", ex=int(seconds))

    def is_streamed(self, task_id: str) -> bool:
        return bool(self.redis.exists(STREAMED_KEY + task_id))

    def send_stream_notice(self, notice: dict) -> None:
        self.redis.publish(STREAM_CHANNEL, json.dumps(notice, separators=(",", ":")))

    # -- cancel flags -----------------------------------------------------------------------

    def flag_cancel(self, task_id: str) -> None:
        self.redis.set(CANCEL_KEY + task_id, str(time.time()), ex=CANCEL_TTL_SECONDS)

    def cancel_flagged(self, task_id: str) -> bool:
        return bool(self.redis.exists(CANCEL_KEY + task_id))

    def forget_cancel(self, task_ids: list[str]) -> None:
        if task_ids:
            self.redis.delete(*(CANCEL_KEY + t for t in task_ids))
